"""The onnx family: ``model.onnx`` exported from a torch model, run by ONNX Runtime.

Importing this module imports no framework: torch, onnx and onnxruntime are imported lazily.
"""
from __future__ import annotations

from navbuild.rule import Needs, Rule

from rules.onnx import build, finish, loader, runner
from rules.torch import memory_format

RULES = [
    Rule(name="onnx", version="2", build=build.build_onnx, frameworks=("torch",),
         params={"max_batch_size": 1, "normalize": True, "opset": build.DEFAULT_OPSET, "exporter": "auto",
                 "channels_last": False},
         variants=memory_format.VARIANTS,
         tools=("torch", "onnxscript", *finish.TOOLS), precisions=finish.PRECISIONS,
         runner=runner.OnnxRuntimeRunner.name,
         needs=Needs(modules=("torch", "onnx"), cuda_when_device_is_cuda=False),
         validate=build.validate_params, outputs=loader.OUTPUTS + (memory_format.RUNTIME_FILE,),
         triton=loader.ONNXRUNTIME,
         base=True, description="ONNX with a dynamic batch axis (TorchScript-based exporter, dynamo as fall-back)"),
]

RUNNERS = [runner.OnnxRuntimeRunner]
