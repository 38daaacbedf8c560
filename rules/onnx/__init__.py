"""The onnx family: ``model.onnx`` exported from a torch model, run by ONNX Runtime.

Importing this module imports no framework: torch, onnx and onnxruntime are imported lazily.
"""
from __future__ import annotations

from navbuild.rule import Needs, Rule

from rules.onnx import build, loader, runner
from rules.torch import memory_format

RULES = [
    Rule(name="onnx", version="1", build=build.build_onnx, frameworks=("torch",),
         params={"opset": build.DEFAULT_OPSET, "exporter": "auto", "channels_last": False},
         uses=("max_batch_size", "normalize"),
         variants=memory_format.VARIANTS,
         tools=("torch", "onnx", "onnxscript"), precisions=("fp32", "fp16"), runner=runner.OnnxRuntimeRunner.name,
         needs=Needs(modules=("torch", "onnx"), cuda_when_device_is_cuda=False),
         validate=build.validate_params, outputs=loader.OUTPUTS + (memory_format.RUNTIME_FILE,),
         triton=loader.ONNXRUNTIME,
         base=True, description="ONNX with a dynamic batch axis (TorchScript-based exporter, dynamo as fall-back)"),
]

RUNNERS = [runner.OnnxRuntimeRunner]
