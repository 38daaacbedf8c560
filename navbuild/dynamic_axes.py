"""Dynamic axes: the non-batch axes of a model's inputs whose size varies (a sequence length), each
named by a label and bounded by a minimum and a maximum.

Declared in navbuild.toml (``[models.<m>.dynamic_axes]``) or through the Python API as
``{input: {axis: label}}`` (the short form) or ``{input: {axis: {name = label, min = 1, max = 512}}}``.
Inputs whose axes share a label have the same size in every call (``input_ids`` and
``attention_mask``), so exporters get one symbol for them. ``parse`` checks a declaration (the one check of it: the config and the API both call it);
``ranges`` gives each label its (min, opt, max) against the samples: ``min`` defaults to
``DEFAULT_MIN``, ``max`` to the largest size the samples hold, ``opt`` is the largest size seen.
Axis 0 is the batch and is never declared here.

This is a public interface of the engine: rules read the bounds through it. It imports the standard
library only (numpy where arrays are resized).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

DEFAULT_MIN = 1
MAX_AXIS = 63  # numpy and the exporters hold at most 64 dimensions
BOUND_KEYS = ("name", "min", "max")

Axes = Mapping[str, Mapping[int, str]]  # input -> axis -> label
Bounds = Mapping[str, Mapping[str, int]]  # label -> {"min": n, "max": n} (only what was declared)


class AxisError(ValueError):
    """A declaration that cannot be right: ``where`` (the key under dynamic_axes), the problem, a fix."""

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where, self.problem, self.fix = where, problem, fix


@dataclass(frozen=True)
class Range:
    """The sizes a label spans: served from ``min`` to ``max``, tuned for ``opt`` (TensorRT)."""

    label: str
    min: int
    opt: int
    max: int

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


# -- declarations ----------------------------------------------------------------------------------
SHORT_FIX = 'e.g. { 1 = "seq" } or { 1 = { name = "seq", min = 1, max = 512 } }'


def parse(table: Mapping[str, Any]) -> tuple[dict[str, dict[int, str]], dict[str, dict[str, int]]]:
    """``(axes, bounds)`` of a declaration; AxisError on anything that cannot be right: an axis that
    is not a positive integer (0 is the batch), a label that is not a name, a bound that is not an
    integer >= 1, ``min`` above ``max``, unknown keys, or one label declared with two bounds."""
    axes: dict[str, dict[int, str]] = {}
    bounds: dict[str, dict[str, int]] = {}
    declared_by: dict[str, str] = {}
    if not isinstance(table, Mapping):
        raise AxisError("", f"must be a table of inputs, not {type(table).__name__}", SHORT_FIX)
    for input_name, spec in table.items():
        if not isinstance(spec, Mapping):
            raise AxisError(str(input_name), f"must be a table of axes, not {type(spec).__name__} {spec!r}", SHORT_FIX)
        for axis_text, value in spec.items():
            where = f"{input_name}.{axis_text}"
            axis = _axis(axis_text, where)
            label, declared = _label_and_bounds(value, where)
            axes.setdefault(str(input_name), {})[axis] = label
            if not declared:
                continue
            if label in bounds and bounds[label] != declared:
                raise AxisError(where, f"axis {label!r} is declared with bounds {declared} here and "
                                f"{bounds[label]} at {declared_by[label]}", "give one label one set of bounds")
            bounds[label], declared_by[label] = declared, where
    return axes, bounds


def _axis(text: Any, where: str) -> int:
    try:
        axis = int(text)
    except (TypeError, ValueError):
        raise AxisError(where, f"axis {text!r} is not an integer", "number axes from 0 (the batch), e.g. 1") from None
    if axis == 0:
        raise AxisError(where, "axis 0 is the batch dimension, which is dynamic already",
                        "declare non-batch axes only (the batch follows max_batch_size)")
    if axis < 0:
        raise AxisError(where, f"axis {axis} is negative", "number axes from 0 (the batch)")
    if axis > MAX_AXIS:
        raise AxisError(where, f"must be from 1 to {MAX_AXIS}, not {axis}",
                        f"a tensor has at most {MAX_AXIS + 1} dimensions: number the axis from 0 (the batch)")
    return axis


def _label_and_bounds(value: Any, where: str) -> tuple[str, dict[str, int]]:
    if isinstance(value, str):
        return _name(value, where), {}
    if not isinstance(value, Mapping):
        raise AxisError(where, f"must be a label or a table, not {type(value).__name__} {value!r}", SHORT_FIX)
    unknown = sorted(set(value) - set(BOUND_KEYS))
    if unknown:
        raise AxisError(f"{where}.{unknown[0]}", "unknown key", f"use {', '.join(BOUND_KEYS)}")
    if "name" not in value:
        raise AxisError(where, "has no name", 'name the axis: { name = "seq", max = 512 }')
    label = _name(value["name"], f"{where}.name")
    declared = {key: _bound(value[key], f"{where}.{key}") for key in ("min", "max") if key in value}
    if declared.get("min", DEFAULT_MIN) > declared.get("max", declared.get("min", DEFAULT_MIN)):
        raise AxisError(where, f"min {declared['min']} is above max {declared['max']}", "give min <= max")
    return label, declared


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.isidentifier():
        raise AxisError(where, f"label {value!r} is not a name", 'use letters, digits and "_", e.g. "seq"')
    return value


def _bound(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AxisError(where, f"must be an integer >= 1, not {value!r}")
    return value


def to_table(axes: Axes, bounds: Bounds) -> dict[str, dict[str, Any]]:
    """The declaration as navbuild.toml writes it (string axis keys): ``parse``'s inverse."""
    table: dict[str, dict[str, Any]] = {}
    for name, by_axis in axes.items():
        for axis, label in by_axis.items():
            declared = dict(bounds.get(label) or {})
            table.setdefault(name, {})[str(axis)] = {"name": label, **declared} if declared else label
    return table


def labels(axes: Axes) -> list[str]:
    """Every label, in declaration order."""
    return list(dict.fromkeys(label for by_axis in axes.values() for label in by_axis.values()))


# -- against the samples ---------------------------------------------------------------------------
def sizes(axes: Axes, samples: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """The distinct sizes each label has in the samples, ascending (inputs the samples lack ignored)."""
    found: dict[str, set[int]] = {label: set() for label in labels(axes)}
    for sample in samples:
        for name, by_axis in axes.items():
            array = sample.get(name)
            for axis, label in by_axis.items():
                if array is not None and len(array.shape) > axis:
                    found[label].add(int(array.shape[axis]))
    return {label: sorted(values) for label, values in found.items()}


def ranges(axes: Axes, bounds: Bounds, samples: Sequence[Mapping[str, Any]]) -> dict[str, Range]:
    """Each label's range: declared bounds, else ``DEFAULT_MIN`` and the largest size in the samples;
    ``opt`` the largest size seen, kept within the range."""
    result = {}
    for label, seen in sizes(axes, samples).items():
        declared = bounds.get(label) or {}
        largest = max(seen, default=declared.get("max", DEFAULT_MIN))
        low = declared.get("min", DEFAULT_MIN)
        high = declared.get("max", max(largest, low))
        result[label] = Range(label, low, min(max(largest, low), high), high)
    return result


def spec_ranges(model: Any, samples: Sequence[Mapping[str, Any]]) -> dict[str, Range]:
    """``ranges`` of a ``ModelSpec`` (its ``dynamic_axes`` and ``axis_bounds``)."""
    return ranges(model.dynamic_axes, getattr(model, "axis_bounds", {}) or {}, samples)


def sample_problem(axes: Axes, bounds: Bounds, samples: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the samples contradict the declaration, or None: inputs sharing a label that disagree in a
    sample, or a size outside the declared bounds."""
    for index, sample in enumerate(samples):
        seen: dict[str, tuple[str, int]] = {}
        for name, by_axis in axes.items():
            array = sample.get(name)
            if array is None:
                continue
            for axis, label in by_axis.items():
                if len(array.shape) <= axis:
                    return f"input {name} has no axis {axis} (its shape is {list(array.shape)}) in sample {index}"
                size = int(array.shape[axis])
                if label in seen and seen[label][1] != size:
                    other, other_size = seen[label]
                    return (f"axis {label!r} is {other_size} in {other} but {size} in {name} of sample {index}; "
                            f"axes that share a label must agree")
                seen.setdefault(label, (name, size))
                declared = bounds.get(label) or {}
                if not declared.get("min", DEFAULT_MIN) <= size <= declared.get("max", size):
                    return (f"axis {label!r} of input {name} is {size} in sample {index}, outside its declared "
                            f"bounds {declared.get('min', DEFAULT_MIN)}..{declared.get('max', size)}")
    return None


def resized(sample: Mapping[str, Any], axes: Axes, label: str, length: int) -> dict[str, Any]:
    """``sample`` with every axis labelled ``label`` cut to ``length`` or grown to it by repeating its
    own positions (valid token ids and mask values, unlike zeros)."""
    import numpy as np

    out = dict(sample)
    for name, by_axis in axes.items():
        if name not in out:
            continue
        for axis, each in by_axis.items():
            if each == label:
                array = np.asarray(out[name])
                out[name] = np.ascontiguousarray(np.take(array, np.arange(length) % array.shape[axis], axis=axis))
    return out


def unseen_length(span: Range, seen: Sequence[int]) -> int | None:
    """A size within the range that no sample had: between two seen sizes when there is room (the
    middle of the widest gap), else just past the largest or below the smallest; None when every
    size of the range was seen."""
    taken = sorted(set(seen))
    candidates = [(high - low, (low + high) // 2) for low, high in zip(taken, taken[1:]) if high - low > 1]
    if candidates:
        return max(candidates)[1]
    for size in (max(taken, default=span.opt) + 1, min(taken, default=span.opt) - 1):
        if span.min <= size <= span.max and size not in taken:
            return size
    return next((size for size in range(span.min, span.max + 1) if size not in taken), None)


def other_size(span: Range, current: int, seen: Sequence[int]) -> int | None:
    """A size other than ``current`` for this range: one of ``seen`` (the samples' sizes), else one
    within the range that no sample had; None when the range holds one size."""
    return next((size for size in seen if size != current and span.min <= size <= span.max), None) or \
        unseen_length(span, [current])


def boundary_lengths(span: Range, seen: Sequence[int], declared: Mapping[str, int]) -> list[int]:
    """The declared bounds (min and/or max) that no sample reaches: the check covers them too."""
    return [declared[key] for key in ("min", "max") if key in declared and declared[key] not in seen
            and span.min <= declared[key] <= span.max]


def varying_axes(samples: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Per tensor name, the non-batch axes whose size differs between ``samples`` (outputs of a model
    that follow a dynamic input axis)."""
    found: dict[str, list[int]] = {}
    if not samples:
        return found
    for name, first in samples[0].items():
        shapes = [tuple(sample[name].shape) for sample in samples if name in sample]
        if len({len(shape) for shape in shapes}) != 1:
            continue
        found[name] = [axis for axis in range(1, len(shapes[0])) if len({s[axis] for s in shapes}) > 1]
    return {name: axes for name, axes in found.items() if axes}
