"""Parameters of the torch-compile and aoti rules, checked without importing torch.

Both compile for a set of batch-size buckets by default (``dynamic = false``; ``batching.py``), or
for a dynamic batch (``dynamic = true``, torch-compile also ``"auto"``). ``mode``, ``channels_last``
and ``dynamic`` are searchable (``Rule.variants``): ``mode = ["default", "reduce-overhead"]`` builds
one target per value, named with the labels in ``COMPILE_VARIANTS``.

``CompileConfigError`` is the one exception for a bad parameter value: a ``ValueError`` whose
message names the target, the parameter, the bad value and the accepted ones. The engine shows it
as the target's failure reason; ``validate`` gives the same text to config validation, so a bad
``mode`` in navbuild.toml is reported before anything builds.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from navbuild_rules.torch import memory_format
from navbuild_rules.torch_compile import batching
from navbuild_rules.torch_compile.loader import CACHE_FILE, RECIPE_FILE, RECIPE_FORMAT  # noqa: F401  (the file names are loader's)

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")  # modes that capture CUDA graphs
PRECISIONS = ("fp32", "fp16", "bf16", "tf32")  # tf32: fp32 compiled and run with TF32 math
DYNAMIC = {"auto": None, "true": True, "false": False}  # recipe text -> torch.compile(dynamic=...)
PRECISION_METHOD = "cast"  # weights and float inputs cast to the precision's dtype; outputs back to fp32

# the model's max_batch_size and the profile's batch sizes are engine values (navbuild.rule.ENGINE_VALUES):
# they resolve "auto" buckets (``resolve_params``), and the build reads ``ctx.max_batch_size``
BATCHING_DEFAULTS: dict[str, Any] = {"dynamic": False, "buckets": batching.AUTO, memory_format.OPTION: False}
COMPILE_DEFAULTS: dict[str, Any] = {"mode": "default", "backend": "inductor", **BATCHING_DEFAULTS}
AOTI_DEFAULTS: dict[str, Any] = dict(BATCHING_DEFAULTS)

DYNAMIC_VARIANTS = {"dynamic": {False: "", True: "dyn"}}
COMPILE_VARIANTS = {**memory_format.VARIANTS,  # labels in this order: torch-compile-fp16+cl+autotune
                    "mode": {"default": "", "reduce-overhead": "cudagraphs", "max-autotune": "autotune",
                             "max-autotune-no-cudagraphs": "autotune-nocg"},
                    **DYNAMIC_VARIANTS}
AOTI_VARIANTS = {**memory_format.VARIANTS, **DYNAMIC_VARIANTS}


class CompileConfigError(ValueError):
    """A torch-compile or aoti parameter has a value the rule does not accept."""


def check_mode(mode: Any, where: str = "torch-compile") -> str:
    if mode not in MODES:
        raise CompileConfigError(f"{where}: mode {mode!r} is not accepted; use one of {', '.join(MODES)}")
    return mode


def check_dynamic(value: Any, where: str = "torch-compile") -> str:
    """``dynamic`` as recipe text: "auto" (torch decides after a recompile), "true" or "false"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in DYNAMIC:
        return value.lower()
    raise CompileConfigError(f"{where}: dynamic {value!r} is not accepted; use true, false or \"auto\"")


def check_backend(backend: Any, where: str = "torch-compile") -> str:
    if not isinstance(backend, str) or not backend:
        raise CompileConfigError(f"{where}: backend must be a backend name such as \"inductor\", "
                                 f"not {backend!r}")
    return backend


def check_precision(precision: Any, where: str) -> str:
    if precision not in PRECISIONS:
        raise CompileConfigError(f"{where}: precision {precision!r} is not accepted; use one of "
                                 f"{', '.join(PRECISIONS)}")
    return precision


def compile_options(params: Mapping[str, Any], where: str = "torch-compile") -> dict[str, Any]:
    """The checked torch-compile parameters that shape the compile, defaults filled in."""
    merged = {**COMPILE_DEFAULTS, **dict(params)}
    return {"mode": check_mode(merged["mode"], where), "backend": check_backend(merged["backend"], where),
            "dynamic": check_dynamic(merged["dynamic"], where),
            memory_format.OPTION: check_channels_last(merged[memory_format.OPTION], where)}


def check_channels_last(value: Any, where: str) -> bool:
    try:
        return memory_format.check(value, where)
    except ValueError as exc:
        raise CompileConfigError(str(exc)) from None


def batch_plan(params: Mapping[str, Any], max_batch_size: Any, where: str,
               profile_batch_sizes: Sequence[int] = ()) -> dict[str, Any]:
    """``{"mode": "buckets", "buckets": [...]}`` or ``{"mode": "dynamic", "max_batch_size": n}``."""
    merged = {**BATCHING_DEFAULTS, **dict(params)}
    max_batch = check_max_batch_size(max_batch_size, where)
    if check_dynamic(merged["dynamic"], where) != "false":
        return {"mode": "dynamic", "max_batch_size": max_batch}
    try:
        buckets = batching.resolve(merged["buckets"], max_batch, profile_batch_sizes)
    except ValueError as exc:
        raise CompileConfigError(f"{where}: {exc}") from None
    return {"mode": "buckets", "buckets": buckets}


def resolve_params(params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``Rule.resolve``: "auto" buckets made explicit from the engine values (the model's
    max_batch_size, the profile's batch sizes), so that they reach the key only through the buckets;
    no buckets for a dynamic batch."""
    resolved = dict(params)
    try:
        plan = batch_plan(params, values["max_batch_size"], "", values.get("profile_batch_sizes", ()))
    except CompileConfigError:
        return resolved  # the build reports it, naming the target
    resolved["buckets"] = plan.get("buckets")
    return resolved


def validate_compile(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    """Config-time check (``Rule.validate``): the problem as one sentence, or None."""
    try:
        compile_options(params)
        batching.check_spec(dict(params).get("buckets", batching.AUTO))
        check_precision(precision, "torch-compile")
        if values and "max_batch_size" in values:  # the model's, an engine value (Rule.uses)
            check_max_batch_size(values["max_batch_size"], "torch-compile")
    except (CompileConfigError, ValueError) as exc:
        return str(exc)
    return None


def check_max_batch_size(value: Any, where: str = "aoti") -> int:
    if value == 0:
        raise CompileConfigError(f"{where}: compiles per batch bucket, and the model has no batch dimension "
                                 f"(max_batch_size = 0); give it one, or use torch-export or onnx")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CompileConfigError(f"{where}: max_batch_size must be an integer >= 1, not {value!r}")
    return value


def check_aoti_dynamic(value: Any, where: str = "aoti") -> bool:
    if not isinstance(value, bool):
        raise CompileConfigError(f"{where}: dynamic must be true or false, not {value!r}")
    return value


def validate_aoti(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    try:
        merged = {**AOTI_DEFAULTS, **dict(params)}
        if values and "max_batch_size" in values:  # the model's, an engine value (Rule.uses)
            check_max_batch_size(values["max_batch_size"])
        check_aoti_dynamic(merged["dynamic"])
        check_channels_last(merged[memory_format.OPTION], "aoti")
        batching.check_spec(merged["buckets"])
        check_precision(precision, "aoti")
    except (CompileConfigError, ValueError) as exc:
        return str(exc)
    return None


def axes_plan(model: Any, samples: list[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """The dynamic axes the compiled code keeps dynamic (``navbuild.dynamic_axes``), per input:
    ``{input: {axis: {"label", "min", "max"}}}``. torch.compile assumes a dynamic size is at least 2
    (a size of 1 is specialized: its own graph), so ``min`` is 2 at least; an axis of one size stays
    static. Recorded in the recipe: the runner marks the same axes."""
    from navbuild import dynamic_axes

    spans = dynamic_axes.spec_ranges(model, samples)
    plan: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_axis in model.dynamic_axes.items():
        for axis, label in by_axis.items():
            span = spans[label]
            if max(span.min, 2) < span.max:
                plan.setdefault(name, {})[str(axis)] = {"label": label, "min": max(span.min, 2), "max": span.max}
    return plan


def distinct_shapes(samples: list[Mapping[str, Any]], axes: Mapping[str, Mapping[str, Any]],
                    batch_dim: int = 0) -> list[Mapping[str, Any]]:
    """One sample per shape the compiled code tells apart: the batch aside, sizes along a dynamic axis
    count as one (a size of 1 apart, which gets a graph of its own)."""
    distinct: dict[tuple, Mapping[str, Any]] = {}
    for sample in samples:
        shape = tuple((name, tuple(("dyn" if str(axis) in axes.get(name, {}) and size > 1 else size)
                                   for axis, size in enumerate(array.shape) if axis != batch_dim))
                      for name, array in sample.items())
        distinct.setdefault(shape, sample)
    return list(distinct.values())


def input_specs(samples: list[Mapping[str, Any]], batch_dim: int = 0,
                buckets: list[int] | None = None) -> list[list[dict[str, Any]]]:
    """Name, shape and dtype of every input, per warm-up call: each sample as it is, or with buckets
    each distinct sample shape at each bucket's batch size."""
    specs = [[{"name": name, "shape": [int(d) for d in array.shape], "dtype": str(array.dtype)}
              for name, array in sample.items()] for sample in samples]
    if buckets is None:
        return specs
    distinct = list({json.dumps(spec, sort_keys=True): spec for spec in specs}.values())
    widened = []
    for bucket in buckets:
        for spec in distinct:
            widened.append([{**item, "shape": [bucket if axis == batch_dim else d
                                               for axis, d in enumerate(item["shape"])]} for item in spec])
    return list({json.dumps(spec, sort_keys=True): spec for spec in widened}.values())
