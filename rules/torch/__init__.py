"""The torch family: reference outputs, the eager recipe, TorchScript and torch.export.

Importing this module imports no framework: its modules bind torch with ``navbuild.lazy.lazy_import``.
"""
from __future__ import annotations

from typing import Any, Callable

from navbuild.rule import Needs, Rule

from rules.torch import build, memory_format, runner

PRECISIONS = ("fp32", "fp16", "bf16")
EXPORT_PARAMS = {"max_batch_size": 1, "normalize": True,  # both supplied by the engine
                 memory_format.OPTION: False}
NEEDS = Needs(modules=("torch",))


def _export_rule(name: str, build_fn: Callable[..., Any], runner_name: str, description: str) -> Rule:
    return Rule(name=name, version="1", build=build_fn, frameworks=("torch",), params=dict(EXPORT_PARAMS),
                tools=("torch",), precisions=PRECISIONS, runner=runner_name, needs=NEEDS,
                validate=memory_format.validate, variants=memory_format.VARIANTS, description=description)


RULES = [
    Rule(name="reference", version="1", build=build.build_reference, frameworks=("torch",), tools=("torch",),
         needs=Needs(modules=("torch",), cuda_when_device_is_cuda=False),
         description="the eager model's fp32 outputs on every sample, computed on the CPU"),
    Rule(name="torch", version="1", build=build.build_eager_recipe, frameworks=("torch",), tools=("torch",),
         precisions=PRECISIONS, runner=runner.TorchEagerRunner.name, needs=NEEDS,
         params={memory_format.OPTION: False}, validate=memory_format.validate, variants=memory_format.VARIANTS,
         description="the source model run eagerly (a recipe, not an export)"),
    _export_rule("torchscript-trace", build.build_torchscript_trace, runner.TorchScriptRunner.name,
                 "TorchScript from torch.jit.trace"),
    _export_rule("torchscript-script", build.build_torchscript_script, runner.TorchScriptRunner.name,
                 "TorchScript from torch.jit.script"),
    _export_rule("torch-export", build.build_torch_export, runner.TorchExportRunner.name,
                 "an ExportedProgram (.pt2) from torch.export with a dynamic batch dimension"),
]

RUNNERS = [runner.TorchEagerRunner, runner.TorchScriptRunner, runner.TorchExportRunner]
