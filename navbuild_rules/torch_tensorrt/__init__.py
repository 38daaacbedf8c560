"""Torch-TensorRT: rule ``torch-trt`` (targets ``torch-trt-fp32``, ``-fp16``, ``-bf16``), runner ``torch-trt``.

Compiles the upstream ``torch-export`` program (``model.pt2``) with Torch-TensorRT for a dynamic
batch (profile from the samples, as for ``trt``) and saves it as an ExportedProgram
(``model.ep``) that ``torch.export.load`` reloads once ``torch_tensorrt`` is imported. Needs
``torch_tensorrt`` and a GPU; skipped with the reason otherwise. TF32 is off in its TensorRT
layers (``disable_tf32``). Importing this module imports no framework.
"""
from navbuild.rule import Needs, Rule
from navbuild_rules.torch_tensorrt import build, loader
from navbuild_rules.torch_tensorrt.runner import TorchTensorRTRunner

TORCH_TRT = Rule(
    name="torch-trt", version="2", build=build.build_torch_trt, consumes="torch-export",
    params=dict(build.DEFAULTS), uses=("max_batch_size",), tools=("torch", "torch-tensorrt", "tensorrt"),
    precisions=build.PRECISIONS,
    device_bound=True, devices=("cuda",), runner="torch-trt", needs=Needs(modules=("torch_tensorrt",), gpu=True),
    suffix_default_precision=True, normalized=False, canonical_digest=build.info_digest, validate=build.validate,
    outputs=(loader.OUTPUT_FILE, loader.BUILD_INFO), device_tools=("tensorrt",), loads_code=True,
    description="Torch-TensorRT compile of the exported program, saved as an ExportedProgram",
)

RULES = [TORCH_TRT]
RUNNERS = [TorchTensorRTRunner]
