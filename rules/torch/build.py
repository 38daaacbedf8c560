"""Build functions of the torch family: reference outputs, the eager recipe and the three exports.

Reduced precisions (fp16, bf16) are applied by casting the weights with ``model.to(dtype)``
("cast"); the exported artifact takes float inputs of that dtype, which the runners cast to.
Every export is normalized (see ``normalize.py``) unless ``normalize = false``, then loaded back
and run once, so an archive that the normalization broke fails here and not downstream.
"""
from __future__ import annotations

import contextlib
import json
import re
import warnings
from typing import Any, Iterator

from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from navbuild.runner import output_names

from rules.torch import memory_format, model_io, normalize
from rules.torch.loader import (EXPORT_FILE, RECIPE_FILE, REFERENCE_FILE, TORCHSCRIPT_FILE, load_exported,
                                load_torchscript)

torch = lazy_import("torch")

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class ExportError(RuntimeError):
    """An exporter refused the model; the message names the model, the exporter and the cause."""


def export_error(ctx: BuildContext, exporter: str, exc: BaseException) -> ExportError:
    """The cause's first line on the first line (what a status line shows), then the whole of it."""
    text = _ANSI_ESCAPE.sub("", str(exc)).strip()  # the dynamo exporter colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = f"model {ctx.model.name}: {exporter} failed: {type(exc).__name__}: {lines[0] if lines else ''}"
    return ExportError(message.rstrip(": ") + ("\n" + text if len(lines) > 1 else ""))


@contextlib.contextmanager
def warnings_to_log(ctx: BuildContext) -> Iterator[None]:
    """Exporters' warnings (tracer warnings, deprecations) go to the build log, each once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for message in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
                ctx.log(message)


# -- reference --------------------------------------------------------------------------------------
def build_reference(ctx: BuildContext) -> dict[str, Any]:
    """The eager model's fp32 outputs on every sample, on the CPU whatever the target device."""
    from navbuild import tensors

    model = model_io.prepare_model(ctx.model.load_entry(), "cpu", torch.float32)
    outputs = []
    with torch.inference_mode():
        for sample in ctx.samples:
            inputs = model_io.to_tensors(ctx.model, sample, "cpu", torch.float32)
            outputs.append(model_io.named_outputs(ctx.model, model(*inputs)))
    tensors.save(ctx.out_dir / REFERENCE_FILE, outputs)
    first = outputs[0] if outputs else {}
    return {"samples": len(outputs),
            "outputs": [{"name": name, "dtype": str(array.dtype), "shape": [-1, *array.shape[1:]]}
                        for name, array in first.items()]}


# -- eager recipe -------------------------------------------------------------------------------------
def build_eager_recipe(ctx: BuildContext) -> dict[str, Any]:
    """``recipe.json``: the source model itself is the artifact, run eagerly at this precision.

    The recipe names the digests of the entry file and of the weights, so that a change to either
    changes the artifact (and everything downstream reruns); as the code is the artifact, a comment
    edit in the entry file does too.
    """
    source = ctx.model.load_entry()
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    recipe = {"format": "torch-eager", "entry": ctx.model.entry, "precision": ctx.precision,
              "dtype": model_io.DTYPES[ctx.precision], "precision_mode": "cast",
              "memory_format": memory_format.name(channels_last),
              "entry_file_digest": _entry_file_digest(ctx), "weights_digest": state_digest(source)}
    dtype = model_io.torch_dtype(ctx.precision)
    model = memory_format.model(model_io.prepare_model(source, ctx.device, dtype), channels_last)
    with torch.inference_mode():  # fail here, not at the first correctness check
        try:
            model(*memory_format.inputs(model_io.to_tensors(ctx.model, ctx.samples[0], ctx.device, dtype),
                                        channels_last))
        except Exception as exc:
            raise export_error(ctx, f"running the model in {ctx.precision} on {ctx.device}", exc) from exc
    (ctx.out_dir / RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return {"precision_mode": "cast", "dtype": recipe["dtype"],  # the runner casts inputs and outputs
            **_runtime_metadata(ctx, channels_last)}


def _entry_file_digest(ctx: BuildContext) -> str:
    from navbuild import hashing

    return hashing.digest_file(ctx.model.root / ctx.model.entry.rpartition(":")[0])


def state_digest(model: Any) -> str:
    """Digest of a module's parameters and buffers: names, dtypes, shapes and bytes."""
    from navbuild import hashing

    parts = []
    for name, tensor in model.state_dict().items():
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        parts.append([name, str(tensor.dtype), list(tensor.shape), hashing.digest_bytes(raw)])
    return hashing.digest_value(parts)


# -- TorchScript ------------------------------------------------------------------------------------
def build_torchscript_trace(ctx: BuildContext) -> dict[str, Any]:
    def trace(model: Any, example: tuple[Any, ...]) -> Any:
        # strict=False lets dict and list outputs through; the correctness check replaces check_trace.
        return torch.jit.trace(model, example, strict=False, check_trace=False)

    return _build_torchscript(ctx, "torch.jit.trace", trace)


def build_torchscript_script(ctx: BuildContext) -> dict[str, Any]:
    return _build_torchscript(ctx, "torch.jit.script", lambda model, example: torch.jit.script(model))


def _build_torchscript(ctx: BuildContext, exporter: str, compile_model: Any) -> dict[str, Any]:
    dtype = model_io.torch_dtype(ctx.precision)
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    model = memory_format.model(model_io.prepare_model(ctx.model.load_entry(), ctx.device, dtype), channels_last)
    example = memory_format.inputs(_example(ctx, dtype), channels_last)
    path = ctx.out_dir / TORCHSCRIPT_FILE
    try:
        with torch.no_grad(), warnings_to_log(ctx):
            torch.jit.save(compile_model(model, example), str(path))
    except Exception as exc:
        raise export_error(ctx, exporter, exc) from exc
    normalized = _normalize(ctx, lambda: normalize.normalize_torchscript(path, normalize.path_module_aliases(model)))
    outputs = _check_loads(ctx, lambda: load_torchscript(path, ctx.device), example)
    memory_format.write_runtime(ctx.out_dir, channels_last)
    return {"exporter": exporter, **_precision_metadata(ctx, example, outputs), "normalized": normalized,
            **_runtime_metadata(ctx, channels_last)}


# -- torch.export -------------------------------------------------------------------------------------
def build_torch_export(ctx: BuildContext) -> dict[str, Any]:
    """``model.pt2`` from ``torch.export.export`` with a dynamic batch dimension.

    The batch is ``Dim("batch", min=1, max=max_batch_size)``, traced with a batch of 2
    (``model_io.example_batch``): a traced batch of 1 would be specialised to the constant 1
    (torch.export's 0/1 specialisation raises "You marked batch as dynamic but your code
    specialized it"). min=1 keeps batch-1 inputs valid at run time; the graph is traced assuming
    batch != 1, so a model that branches on a batch of 1 is caught by the correctness check
    (the samples include batch 1). With max_batch_size 1 the batch is static.
    """
    dtype = model_io.torch_dtype(ctx.precision)
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    model = memory_format.model(model_io.prepare_model(ctx.model.load_entry(), ctx.device, dtype), channels_last)
    example = memory_format.inputs(_example(ctx, dtype), channels_last)
    path = ctx.out_dir / EXPORT_FILE
    try:
        with torch.no_grad(), warnings_to_log(ctx):
            program = torch.export.export(model, example, dynamic_shapes=dynamic_shapes(ctx))
            torch.export.save(program, str(path))
    except Exception as exc:
        raise export_error(ctx, "torch.export.export", exc) from exc
    normalized = _normalize(ctx, lambda: normalize.normalize_pt2(path, normalize.path_module_aliases(model)))
    outputs = _check_loads(ctx, lambda: load_exported(path, ctx.device), example)
    memory_format.write_runtime(ctx.out_dir, channels_last)
    return {"exporter": "torch.export", **_precision_metadata(ctx, example, outputs),
            "dynamic_batch": max_batch_size(ctx) >= 2, "normalized": normalized,
            **_runtime_metadata(ctx, channels_last)}


def dynamic_shapes(ctx: BuildContext) -> tuple[dict[int, Any], ...] | None:
    """One dict per positional input: the shared batch Dim plus the model's declared dynamic axes."""
    max_batch = max_batch_size(ctx)
    dims: dict[str, Any] = {}
    if max_batch >= 2:
        dims["batch"] = torch.export.Dim("batch", min=1, max=max_batch)
    shapes = []
    for name in model_io.input_order(ctx.model, ctx.samples[0]):
        axes = {ctx.model.batch_dim: dims["batch"]} if "batch" in dims else {}
        for axis, dim_name in ctx.model.dynamic_axes.get(name, {}).items():
            axes[int(axis)] = dims.setdefault(dim_name, torch.export.Dim(dim_name, min=1))
        shapes.append(axes)
    return tuple(shapes) if any(shapes) else None


# -- shared steps -------------------------------------------------------------------------------------
def max_batch_size(ctx: BuildContext) -> int:
    return int(ctx.params.get("max_batch_size", ctx.model.max_batch_size))


def _example(ctx: BuildContext, dtype: Any) -> tuple[Any, ...]:
    sample = model_io.example_batch(ctx.model, ctx.samples, max_batch_size(ctx))
    return model_io.to_tensors(ctx.model, sample, ctx.device, dtype)


def _normalize(ctx: BuildContext, normalize_file: Any) -> bool:
    if not ctx.params.get("normalize", True):
        return False
    normalize_file()
    return True


def _check_loads(ctx: BuildContext, load: Any, example: tuple[Any, ...]) -> list[Any]:
    """Load the written artifact back and run it once on the example; its flat outputs."""
    try:
        with torch.no_grad():
            return model_io.flatten(load()(*example))
    except Exception as exc:
        raise RuntimeError(f"model {ctx.model.name}: the written artifact does not load and run: "
                           f"{type(exc).__name__}: {exc}") from exc


def _precision_metadata(ctx: BuildContext, example: tuple[Any, ...], outputs: list[Any]) -> dict[str, Any]:
    """How the precision is applied and the artifact's own I/O types (its runner casts to them)."""
    inputs = model_io.input_order(ctx.model, ctx.samples[0])
    return {"precision_mode": "cast", "dtype": model_io.DTYPES[ctx.precision],
            "input_types": {name: _dtype_name(t) for name, t in zip(inputs, example)},
            "output_types": {name: _dtype_name(t) for name, t in zip(output_names(ctx.model, len(outputs)), outputs)}}


def _runtime_metadata(ctx: BuildContext, channels_last: bool) -> dict[str, Any]:
    """How the runner will run it: memory format, and cuDNN's autotuner (on for CUDA runners)."""
    return {"memory_format": memory_format.name(channels_last), "cudnn_benchmark": ctx.device == "cuda"}


def _dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")
