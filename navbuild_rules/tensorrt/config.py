"""The pure-Python half of the TensorRT rules: parameters, shape profiles, int8 calibration data.

Nothing here imports TensorRT, ONNX Runtime or torch, so all of it is tested on any machine.

``TensorRTConfigError`` (a ``ValueError``) is the one exception for a configuration that can never
build, whatever the machine: an unknown precision, a bad ``workspace``, samples larger than
``max_batch_size``, or ``trt-int8`` without a ``calibration`` source. Its message names the target,
the parameter and the fix; the engine shows it as the target's failure reason, and the rules'
``validate`` hooks return the same sentence at config time (before any build, even on a machine
without TensorRT, where the target would otherwise only be reported as skipped).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from navbuild.lazy import lazy_import

np = lazy_import("numpy")


PRECISIONS = ("fp32", "fp16", "bf16", "int8", "tf32")  # tf32: fp32 layers with TF32 math
DEFAULTS: dict[str, Any] = {
    "opt_batch_size": 0,       # batch TensorRT optimizes for; 0 means the model's max_batch_size
    "workspace": 1 << 30,      # builder memory pool limit (bytes) for the WORKSPACE pool
    "calibration": "",         # int8 only: "samples" or "path/file.py:function"
}
CALIBRATION_FROM_SAMPLES = "samples"


class TensorRTConfigError(ValueError):
    """A TensorRT target's configuration cannot build on any machine (message: target, cause, fix)."""


@dataclass(frozen=True)
class ShapeRange:
    """min/opt/max shape of one input in a TensorRT optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class TrtParams:
    precision: str
    max_batch_size: int | None  # the model's (``ctx.max_batch_size``); None where it is not known
    opt_batch_size: int
    workspace: int
    calibration: str


def _positive_int(value: Any, name: str, where: str, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TensorRTConfigError(f"{where}: {name} must be an integer >= {low}, not {value!r}")
    return value


def check_params(params: Mapping[str, Any], precision: str, where: str = "trt",
                 precisions: Sequence[str] = PRECISIONS, max_batch_size: int | None = None) -> TrtParams:
    """Every parameter checked, defaults filled in; int8 needs a calibration source. ``max_batch_size``
    is the model's (an engine value); None leaves ``opt_batch_size`` unchecked against it."""
    merged = {**DEFAULTS, **dict(params)}
    if precision not in precisions:
        raise TensorRTConfigError(f"{where}: precision {precision!r} is not one of {', '.join(precisions)}")
    if max_batch_size == 0:  # NO_BATCH: the optimization profile has no batch range to span
        raise TensorRTConfigError(f"{where}: builds its optimization profile over the batch dimension, and the "
                                  f"model has no batch dimension (max_batch_size = 0); give it one, or use onnx")
    max_batch = None if max_batch_size is None else _positive_int(max_batch_size, "max_batch_size", where)
    opt_batch = _positive_int(merged["opt_batch_size"], "opt_batch_size", where, allow_zero=True)
    if max_batch is not None and opt_batch > max_batch:
        raise TensorRTConfigError(f"{where}: opt_batch_size {opt_batch} is larger than max_batch_size {max_batch}")
    workspace = _positive_int(merged["workspace"], "workspace", where)
    calibration = merged["calibration"]
    if not isinstance(calibration, str):
        raise TensorRTConfigError(f"{where}: calibration must be \"samples\" or \"path/file.py:function\", "
                                  f"not {calibration!r}")
    if precision == "int8":
        check_calibration(calibration, where)
    return TrtParams(precision, max_batch, opt_batch or max_batch, workspace, calibration)


def check_calibration(calibration: str, where: str = "trt-int8") -> str:
    """int8 without calibration data cannot build: say so, and how to give it some."""
    if not calibration:
        raise TensorRTConfigError(
            f"{where}: int8 needs calibration data; set calibration = \"samples\" (the model's samples) or "
            f"calibration = \"path/file.py:function\" (a function returning calibration samples) in the "
            f"format's options table, e.g. [models.<model>.targets.trt]")
    if calibration != CALIBRATION_FROM_SAMPLES:
        path, sep, func = calibration.rpartition(":")
        if not sep or not path.endswith(".py") or not func.isidentifier():
            raise TensorRTConfigError(f"{where}: calibration {calibration!r} is neither \"samples\" nor of the "
                                      f"form \"path/file.py:function\"")
    return calibration


def validate(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    """``Rule.validate`` hook of trt: the problem as one sentence, or None."""
    try:
        # a model without a batch dimension (0) fails its trt targets when they build, not the whole
        # configuration: trt is among the Python API's default formats
        max_batch_size = (values or {}).get("max_batch_size") or None
        check_params(params, precision, where=f"trt-{precision}", max_batch_size=max_batch_size)
    except TensorRTConfigError as exc:
        return str(exc)
    return None


# -- shapes ---------------------------------------------------------------------------------------
def batch_range(samples: Sequence[Mapping[str, np.ndarray]], batch_dim: int, max_batch_size: int,
                opt_batch_size: int = 0, where: str = "trt") -> tuple[int, int, int]:
    """(min, opt, max) of the batch dimension: 1, opt_batch_size or max_batch_size, max_batch_size.

    The samples must fit: a sample whose batch exceeds max_batch_size contradicts the config.
    """
    if not samples:
        raise TensorRTConfigError(f"{where}: no samples to derive input shapes from")
    largest = 0
    for index, sample in enumerate(samples):
        batches = {name: int(np.shape(array)[batch_dim]) for name, array in sample.items()}
        if len(set(batches.values())) > 1:
            raise TensorRTConfigError(f"{where}: sample {index} has different batch sizes per input: {batches}")
        largest = max(largest, *batches.values())
    if largest > max_batch_size:
        raise TensorRTConfigError(f"{where}: a sample has batch {largest}, more than max_batch_size "
                                  f"{max_batch_size}; raise the model's max_batch_size or use smaller samples")
    opt = opt_batch_size or max_batch_size
    if not 1 <= opt <= max_batch_size:
        raise TensorRTConfigError(f"{where}: opt_batch_size {opt} is outside 1..{max_batch_size}")
    return 1, opt, max_batch_size


def axis_ranges(model: Any, samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, dict[int, tuple[int, int, int]]]:
    """``{input: {axis: (min, opt, max)}}`` of a ModelSpec's dynamic axes (``navbuild.dynamic_axes``:
    declared bounds, else 1 to the largest size in the samples, optimized for the largest seen)."""
    from navbuild import dynamic_axes

    spans = dynamic_axes.spec_ranges(model, samples)
    return {name: {int(axis): (spans[label].min, spans[label].opt, spans[label].max) for axis, label in axes.items()}
            for name, axes in model.dynamic_axes.items()}


def profile_shapes(samples: Sequence[Mapping[str, np.ndarray]], batch_dim: int, max_batch_size: int,
                   opt_batch_size: int = 0, where: str = "trt",
                   axes: Mapping[str, Mapping[int, tuple[int, int, int]]] | None = None) -> dict[str, ShapeRange]:
    """One optimization profile from the samples.

    The batch dimension ranges over ``batch_range``. A declared dynamic axis (``axes``, from
    ``axis_ranges``) spans its (min, opt, max). Any other dimension that differs between samples
    ranges from its smallest to its largest value in the samples, optimized for the largest; a
    dimension that never changes is fixed.
    """
    low, opt, high = batch_range(samples, batch_dim, max_batch_size, opt_batch_size, where)
    names = list(samples[0])
    for index, sample in enumerate(samples[1:], start=1):
        if sorted(sample) != sorted(names):
            raise TensorRTConfigError(f"{where}: sample {index} has inputs {sorted(sample)}, sample 0 has "
                                      f"{sorted(names)}")
    profile = {}
    for name in names:
        shapes = [tuple(int(d) for d in np.shape(sample[name])) for sample in samples]
        ranks = {len(shape) for shape in shapes}
        if len(ranks) > 1:
            raise TensorRTConfigError(f"{where}: input {name} has different ranks across samples: {shapes}")
        smallest = [min(dims) for dims in zip(*shapes)]
        largest = [max(dims) for dims in zip(*shapes)]
        smallest[batch_dim], largest[batch_dim] = low, high
        optimal = list(largest)
        optimal[batch_dim] = opt
        for axis, (axis_min, axis_opt, axis_max) in (axes or {}).get(name, {}).items():
            smallest[axis], optimal[axis], largest[axis] = axis_min, axis_opt, axis_max
        profile[name] = ShapeRange(tuple(smallest), tuple(optimal), tuple(largest))
    return profile


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)


def ort_profile_options(profile: Mapping[str, ShapeRange]) -> dict[str, str]:
    """ONNX Runtime TensorRT EP options ``trt_profile_{min,opt,max}_shapes`` ("name:1x3x32x32,...")."""
    return {f"trt_profile_{which}_shapes": ",".join(f"{name}:{shape_text(getattr(ranges, which))}"
                                                    for name, ranges in profile.items())
            for which in ("min", "opt", "max")}


# -- int8 calibration -----------------------------------------------------------------------------
def load_calibration(calibration: str, samples: Sequence[Mapping[str, np.ndarray]], root: Path,
                     input_names: Sequence[str], where: str = "trt-int8") -> list[dict[str, np.ndarray]]:
    """The calibration samples: the model's own (``"samples"``) or what an entry function returns.

    The function may return tensors, tuples of tensors or dicts, like the model's samples entry.
    The file should be listed in the model's ``sources`` so that editing it rebuilds the target.
    """
    check_calibration(calibration, where)
    if calibration == CALIBRATION_FROM_SAMPLES:
        found = [dict(sample) for sample in samples]
    else:
        from navbuild.rule import call_entry
        from navbuild.tensors import as_named

        found = [as_named(item, list(input_names)) for item in call_entry(root, calibration)]
    if not found:
        raise TensorRTConfigError(f"{where}: calibration {calibration!r} gave no sample")
    return found


def calibration_batches(samples: Sequence[Mapping[str, np.ndarray]], batch_dim: int,
                        batch_size: int) -> list[dict[str, np.ndarray]]:
    """Calibration data as batches of one fixed shape.

    TensorRT calibrates at a single shape (the calibration profile's), so the samples are joined
    along the batch dimension and cut into batches of ``batch_size`` (the remainder is dropped; with
    fewer rows than ``batch_size`` there is one batch of all of them). Other dimensions must agree.
    """
    if not samples:
        raise TensorRTConfigError("trt-int8: no calibration samples")
    names = list(samples[0])
    joined = {}
    for name in names:
        arrays = [np.asarray(sample[name]) for sample in samples]
        rest = {tuple(np.delete(np.array(a.shape), batch_dim)) for a in arrays}
        if len(rest) > 1:
            raise TensorRTConfigError(f"trt-int8: calibration input {name} has differing non-batch shapes "
                                      f"{sorted(rest)}; calibration needs one shape")
        joined[name] = np.concatenate(arrays, axis=batch_dim)
    rows = int(next(iter(joined.values())).shape[batch_dim])
    size = min(batch_size, rows)
    return [{name: np.ascontiguousarray(np.take(array, range(start, start + size), axis=batch_dim))
             for name, array in joined.items()} for start in range(0, rows - size + 1, size)]
