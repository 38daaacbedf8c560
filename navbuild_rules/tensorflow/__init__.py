"""TensorFlow 2 (``framework = "tensorflow"``; ``entry`` returns a Keras model or a ``tf.Module``):
rules ``reference`` (eager outputs on the CPU), ``savedmodel`` (one serving signature with the
model's input and output names), ``onnx`` (tf2onnx over the SavedModel, then as every ONNX target:
fp32 or fp16, runner ``onnxruntime``, ``trt-*`` from it) and ``tf-trt`` (``tf-trt-fp32``,
``tf-trt-fp16``: TensorFlow-TensorRT over the SavedModel, on a GPU). Runner ``tf-savedmodel`` runs
SavedModels on the CPU or a GPU; Triton serves them with its TensorFlow backend.

``onnx`` and ``tf-trt`` serve any framework (``frameworks=()``): they read a ``savedmodel``
target, so they apply to every framework that has one (the registry follows ``consumes``: a JAX
model's, which navbuild_rules/jax writes through jax2tf, too). Importing this module imports no framework.
"""
from navbuild.rule import ROLE_REFERENCE, SOURCE, Needs, Rule
from navbuild_rules.onnx import build as onnx_build
from navbuild_rules.onnx.loader import ONNXRUNTIME
from navbuild_rules.onnx.scan import scan_onnx
from navbuild_rules.onnx.loader import OUTPUTS as ONNX_OUTPUTS
from navbuild_rules.tensorflow import build, loader
from navbuild_rules.tensorflow.runner import SavedModelRunner

TF = Needs(modules=("tensorflow",), cuda_when_device_is_cuda=False)

REFERENCE = Rule(
    name="reference", version="1", build=build.build_reference, frameworks=(loader.FRAMEWORK,), tools=loader.TOOLS,
    needs=TF, role=ROLE_REFERENCE, outputs=(loader.REFERENCE_FILE,),
    description="the Keras model's (or tf.Module's) outputs on every sample, eagerly on the CPU",
)

SAVEDMODEL = Rule(
    name="savedmodel", version="1", build=build.build_savedmodel, consumes=SOURCE, frameworks=(loader.FRAMEWORK,),
    tools=loader.TOOLS, runner=SavedModelRunner.name, needs=TF, outputs=loader.SAVEDMODEL_OUTPUTS, triton=loader.TRITON_SAVEDMODEL, base=True,
    loads_code=True,  # a SavedModel's graph may hold any TensorFlow op (file reads and writes too)
    description="a SavedModel with one serving signature named after the model's inputs and outputs",
)

ONNX = Rule(
    name="onnx", version="2", build=build.build_onnx, consumes="savedmodel",
    params={"opset": build.DEFAULT_OPSET}, uses=("normalize",), tools=("tf2onnx", *onnx_build.TOOLS, *loader.TOOLS),
    precisions=onnx_build.PRECISIONS, runner="onnxruntime",
    needs=Needs(modules=("tensorflow", "tf2onnx", "onnx"), cuda_when_device_is_cuda=False),
    validate=build.validate_onnx, outputs=ONNX_OUTPUTS, triton=ONNXRUNTIME, base=True, scan=scan_onnx,
    description="ONNX converted from the SavedModel by tf2onnx (fp16: a converted graph with float32 I/O)",
)

TF_TRT = Rule(
    name="tf-trt", version="1", build=build.build_tf_trt, consumes="savedmodel",
    params=dict(build.TF_TRT_DEFAULTS), tools=loader.TOOLS, precisions=build.TF_TRT_PRECISIONS, device_bound=True,
    devices=("cuda",), runner=SavedModelRunner.name, needs=Needs(modules=("tensorflow",), gpu=True),
    suffix_default_precision=True, normalized=False, canonical_digest=build.tf_trt_digest,
    validate=build.validate_tf_trt, outputs=(*loader.SAVEDMODEL_OUTPUTS, loader.BUILD_INFO),
    triton=loader.TRITON_SAVEDMODEL, loads_code=True,
    description="TensorFlow-TensorRT: the SavedModel with TensorRT engines built for the samples' shapes",
)

RULES = [REFERENCE, SAVEDMODEL, ONNX, TF_TRT]
RUNNERS = [SavedModelRunner]
