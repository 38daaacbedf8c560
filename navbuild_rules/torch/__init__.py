"""The torch family: reference outputs, the eager recipe, TorchScript, torch.export and ONNX (exported
with torch.onnx, finished as every ONNX target in navbuild_rules/onnx, run by its ONNX Runtime runner).

Importing this module imports no framework: its modules bind torch with ``navbuild.lazy.lazy_import``.
"""
from __future__ import annotations

from typing import Any, Callable

from navbuild.rule import ROLE_REFERENCE, Needs, Rule, TritonModel

from navbuild_rules.onnx import build as onnx_build
from navbuild_rules.onnx import loader as onnx_loader
from navbuild_rules.onnx.runner import OnnxRuntimeRunner
from navbuild_rules.onnx.scan import scan_onnx
from navbuild_rules.torch import build, loader, memory_format, onnx_export, runner, scan

PRECISIONS = ("fp32", "fp16", "bf16", "tf32")  # tf32: fp32 run with TF32 math on a GPU (tf32.py)
EXPORT_PARAMS = {memory_format.OPTION: False}
EXPORT_USES = ("max_batch_size", "normalize")  # the batch axis and byte-reproducible files
NEEDS = Needs(modules=("torch",))
# Triton's libtorch backend binds tensors by position: they are named <name>__<index>
LIBTORCH = TritonModel(backend="pytorch", platform="pytorch_libtorch",
                       files={loader.TORCHSCRIPT_FILE: "model.pt"}, tensor_name="{name}__{index}")


def _export_rule(name: str, build_fn: Callable[..., Any], runner_name: str, description: str,
                 output: str, scan_fn: Callable[..., Any], triton: TritonModel | None = None,
                 version: str = "1") -> Rule:
    return Rule(name=name, version=version, build=build_fn, frameworks=("torch",), params=dict(EXPORT_PARAMS),
                uses=EXPORT_USES,
                tools=("torch",), precisions=PRECISIONS, runner=runner_name, needs=NEEDS,
                validate=memory_format.validate, variants=memory_format.VARIANTS, description=description,
                outputs=(output, loader.RUNTIME_FILE), triton=triton, base=True, scan=scan_fn)


RULES = [
    Rule(name="reference", version="1", build=build.build_reference, frameworks=("torch",), tools=("torch",),
         needs=Needs(modules=("torch",), cuda_when_device_is_cuda=False), role=ROLE_REFERENCE,
         outputs=(loader.REFERENCE_FILE, loader.REFERENCE_REPEAT_FILE),
         description="the eager model's fp32 outputs on every sample, computed on the CPU"),
    # The recipe names the entry file and the weights, not the modules that the entry imports: the
    # engine adds the model's source digests to its digest (identifies_model=False).
    # int8: a module quantized beforehand, run as given (model_io.DTYPES)
    Rule(name="torch", version="3", build=build.build_eager_recipe, frameworks=("torch",), tools=("torch",),
         precisions=PRECISIONS + ("int8",), runner=runner.TorchEagerRunner.name, needs=NEEDS, identifies_model=False,
         params={memory_format.OPTION: False}, validate=memory_format.validate, variants=memory_format.VARIANTS,
         outputs=(loader.RECIPE_FILE,), description="the source model run eagerly (a recipe, not an export)"),
    _export_rule("torchscript-trace", build.build_torchscript_trace, runner.TorchScriptRunner.name,
                 "TorchScript from torch.jit.trace", loader.TORCHSCRIPT_FILE, scan.scan_torchscript, LIBTORCH,
                 version="2"),  # 2: TF32 and cuDNN's autotuner set before tracing (a trace keeps them)
    _export_rule("torchscript-script", build.build_torchscript_script, runner.TorchScriptRunner.name,
                 "TorchScript from torch.jit.script", loader.TORCHSCRIPT_FILE, scan.scan_torchscript, LIBTORCH,
                 version="2"),
    _export_rule("torch-export", build.build_torch_export, runner.TorchExportRunner.name,
                 "an ExportedProgram (.pt2) from torch.export with a dynamic batch dimension", loader.EXPORT_FILE,
                 scan.scan_export),
    Rule(name="onnx", version="2", build=onnx_export.build_onnx, frameworks=("torch",),
         params={"opset": onnx_export.DEFAULT_OPSET, "exporter": "auto", memory_format.OPTION: False},
         uses=EXPORT_USES, variants=memory_format.VARIANTS, tools=("torch", "onnxscript", *onnx_build.TOOLS),
         precisions=onnx_build.PRECISIONS, runner=OnnxRuntimeRunner.name,
         needs=Needs(modules=("torch", "onnx"), cuda_when_device_is_cuda=False),
         validate=onnx_export.validate_params, outputs=onnx_loader.OUTPUTS + (onnx_loader.LAYOUT_FILE,),
         triton=onnx_loader.ONNXRUNTIME, scan=scan_onnx, base=True,
         description="ONNX with a dynamic batch axis (TorchScript-based exporter, dynamo as fall-back)"),
]

RUNNERS = [runner.TorchEagerRunner, runner.TorchScriptRunner, runner.TorchExportRunner]
