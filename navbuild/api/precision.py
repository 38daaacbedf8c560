"""``navbuild.Module(..., precision=)`` as a hint, as Model Navigator takes it: each format of the
request that can build that precision builds it, the others build the precisions they would have
built anyway, and the module's table says which did what. Only a request in which no format can
build it is refused.

int8 is a precision some formats declare: TensorRT (calibrated on the recorded samples unless the
format's options name a ``calibration``; a model that carries its own quantize/dequantize nodes
keeps its scales) and the eager ``torch`` format, which runs a module quantized beforehand as given.
"""
from __future__ import annotations

from typing import Any, Mapping

from navbuild.api.config import LABEL, OptimizeConfig, _as_tuple, _name
from navbuild.engine.config import ConfigError

PRECISIONS_KEY = "precisions"  # a format's own precisions in its options table (docs/config.md)
CALIBRATION_KEY = "calibration"
CALIBRATE_ON_SAMPLES = "samples"


def hinted(config: OptimizeConfig, precision: str, known: Mapping[str, Any], framework: str = "torch"
           ) -> tuple[OptimizeConfig, str]:
    """``config`` with ``precision`` asked of every format that builds it (``known``: format -> rule),
    and one sentence for the table: which formats build it, and why the others do not."""
    custom = {_name(fmt): dict(options) for fmt, options in (config.custom_configs or {}).items()}
    wanted = [_name(p) for p in _as_tuple(config.target_precisions)]
    building, others = [], {}
    for fmt in config.formats(known, framework):
        rule = known.get(fmt)
        if rule is None:
            continue  # the engine's validator names an unknown format
        options = custom.get(fmt, {})
        if precision == "int8" and CALIBRATION_KEY in (rule.params or {}) and not options.get(CALIBRATION_KEY):
            options = {**options, CALIBRATION_KEY: CALIBRATE_ON_SAMPLES}
        problem = _cannot_build(rule, options, precision)
        if problem is None:
            custom[fmt] = {**options, PRECISIONS_KEY: [precision]}
            building.append(fmt)
        else:
            fallback = [p for p in wanted if p in rule.precisions] or [rule.precisions[0]]
            custom[fmt] = {**custom.get(fmt, {}), PRECISIONS_KEY: fallback}
            others[fmt] = f"{'/'.join(fallback)}: {problem}"
    if not building:
        reasons = "; ".join(f"{fmt} ({why.split(': ', 1)[1]})" for fmt, why in others.items())
        raise ConfigError(LABEL, "precision", f"no format of the request builds {precision}: {reasons or 'none asked'}",
                          f"add a format that builds {precision} to target_formats, or drop precision=")
    note = f"precision {precision}: {', '.join(building)}"
    if others:
        note += "; " + "; ".join(f"{fmt} builds {why}" for fmt, why in others.items())
    return config.clone(custom_configs=custom), note


def _cannot_build(rule: Any, options: Mapping[str, Any], precision: str) -> str | None:
    """Why ``rule`` cannot build ``precision`` with ``options``, or None."""
    from navbuild.engine.variants import VariantError, expand

    if precision not in rule.precisions:
        return f"it builds {', '.join(rule.precisions)}, not {precision}"
    validate = getattr(rule, "validate", None)
    if validate is None:
        return None
    try:
        variants = expand(rule, {k: v for k, v in options.items() if k != PRECISIONS_KEY})
    except VariantError as exc:
        return exc.problem
    for variant in variants:
        problem = validate(variant.options, precision)
        if problem:
            return problem
    return None
