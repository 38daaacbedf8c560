"""The torch family's ONNX export: ``model.onnx`` from a torch model, finished as every producer's
ONNX is (``navbuild_rules/onnx/build.py``: precision, normalization, the file written and checked).
Exporter: the TorchScript-based one (``dynamo=False``) first: measured with torch 2.13, it writes
identical bytes from any checkout folder. If it refuses the model, the dynamo exporter
(``torch.export`` based) is tried; its output is normalized (see ``normalize.py``). The param
``exporter`` ("auto", "torchscript" or "dynamo") forces one.

The export runs on the CPU whatever the target device: an ONNX graph does not depend on where it
was traced. fp16 is a converted graph (``fp16.py``) whose float inputs and outputs stay float32.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild import dynamic_axes
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext

from navbuild_rules.onnx.build import write_onnx
from navbuild_rules.onnx.loader import ONNX_FILE, load_model, write_layout
from navbuild_rules.torch import build as torch_build
from navbuild_rules.torch import memory_format, model_io, plain_io

torch = lazy_import("torch")

DEFAULT_OPSET = 17  # LayerNormalization is native from 17; TensorRT 8.6+ and ONNX Runtime 1.14+ read it
DYNAMO_MIN_OPSET = 18  # the dynamo exporter's own lowest opset
MIN_OPSET, MAX_OPSET = 7, 23  # what torch 2.x writes (its TorchScript-based exporter: up to 20)
EXPORTERS = ("auto", "torchscript", "dynamo")


def validate_params(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    """The problem with a target's ``exporter`` or ``opset`` options, or None."""
    if params.get("exporter", "auto") not in EXPORTERS:
        return f"exporter {params.get('exporter')!r} is not one of {', '.join(EXPORTERS)}"
    opset = params.get("opset", DEFAULT_OPSET)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        return f"opset {opset!r} is not an integer from {MIN_OPSET} to {MAX_OPSET}"
    return memory_format.validate(params, precision)


def build_onnx(ctx: BuildContext) -> dict[str, Any]:
    problem = validate_params(ctx.params, ctx.precision)
    if problem:
        raise ValueError(f"model {ctx.model.name}: {problem}")
    exporter = ctx.params.get("exporter", "auto")
    exported = ctx.workdir / "export" / ONNX_FILE
    exported.parent.mkdir(parents=True, exist_ok=True)
    used = _export(ctx, exporter, exported)
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    metadata = write_onnx(ctx, load_model(exported))
    write_layout(ctx.out_dir, channels_last)  # ONNX Runtime's CUDA provider then prefers NHWC
    return {"exporter": used, **metadata, "memory_format": memory_format.name(channels_last)}


def _export(ctx: BuildContext, exporter: str, path: Path) -> str:
    """Export with the chosen exporter (or the TorchScript one, then dynamo); returns which one ran."""
    model = model_io.prepare_model(ctx.model.load_entry(), "cpu")
    sample = model_io.example_batch(ctx.model, ctx.samples, ctx.max_batch_size)
    example = model_io.to_tensors(ctx.model, sample)
    inputs = model_io.input_order(ctx.model, sample)
    model, outputs = plain_io.exportable(model, ctx.model, inputs, example)  # inputs by position, plain outputs
    output_axes = _output_axes(ctx, model, example, outputs)
    attempts = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    failures: list[str] = []
    for name in order:
        try:
            attempts[name](ctx, model, example, inputs, outputs, output_axes, path)
            return name
        except Exception as exc:  # the next exporter, or one message naming every cause
            failures.append(str(torch_build.export_error(ctx, f"the {name} ONNX exporter", exc)))
            ctx.log(failures[-1])
            last = exc
    headlines = "; ".join(failure.splitlines()[0] for failure in failures)
    raise torch_build.ExportError(headlines + "\n\n" + "\n\n".join(failures)) from last


def _export_torchscript(ctx: BuildContext, model: Any, example: tuple[Any, ...], inputs: list[str],
                        outputs: list[str], output_axes: dict[str, dict[int, str]], path: Path) -> None:
    with torch_build.warnings_to_log(ctx), torch_build.native_stdout_to_log(ctx, "the torchscript exporter"), \
            torch.no_grad():
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=_opset_param(ctx),
                          input_names=inputs, output_names=outputs, dynamic_axes=_dynamic_axes(ctx, inputs, outputs, output_axes),
                          do_constant_folding=True)


def _export_dynamo(ctx: BuildContext, model: Any, example: tuple[Any, ...], inputs: list[str],
                   outputs: list[str], output_axes: dict[str, dict[int, str]], path: Path) -> None:
    with torch_build.warnings_to_log(ctx), torch.no_grad():
        program = torch.onnx.export(model, example, dynamo=True, opset_version=max(_opset_param(ctx), DYNAMO_MIN_OPSET),
                                    input_names=inputs, output_names=outputs,
                                    dynamic_shapes=torch_build.dynamic_shapes(ctx),
                                    verbose=False, optimize=True)
    program.save(str(path))


def _dynamic_axes(ctx: BuildContext, inputs: list[str], outputs: list[str],
                  output_axes: dict[str, dict[int, str]]) -> dict[str, dict[int, str]]:
    """The batch axis of every input and output (when max_batch_size > 1), declared dynamic axes, and
    the output axes that follow them, named after their label."""
    batch = {ctx.model.batch_dim: "batch"} if ctx.max_batch_size >= 2 else {}
    axes = {name: dict(batch) for name in [*inputs, *outputs]}
    for name, declared in [*ctx.model.dynamic_axes.items(), *output_axes.items()]:
        axes.setdefault(name, {}).update({int(axis): dim for axis, dim in declared.items()})
    return {name: value for name, value in axes.items() if value}


def _output_axes(ctx: BuildContext, model: Any, example: tuple[Any, ...], outputs: list[str]) -> dict[str, dict[int, str]]:
    """Output axes whose size follows a dynamic input axis: the model run again with each label at
    another size, every output axis (but the batch) that changed size named after that label."""
    if not ctx.model.dynamic_axes:
        return {}
    with torch.no_grad():
        shapes = [tuple(t.shape) for t in model_io.flatten(model(*example))]
    found: dict[str, dict[int, str]] = {}
    for label in dynamic_axes.labels(ctx.model.dynamic_axes):
        other = torch_build.other_sizes_example(ctx, only=label)
        if other is None:
            continue
        where = ", ".join(f"{name} = {size}" for name, size in other[1].items())
        with torch.no_grad():
            result = torch_build.source_at(ctx, lambda: model(*model_io.to_tensors(ctx.model, other[0])), where)
        changed = [tuple(t.shape) for t in model_io.flatten(result)]
        for name, before, after in zip(outputs, shapes, changed):
            for axis in range(1, min(len(before), len(after))):
                if before[axis] != after[axis]:
                    found.setdefault(name, {}).setdefault(axis, label)
    return found


def _opset_param(ctx: BuildContext) -> int:
    return int(ctx.params.get("opset", DEFAULT_OPSET))
