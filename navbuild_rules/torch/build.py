"""Build functions of the torch family: reference outputs, the eager recipe and the three exports.

Reduced precisions (fp16, bf16) are applied by casting the weights with ``model.to(dtype)``
("cast"); the exported artifact takes float inputs of that dtype, which the runners cast to.
Every export is normalized (see ``normalize.py``) unless ``normalize = false``, then loaded back
and run once, so an archive that the normalization broke fails here and not downstream.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import warnings
from typing import Any, Iterator

from navbuild import dynamic_axes
from navbuild.lazy import lazy_import
from navbuild.rule import CHECK_HINT, BuildContext

from navbuild_rules.torch import memory_format, model_io, normalize, plain_io, tf32
from navbuild_rules.torch.loader import (EXPORT_FILE, RECIPE_FILE, REFERENCE_FILE, REFERENCE_REPEAT_FILE, TORCHSCRIPT_FILE,
                                load_exported, load_torchscript)

torch = lazy_import("torch")

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class ExportError(RuntimeError):
    """An exporter refused the model; the message names the model, the exporter and the cause."""


def export_error(ctx: BuildContext, exporter: str, exc: BaseException, hint: str | None = None) -> ExportError:
    """The cause's first line on the first line (what a status line shows), with the hint, then the
    whole of it."""
    text = _ANSI_ESCAPE.sub("", str(exc)).strip()  # the dynamo exporter colours its messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = f"model {ctx.model.name}: {exporter} failed: {type(exc).__name__}: {lines[0] if lines else ''}"
    message = message.rstrip(": ") + (f"; {hint}" if hint else "")
    return ExportError(message + ("\n" + text if len(lines) > 1 else ""))


def script_hint(model: Any) -> str | None:
    """Why torch.jit.script fails on a Hugging Face model, and what to use instead."""
    if type(model).__module__.startswith("transformers."):
        return ("torch.jit.script is not expected to work for Hugging Face models (their Python code is "
                "beyond TorchScript); use torchscript-trace, torch-export or onnx")
    return None


@contextlib.contextmanager
def warnings_to_log(ctx: BuildContext) -> Iterator[list[str]]:
    """Exporters' warnings (tracer warnings, deprecations) go to the build log, each once; the list
    it yields holds them (``Category: message``) once the block is done."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield messages
        finally:
            messages.extend(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught))
            for message in messages:
                ctx.log(message)


# A trace records the branch that the example took when the model turns a tensor into a Python value.
_DATA_DEPENDENT_TRACE = "TracerWarning: Converting a tensor to a Python"


def trace_check_hint(messages: list[str]) -> str | None:
    """What a failed check of a trace says when the tracer warned of data-dependent control flow."""
    found = next((m for m in messages if m.startswith(_DATA_DEPENDENT_TRACE)), None)
    if found is None:
        return None
    return (f"torch.jit.trace warned \"{found.split('. ')[0]}\": the trace recorded only the branch that "
            f"the example took; use torchscript-script, or torch-export with the branch written as torch.cond")


def export_hint(exc: BaseException) -> str | None:
    """What a torch.export failure on data-dependent control flow should suggest."""
    if type(exc).__name__ == "GuardOnDataDependentSymNode" or "data-dependent expression" in str(exc):
        return ("the model branches on a tensor's value, which torch.export cannot trace: write the branch "
                "as torch.cond, or use torchscript-script")
    return None


@contextlib.contextmanager
def native_stdout_to_log(ctx: BuildContext, what: str) -> Iterator[None]:
    """What native code prints on the process's stdout (file descriptor 1, which Python's redirection
    does not reach) goes to the build log: the TorchScript ONNX exporter prints its whole IR graph
    there when it fails ("Torch IR graph at exception"), hundreds of lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "replace").strip()
            if text:
                ctx.log(f"{what} printed {len(text.splitlines())} lines:\n{text}")


# -- reference --------------------------------------------------------------------------------------
def build_reference(ctx: BuildContext) -> dict[str, Any]:
    """The eager model's fp32 outputs on every sample, on the CPU whatever the target device.

    This is the first load of the model: inputs and outputs that do not match their declaration
    stop it here (``model_io.BindingError``), and so does a reference that holds NaN or Inf, with
    one message for the model rather than one per format. The model is loaded and run a second
    time; when the two runs differ at all, the second is kept (``REFERENCE_REPEAT_FILE``) and each
    check tells a source that disagrees with itself from a format that is wrong.
    """
    from navbuild import tensors

    outputs = _reference_run(ctx, log_training=True)
    unstable = _first_nonfinite(outputs)
    if unstable:
        raise ReferenceError(f"model {ctx.model.name}: the reference itself is unstable: {unstable}; no "
                             f"artifact can be checked against it, so none is built. Check the model and "
                             f"its samples")
    tensors.save(ctx.out_dir / REFERENCE_FILE, outputs)
    repeat = _reference_run(ctx, log_training=False)
    if not _identical(outputs, repeat):
        ctx.log(f"reference: a second load and run of model {ctx.model.name} gave other outputs; kept in "
                f"{REFERENCE_REPEAT_FILE} for the checks to judge")
        tensors.save(ctx.out_dir / REFERENCE_REPEAT_FILE, repeat)
    first = outputs[0] if outputs else {}
    return {"samples": len(outputs), "deterministic": _identical(outputs, repeat),
            "outputs": [{"name": name, "dtype": str(array.dtype), "shape": ctx.model.declared_shape(array.shape, name)}
                        for name, array in first.items()]}


class ReferenceError(RuntimeError):
    """The source model's own outputs cannot serve as a reference."""


def _reference_run(ctx: BuildContext, log_training: bool) -> list[dict[str, Any]]:
    source = ctx.model.load_entry()
    training = model_io.training_modules(source)
    if training and log_training:
        ctx.log(f"warning: model {ctx.model.name} was in training mode ({', '.join(training)}); navbuild runs "
                f"every model in eval mode (model.eval()), where dropout is off and batch norm uses its "
                f"running statistics")
    model = model_io.prepare_model(source, "cpu", torch.float32)
    tf32.apply("fp32", "cpu")  # true fp32, whatever the model's code set
    names = model_io.input_order(ctx.model, ctx.samples[0])
    binding = model_io.input_binding(ctx.model, model, names)  # the first load: a mismatch stops everything
    outputs = []
    with torch.inference_mode():
        for sample in ctx.samples:
            inputs = model_io.to_tensors(ctx.model, sample, "cpu", torch.float32)
            outputs.append(model_io.named_outputs(ctx.model, model_io.call(model, names, inputs, binding)))
    return outputs


def _first_nonfinite(outputs: list[dict[str, Any]]) -> str | None:
    from navbuild.tensors import nonfinite

    for index, sample in enumerate(outputs):
        for name, array in sample.items():
            found = nonfinite(array)
            if found:
                return f"output {name} of sample {index}: {found}"
    return None


def _identical(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> bool:
    import numpy as np

    return all(a.keys() == b.keys() and all(np.array_equal(a[n], b[n]) for n in a) for a, b in zip(first, second))


# -- eager recipe -------------------------------------------------------------------------------------
def build_eager_recipe(ctx: BuildContext) -> dict[str, Any]:
    """``recipe.json``: the source model itself is the artifact, run eagerly at this precision.

    The recipe names the digests of the entry file and of the weights, so that a change to either
    changes the artifact (and everything downstream reruns); as the code is the artifact, a comment
    edit in the entry file does too.
    """
    source = ctx.model.load_entry()
    if ctx.precision == "int8" and not model_io.is_quantized(source):
        raise ValueError(f"{ctx.target}: the model holds no quantized module; int8 runs a module quantized "
                         f"beforehand (torch.ao.quantization.quantize_dynamic, NVIDIA ModelOpt), as given")
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    recipe = {"format": "torch-eager", "entry": ctx.model.entry, "precision": ctx.precision,
              "dtype": model_io.DTYPES[ctx.precision], "precision_mode": "cast",
              "memory_format": memory_format.name(channels_last),
              "entry_file_digest": _entry_file_digest(ctx), "weights_digest": state_digest(source)}
    dtype = model_io.torch_dtype(ctx.precision)
    model = memory_format.model(model_io.prepare_model(source, ctx.device, dtype), channels_last)
    names = model_io.input_order(ctx.model, ctx.samples[0])
    binding = model_io.input_binding(ctx.model, model, names)
    with torch.inference_mode():  # fail here, not at the first correctness check
        try:
            tensors = memory_format.inputs(model_io.to_tensors(ctx.model, ctx.samples[0], ctx.device, dtype),
                                           channels_last)
            model_io.call(model, names, tensors, binding)
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

    # a plain tensor's entry is [name, dtype, shape, digest], as before quantized modules were read
    return hashing.digest_value([[name, *part] if isinstance(value, torch.Tensor) and not value.is_quantized
                                 else [name, part]
                                 for name, value in model.state_dict().items()
                                 for part in [_state_part(value)]])


def _state_part(value: Any) -> Any:
    """One state entry: a tensor by dtype, shape and bytes; a quantized module's entries (quantized
    tensors, packed parameters as tuples, dtypes) by their integer values and scales, or their text."""
    from navbuild import hashing

    if isinstance(value, torch.Tensor):
        if value.is_quantized:  # integers and the floats they stand for
            return ["quantized", str(value.dtype), list(value.shape), _state_part(value.int_repr()),
                    _state_part(value.dequantize())]
        raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return [str(value.dtype), list(value.shape), hashing.digest_bytes(raw)]
    if isinstance(value, (tuple, list)):
        return [_state_part(item) for item in value]
    return repr(value)


# -- TorchScript ------------------------------------------------------------------------------------
def build_torchscript_trace(ctx: BuildContext) -> dict[str, Any]:
    def trace(model: Any, example: tuple[Any, ...], names: list[str]) -> tuple[Any, list[str]]:
        module, output_names = plain_io.exportable(model, ctx.model, names, example)
        # check_trace=False: the correctness check replaces it.
        return torch.jit.trace(module, example, strict=False, check_trace=False), output_names

    return _build_torchscript(ctx, "torch.jit.trace", trace)


def build_torchscript_script(ctx: BuildContext) -> dict[str, Any]:
    def script(model: Any, example: tuple[Any, ...], names: list[str]) -> tuple[Any, list[str]]:
        scripted = torch.jit.script(model)
        module, output_names = plain_io.exportable(model, ctx.model, names, example, compiled=scripted)
        if module is not scripted:  # inputs by name or a dict result: a traced shell around the scripted
            module = torch.jit.trace(module, example, strict=False, check_trace=False)  # model keeps its code
        return module, output_names

    return _build_torchscript(ctx, "torch.jit.script", script)


def _build_torchscript(ctx: BuildContext, exporter: str, compile_model: Any) -> dict[str, Any]:
    dtype = model_io.torch_dtype(ctx.precision)
    channels_last = memory_format.enabled(ctx.params, ctx.target)
    model = memory_format.model(model_io.prepare_model(ctx.model.load_entry(), ctx.device, dtype), channels_last)
    example = memory_format.inputs(_example(ctx, dtype), channels_last)
    names = model_io.input_order(ctx.model, ctx.samples[0])
    path = ctx.out_dir / TORCHSCRIPT_FILE
    try:
        with torch.no_grad(), warnings_to_log(ctx) as warned, tf32.traced_flags(ctx.precision, ctx.device):
            module, output_names = compile_model(model, example, names)
            torch.jit.save(module, str(path))
    except model_io.BindingError:
        raise
    except Exception as exc:
        hint = script_hint(model) if exporter == "torch.jit.script" else None
        raise export_error(ctx, exporter, exc, hint) from exc
    hint = trace_check_hint(warned) if exporter == "torch.jit.trace" else None
    normalized = _normalize(ctx, lambda: normalize.normalize_torchscript(path, normalize.path_module_aliases(model)))
    outputs = _check_loads(ctx, lambda: load_torchscript(path, ctx.device)(*example), output_names)
    lengths = _check_other_sizes(ctx, exporter, model, lambda args: load_torchscript(path, ctx.device)(*args),
                                 dtype, channels_last)
    memory_format.write_runtime(ctx.out_dir, channels_last)
    return {"exporter": exporter, **_precision_metadata(ctx, example, outputs), "normalized": normalized,
            **_runtime_metadata(ctx, channels_last), **({CHECK_HINT: hint} if hint else {}),
            **({"checked_sizes": lengths} if lengths else {})}


def other_sizes_example(ctx: BuildContext, only: str | None = None) -> tuple[dict[str, Any], dict[str, int]] | None:
    """The export example with every dynamic axis (or the one labelled ``only``) at another size (one
    a sample has, else one within the axis's range that none has), and those sizes; None when no axis
    can take another size."""
    axes = ctx.model.dynamic_axes
    sample = model_io.example_batch(ctx.model, ctx.samples, ctx.max_batch_size)
    here = dynamic_axes.sizes(axes, [sample])
    seen = dynamic_axes.sizes(axes, ctx.samples)
    chosen = {}
    for label, span in dynamic_axes.spec_ranges(ctx.model, ctx.samples).items():
        if not here[label] or only not in (None, label):
            continue
        size = dynamic_axes.other_size(span, here[label][0], seen[label])
        if size is not None:
            sample, chosen[label] = dynamic_axes.resized(sample, axes, label, size), size
    return (sample, chosen) if chosen else None


def source_at(ctx: BuildContext, run: Any, where: str) -> Any:
    """``run()``: the source model at another size of its dynamic axes; its own failure there means
    the axis is not as dynamic as declared, which no format can mend."""
    try:
        return run()
    except Exception as exc:
        raise ExportError(f"model {ctx.model.name}: the model itself fails at {where}, a size its dynamic_axes "
                          f"allow: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                          f"; declare the sizes it takes (min, max) or leave the axis out of dynamic_axes") from exc


def _check_other_sizes(ctx: BuildContext, exporter: str, model: Any, run_artifact: Any, dtype: Any,
                       channels_last: bool) -> dict[str, int] | None:
    """Run the artifact with its dynamic axes at other sizes than the example's, beside the eager
    model: a trace that fixed a size (a Python int taken from a shape) fails here, at build time."""
    import numpy as np

    other = other_sizes_example(ctx)
    if other is None:
        return None
    sample, sizes = other
    args = memory_format.inputs(model_io.to_tensors(ctx.model, sample, ctx.device, dtype), channels_last)
    names = model_io.input_order(ctx.model, sample)
    where = ", ".join(f"{label} = {size}" for label, size in sizes.items())
    instead = "; use torch-export or torchscript-script" if exporter == "torch.jit.trace" else ""
    with torch.no_grad():
        expected = model_io.flatten(source_at(ctx, lambda: model_io.call(
            model, names, args, model_io.input_binding(ctx.model, model, names)), where))
        try:
            actual = model_io.flatten(run_artifact(args))
        except Exception as exc:
            raise ExportError(f"model {ctx.model.name}: the {exporter} artifact fails at {where} (it was made at "
                              f"another size): {type(exc).__name__}: {str(exc).strip().splitlines()[0]}{instead}") from exc
    tolerance = 1e-4 if dtype == torch.float32 else 1e-2
    for index, (got, want) in enumerate(zip(actual, expected)):
        if tuple(got.shape) != tuple(want.shape) or not np.allclose(
                model_io.to_numpy(got), model_io.to_numpy(want), atol=tolerance, rtol=10 * tolerance):
            raise ExportError(f"model {ctx.model.name}: the {exporter} artifact gives output {index} of shape "
                              f"{list(got.shape)} at {where} where the model gives {list(want.shape)}, or other "
                              f"values: it recorded the example's size{instead}")
    ctx.log(f"{exporter}: checked again at {where}: same shapes and values as the model")
    return sizes


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
            module, output_names = plain_io.exportable(model, ctx.model, model_io.input_order(ctx.model, ctx.samples[0]),
                                                       example)
            program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes(ctx))
            torch.export.save(program, str(path))
    except model_io.BindingError:
        raise
    except Exception as exc:
        raise export_error(ctx, "torch.export.export", exc, export_hint(exc) or dims_hint(ctx, exc)) from exc
    normalized = _normalize(ctx, lambda: normalize.normalize_pt2(path, normalize.path_module_aliases(model)))
    outputs = _check_loads(ctx, lambda: load_exported(path, ctx.device)(*example), output_names)
    lengths = _check_other_sizes(ctx, "torch.export", model, lambda args: load_exported(path, ctx.device)(*args),
                                 dtype, channels_last)
    memory_format.write_runtime(ctx.out_dir, channels_last)
    return {"exporter": "torch.export", **_precision_metadata(ctx, example, outputs),
            "dynamic_batch": ctx.max_batch_size >= 2, "normalized": normalized,
            **_runtime_metadata(ctx, channels_last), **({"checked_sizes": lengths} if lengths else {})}


def dynamic_shapes(ctx: BuildContext, *, batch: bool = True) -> tuple[dict[int, Any], ...] | None:
    """torch.export's ``dynamic_shapes``, one dict per positional input: the batch Dim (1..max_batch_size,
    unless ``batch`` is False: a static batch) and a bounded Dim per dynamic-axis label, shared by every
    input that has that label (``navbuild.dynamic_axes``: declared bounds, else 1 to the largest size in
    the samples). None when nothing is dynamic."""
    max_batch = ctx.max_batch_size
    dims: dict[str, Any] = {}
    if batch and max_batch >= 2:
        dims["batch"] = torch.export.Dim("batch", min=1, max=max_batch)
    spans = dynamic_axes.spec_ranges(ctx.model, ctx.samples)
    shapes = []
    for name in model_io.input_order(ctx.model, ctx.samples[0]):
        axes = {ctx.model.batch_dim: dims["batch"]} if "batch" in dims else {}
        for axis, label in ctx.model.dynamic_axes.get(name, {}).items():
            span = spans[label]
            if span.min < span.max:  # one size is a static axis
                axes[int(axis)] = dims.setdefault(label, torch.export.Dim(label, min=span.min, max=span.max))
        shapes.append(axes)
    return tuple(shapes) if any(shapes) else None


_SUGGESTED_DIM = re.compile(r"^\s*(\w+) = Dim\('(\w+)'(?:, (min=\d+))?(?:, (max=\d+))?\)", re.MULTILINE)


def dims_hint(ctx: BuildContext, exc: BaseException) -> str | None:
    """torch.export's suggested fix for a dynamic axis's range (``seq = Dim('seq', max=64)``) in the
    terms of navbuild.toml: the bounds to declare for that axis."""
    found = _SUGGESTED_DIM.findall(_ANSI_ESCAPE.sub("", str(exc)))
    fixes = []
    for _, label, low, high in found:
        where = next((f"{name}.{axis}" for name, axes in ctx.model.dynamic_axes.items()
                      for axis, each in axes.items() if each == label), None)
        if where is None:
            continue
        bounds = ", ".join(part.replace("=", " = ") for part in (low, high) if part)
        fixes.append(f"{label} ({bounds}): dynamic_axes.{where} = {{ name = \"{label}\", {bounds} }}")
    if not fixes:
        return None
    return f"torch.export found the model valid for a smaller range of {'; '.join(fixes)}"


# -- shared steps -------------------------------------------------------------------------------------
def _example(ctx: BuildContext, dtype: Any) -> tuple[Any, ...]:
    sample = model_io.example_batch(ctx.model, ctx.samples, ctx.max_batch_size)
    return model_io.to_tensors(ctx.model, sample, ctx.device, dtype)


def _normalize(ctx: BuildContext, normalize_file: Any) -> bool:
    if not ctx.normalize:
        return False
    normalize_file()
    return True


def _check_loads(ctx: BuildContext, load_and_run: Any, output_names: list[str]) -> list[tuple[str, Any]]:
    """Load the written artifact back and run it once on the example: its outputs, named."""
    try:
        with torch.no_grad():
            outputs = load_and_run()
    except Exception as exc:
        raise RuntimeError(f"model {ctx.model.name}: the written artifact does not load and run: "
                           f"{type(exc).__name__}: {exc}") from exc
    return list(zip(output_names, model_io.flatten(outputs)))


def _precision_metadata(ctx: BuildContext, example: tuple[Any, ...], outputs: list[tuple[str, Any]]) -> dict[str, Any]:
    """How the precision is applied and the artifact's own I/O types (its runner casts to them)."""
    inputs = model_io.input_order(ctx.model, ctx.samples[0])
    return {"precision_mode": "cast", "dtype": model_io.DTYPES[ctx.precision],
            "input_types": {name: _dtype_name(t) for name, t in zip(inputs, example)},
            "output_types": {name: _dtype_name(t) for name, t in outputs}}


def _runtime_metadata(ctx: BuildContext, channels_last: bool) -> dict[str, Any]:
    """How the runner will run it: memory format, cuDNN's autotuner (on for CUDA runners), TF32."""
    return {"memory_format": memory_format.name(channels_last), "cudnn_benchmark": ctx.device == "cuda",
            "tf32": tf32.enabled(ctx.precision, ctx.device)}


def _dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).removeprefix("torch.")
