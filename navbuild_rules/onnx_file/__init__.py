"""An ONNX file as the model (``framework = "onnx"``, ``entry = "path/model.onnx"``): rules
``reference`` (the file on ONNX Runtime's CPU provider), ``onnx`` (the file checked, at fp32 or
converted to fp16) and ``onnx-slim`` (simplified with onnxslim). They run on navbuild_rules/onnx's ONNX
Runtime runner and deploy to Triton's ONNX Runtime backend; ``trt`` builds TensorRT plans from
``onnx`` as for any framework.

``onnx-slim`` reads any framework's ``onnx`` target, so a torch or TensorFlow model can ask for it
too. Importing this module imports no framework.
"""
from navbuild.rule import ROLE_REFERENCE, Needs, Rule
from navbuild_rules.onnx import build as onnx_build
from navbuild_rules.onnx.scan import scan_onnx
from navbuild_rules.onnx_file import build, loader

RUNNER = "onnxruntime"  # navbuild_rules/onnx's OnnxRuntimeRunner

REFERENCE = Rule(
    name="reference", version="2", build=build.build_reference, frameworks=(loader.FRAMEWORK,),
    tools=("onnx", "onnxruntime"), needs=Needs(modules=("onnx", "onnxruntime"), cuda_when_device_is_cuda=False),
    role=ROLE_REFERENCE, outputs=(loader.REFERENCE_FILE,),
    description="the ONNX file's outputs on every sample, on ONNX Runtime's CPU provider",
)

ONNX = Rule(
    name="onnx", version="2", build=build.build_onnx, frameworks=(loader.FRAMEWORK,), uses=("normalize",),
    tools=onnx_build.TOOLS, precisions=onnx_build.PRECISIONS, runner=RUNNER,
    needs=Needs(modules=("onnx",), cuda_when_device_is_cuda=False), outputs=loader.OUTPUTS,
    triton=loader.ONNXRUNTIME, base=True, scan=scan_onnx,
    description="the ONNX file, checked (fp16: converted, float32 inputs and outputs; a ZipMap read as its tensor)",
)

ONNX_SLIM = Rule(
    name="onnx-slim", version="2", build=build.build_slim, consumes="onnx", uses=("normalize",),
    tools=("onnxslim", "onnx"), runner=RUNNER,
    needs=Needs(modules=("onnx", "onnxslim"), cuda_when_device_is_cuda=False), outputs=loader.OUTPUTS,
    triton=loader.ONNXRUNTIME, scan=scan_onnx,
    description="the ONNX model simplified by onnxslim (constants folded, identities and dead nodes removed)",
)

RULES = [REFERENCE, ONNX, ONNX_SLIM]
RUNNERS: list = []
