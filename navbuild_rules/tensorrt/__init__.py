"""TensorRT and ONNX Runtime's GPU providers: rules ``trt``, ``ort-trt``, ``ort-cuda``.

``trt`` (targets ``trt-fp32``, ``trt-fp16``, ``trt-bf16``, ``trt-int8``, ``trt-tf32``): the upstream
``onnx`` model built into a TensorRT plan, ``model.plan``, with the TensorRT 10 Python API; runner
``tensorrt``. TensorRT's TF32 builder flag, on by default, is cleared except for ``trt-tf32``. It
reads the model's ``max_batch_size`` (``Rule.uses``). Parameters: ``opt_batch_size`` (0: max),
``workspace`` (bytes), ``calibration`` (int8 only, required: ``"samples"`` or
``"path/file.py:function"``). The optimization profile comes from the samples (``config``).
The timing cache lives in the rule's cache folder and is reused by later builds on this device.

``ort-trt`` (``ort-trt``, ``ort-trt-fp16``, ``ort-trt-bf16``) and ``ort-cuda``: the same ONNX file
for ONNX Runtime's TensorRT execution provider (its engine cache built into ``trt_engines/`` of the
output) and CUDA execution provider; runners of the same names. They live here rather than in a
family of their own because they share the profile and TensorRT settings. Skipped with the
reason when onnxruntime lacks the provider (checked when the target builds, since the no-op
path must not import onnxruntime).

Configuration mistakes raise ``config.TensorRTConfigError``; a machine without TensorRT, a GPU or
the provider gives ``navbuild.rule.Skip``. Importing this module imports no framework.
"""
from navbuild.rule import Needs, Rule, TritonModel
from navbuild_rules.onnx.scan import scan_onnx
from navbuild_rules.tensorrt import build, config, loader
from navbuild_rules.tensorrt.runner import OrtCudaRunner, OrtTensorRTRunner, TensorRTRunner

TRT = Rule(
    name="trt", version="2", build=build.build_trt, consumes="onnx", params=dict(config.DEFAULTS),
    uses=("max_batch_size",),
    tools=("tensorrt",), precisions=config.PRECISIONS, device_bound=True, devices=("cuda",), runner="tensorrt",
    needs=Needs(modules=("tensorrt",), gpu=True), suffix_default_precision=True, normalized=False,
    canonical_digest=build.info_digest, validate=config.validate, outputs=(loader.PLAN_FILE, loader.BUILD_INFO),
    triton=TritonModel(backend="tensorrt", platform="tensorrt_plan", files={loader.PLAN_FILE: "model.plan"}),
    device_tools=("tensorrt",), loads_code=True,
    description="TensorRT plan (model.plan) from the ONNX model: fp32, fp16, bf16, int8 (calibrated), tf32",
)

ORT_TRT = Rule(
    name="ort-trt", version="2", build=build.build_ort_trt, consumes="onnx",
    params={key: config.DEFAULTS[key] for key in ("opt_batch_size", "workspace")}, uses=("max_batch_size",),
    tools=("onnxruntime-gpu", "onnxruntime"), precisions=("fp32", "fp16", "bf16"), device_bound=True,
    devices=("cuda",), runner="ort-trt", needs=Needs(modules=("onnxruntime",), gpu=True), normalized=False,
    canonical_digest=build.info_digest,
    outputs=(loader.ONNX_FILE, loader.BUILD_INFO, f"{loader.ORT_ENGINE_DIR}/*"), device_tools=("tensorrt",),
    loads_code=True,
    description="ONNX model with ONNX Runtime's TensorRT execution provider and its engine cache",
)

ORT_CUDA = Rule(
    name="ort-cuda", version="1", build=build.build_ort_cuda, consumes="onnx",
    tools=("onnxruntime-gpu", "onnxruntime"), devices=("cuda",), runner="ort-cuda",
    needs=Needs(modules=("onnxruntime",), gpu=True), outputs=(loader.ONNX_FILE,), scan=scan_onnx,
    description="ONNX model checked on ONNX Runtime's CUDA execution provider",
)

RULES = [TRT, ORT_TRT, ORT_CUDA]
RUNNERS = [TensorRTRunner, OrtTensorRTRunner, OrtCudaRunner]
