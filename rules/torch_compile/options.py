"""Parameters of the torch-compile and aoti rules, checked without importing torch.

``CompileConfigError`` is the one exception for a bad parameter value: a ``ValueError`` whose
message names the target, the parameter, the bad value and the accepted ones. The engine shows it
as the target's failure reason; ``validate`` gives the same text to config validation, so a bad
``mode`` in navbuild.toml is reported before anything builds.
"""
from __future__ import annotations

from typing import Any, Mapping

from rules.torch_compile.loader import CACHE_FILE, RECIPE_FILE, RECIPE_FORMAT  # noqa: F401  (the file names are loader's)

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("fp32", "fp16", "bf16")
DYNAMIC = {"auto": None, "true": True, "false": False}  # recipe text -> torch.compile(dynamic=...)
PRECISION_METHOD = "cast"  # weights and float inputs cast to the precision's dtype; outputs back to fp32

COMPILE_DEFAULTS: dict[str, Any] = {"mode": "default", "backend": "inductor", "dynamic": "auto"}
AOTI_DEFAULTS: dict[str, Any] = {"max_batch_size": 1}


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
    """The checked torch-compile parameters, defaults filled in."""
    merged = {**COMPILE_DEFAULTS, **dict(params)}
    return {"mode": check_mode(merged["mode"], where), "backend": check_backend(merged["backend"], where),
            "dynamic": check_dynamic(merged["dynamic"], where)}


def validate_compile(params: Mapping[str, Any], precision: str) -> str | None:
    """Config-time check (``Rule.validate``): the problem as one sentence, or None."""
    try:
        compile_options(params)
        check_precision(precision, "torch-compile")
    except CompileConfigError as exc:
        return str(exc)
    return None


def check_max_batch_size(value: Any, where: str = "aoti") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CompileConfigError(f"{where}: max_batch_size must be an integer >= 1, not {value!r}")
    return value


def validate_aoti(params: Mapping[str, Any], precision: str) -> str | None:
    try:
        check_max_batch_size({**AOTI_DEFAULTS, **dict(params)}["max_batch_size"])
        check_precision(precision, "aoti")
    except CompileConfigError as exc:
        return str(exc)
    return None


def input_specs(samples: list[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """Name, shape and dtype of every input of every sample, for the recipe's warm-up."""
    return [[{"name": name, "shape": [int(d) for d in array.shape], "dtype": str(array.dtype)}
             for name, array in sample.items()] for sample in samples]
