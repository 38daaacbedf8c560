"""Build function of the onnx format: ``model.onnx`` exported from a torch model.
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

from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from navbuild.runner import output_names

from rules.torch import build as torch_build
from rules.torch import memory_format, model_io

onnx = lazy_import("onnx")
torch = lazy_import("torch")

ONNX_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
DEFAULT_OPSET = 17  # LayerNormalization is native from 17; TensorRT 8.6+ and ONNX Runtime 1.14+ read it
DYNAMO_MIN_OPSET = 18  # the dynamo exporter's own lowest opset
MIN_OPSET, MAX_OPSET = 7, 23  # what torch 2.x writes (its TorchScript-based exporter: up to 20)
EXPORTERS = ("auto", "torchscript", "dynamo")
PROTOBUF_LIMIT = 2_000_000_000  # a larger model keeps its weights in EXTERNAL_DATA_FILE


def validate_params(params: Mapping[str, Any], precision: str) -> str | None:
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
    proto = onnx.load(str(exported))
    if ctx.precision == "fp16":
        from rules.onnx.fp16 import convert_to_fp16

        proto = convert_to_fp16(proto)
    normalized = bool(ctx.params.get("normalize", True))
    if normalized:
        from rules.onnx.normalize import strip_debug_info

        strip_debug_info(proto)
    _save(proto, ctx.out_dir / ONNX_FILE)
    onnx.checker.check_model(str(ctx.out_dir / ONNX_FILE))
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    memory_format.write_runtime(ctx.out_dir, channels_last)  # the CUDA provider then prefers NHWC
    return {"exporter": used, "opset": _opset(proto),
            "precision_mode": "graph-fp16" if ctx.precision == "fp16" else "fp32",
            "input_types": _io_types(proto.graph.input), "output_types": _io_types(proto.graph.output),
            "normalized": normalized, "memory_format": memory_format.name(channels_last)}


def _export(ctx: BuildContext, exporter: str, path: Path) -> str:
    """Export with the chosen exporter (or the TorchScript one, then dynamo); returns which one ran."""
    model = model_io.prepare_model(ctx.model.load_entry(), "cpu")
    sample = model_io.example_batch(ctx.model, ctx.samples, torch_build.max_batch_size(ctx))
    example = model_io.to_tensors(ctx.model, sample)
    inputs = model_io.input_order(ctx.model, sample)
    outputs = output_names(ctx.model, _output_count(model, example))
    attempts = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    failures: list[str] = []
    for name in order:
        try:
            attempts[name](ctx, model, example, inputs, outputs, path)
            return name
        except Exception as exc:  # the next exporter, or one message naming every cause
            failures.append(str(torch_build.export_error(ctx, f"the {name} ONNX exporter", exc)))
            ctx.log(failures[-1])
            last = exc
    headlines = "; ".join(failure.splitlines()[0] for failure in failures)
    raise torch_build.ExportError(headlines + "\n\n" + "\n\n".join(failures)) from last


def _export_torchscript(ctx: BuildContext, model: Any, example: tuple[Any, ...], inputs: list[str],
                        outputs: list[str], path: Path) -> None:
    with torch_build.warnings_to_log(ctx), torch.no_grad():
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=_opset_param(ctx),
                          input_names=inputs, output_names=outputs, dynamic_axes=_dynamic_axes(ctx, inputs, outputs),
                          do_constant_folding=True)


def _export_dynamo(ctx: BuildContext, model: Any, example: tuple[Any, ...], inputs: list[str],
                   outputs: list[str], path: Path) -> None:
    with torch_build.warnings_to_log(ctx), torch.no_grad():
        program = torch.onnx.export(model, example, dynamo=True, opset_version=max(_opset_param(ctx), DYNAMO_MIN_OPSET),
                                    input_names=inputs, output_names=outputs,
                                    dynamic_shapes=torch_build.dynamic_shapes(ctx),
                                    verbose=False, optimize=True)
    program.save(str(path))


def _dynamic_axes(ctx: BuildContext, inputs: list[str], outputs: list[str]) -> dict[str, dict[int, str]]:
    """The batch axis of every input and output (when max_batch_size > 1) and declared dynamic axes."""
    batch = {ctx.model.batch_dim: "batch"} if torch_build.max_batch_size(ctx) >= 2 else {}
    axes = {name: dict(batch) for name in [*inputs, *outputs]}
    for name, declared in ctx.model.dynamic_axes.items():
        axes.setdefault(name, {}).update({int(axis): dim for axis, dim in declared.items()})
    return {name: value for name, value in axes.items() if value}


def _output_count(model: Any, example: tuple[Any, ...]) -> int:
    with torch.no_grad():
        return len(model_io.flatten(model(*example)))


def _save(proto: Any, path: Path) -> None:
    large = sum(len(t.raw_data) for t in proto.graph.initializer) > PROTOBUF_LIMIT
    onnx.save_model(proto, str(path), save_as_external_data=large, all_tensors_to_one_file=True,
                    location=EXTERNAL_DATA_FILE, size_threshold=1024)


def _io_types(values: Any) -> dict[str, str]:
    return {value.name: str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
            for value in values}


def _opset(proto: Any) -> int:
    return next(entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx"))


def _opset_param(ctx: BuildContext) -> int:
    return int(ctx.params.get("opset", DEFAULT_OPSET))
