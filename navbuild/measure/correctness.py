"""Correctness: an artifact's outputs against the source model's, sample by sample.

An output passes when every element satisfies |actual - expected| <= atol + rtol * |expected|
(numpy.allclose's rule), plus ``range_tol`` times the output's range (its largest |expected| over
every sample) where a precision's rounding grows with the magnitudes a layer accumulates (tf32). NaN or Inf in an output fails with its own message, naming the first
index. When the reference step ran the source model twice and the two runs disagree beyond the
tolerance (``repeat``), the check fails on the source, not on the format: the message says so and
names the atol it would need.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from navbuild.measure.settings import Tolerance
from navbuild.tensors import nonfinite


def compare(actual_samples: list[Mapping[str, np.ndarray]], expected_samples: list[Mapping[str, np.ndarray]],
            tolerance: Callable[[str], Tolerance]) -> dict[str, Any]:
    """Compare outputs of every sample; returns figures per output and the failure messages."""
    outputs: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    ranges = output_ranges(expected_samples)
    for index, (actual, expected) in enumerate(zip(actual_samples, expected_samples)):
        missing = sorted(set(expected) - set(actual))
        extra = sorted(set(actual) - set(expected))
        if missing or extra:
            failures.append(f"sample {index}: outputs {sorted(actual)} do not match the reference's {sorted(expected)}")
            continue
        for name, reference in expected.items():
            tol = tolerance(name)
            figures = outputs.setdefault(name, {"max_abs": 0.0, "max_rel": 0.0, "atol": tol.atol,
                                                "rtol": tol.rtol, "passed": True})
            if tol.range_tol:
                figures["range_tol"] = tol.range_tol
            failure = _compare_one(name, index, np.asarray(actual[name]), np.asarray(reference), tol, figures,
                                   ranges.get(name, 0.0))
            if failure:
                figures["passed"] = False
                failures.append(failure)
    if len(actual_samples) != len(expected_samples):
        failures.append(f"{len(actual_samples)} results for {len(expected_samples)} samples")
    return {"passed": not failures, "outputs": outputs, "failures": failures, "samples": len(expected_samples)}


def output_ranges(samples: list[Mapping[str, np.ndarray]]) -> dict[str, float]:
    """Each float output's largest finite magnitude over every sample (what ``range_tol`` scales)."""
    ranges: dict[str, float] = {}
    for sample in samples:
        for name, value in sample.items():
            array = np.asarray(value)
            if array.dtype.kind in "fc" and array.size:
                finite = np.abs(array[np.isfinite(array)])
                ranges[name] = max(ranges.get(name, 0.0), float(finite.max()) if finite.size else 0.0)
    return ranges


def _compare_one(name: str, index: int, actual: np.ndarray, expected: np.ndarray, tol: Tolerance,
                 figures: dict[str, Any], output_range: float = 0.0) -> str | None:
    if actual.shape != expected.shape:
        return f"output {name}, sample {index}: shape {list(actual.shape)}, the reference's is {list(expected.shape)}"
    if expected.dtype.kind not in "fc":
        if not np.array_equal(actual, expected):
            mismatched = int(np.sum(actual != expected))
            return f"output {name}, sample {index}: {mismatched} of {expected.size} values differ (exact match required for {expected.dtype})"
        return None
    actual64 = actual.astype(np.float64)
    expected64 = expected.astype(np.float64)
    unstable = nonfinite(expected64)
    if unstable:
        return f"output {name}, sample {index}: the reference itself holds NaN or Inf ({unstable}); the source model is unstable"
    bad = nonfinite(actual64)
    if bad:
        return f"output {name}, sample {index}: {bad}"
    abs_error = np.abs(actual64 - expected64)
    rel_error = abs_error / np.maximum(np.abs(expected64), np.finfo(np.float64).tiny)
    max_abs = float(abs_error.max()) if abs_error.size else 0.0
    max_rel = float(rel_error.max()) if rel_error.size else 0.0
    figures["max_abs"] = max(figures["max_abs"], max_abs)
    figures["max_rel"] = max(figures["max_rel"], max_rel)
    floor = tol.atol + tol.range_tol * output_range
    allowed = floor + tol.rtol * np.abs(expected64)
    if np.any(abs_error > allowed):
        worst = int(np.argmax(abs_error - allowed))
        ranged = f" + range_tol {tol.range_tol:g} * {output_range:.3g} (its range)" if tol.range_tol else ""
        return (f"output {name}, sample {index}: max abs error {max_abs:.3g} exceeds atol {tol.atol:g}{ranged} + "
                f"rtol {tol.rtol:g} * |expected| (worst element {worst}: got {actual64.flat[worst]:.6g}, "
                f"expected {expected64.flat[worst]:.6g})")
    return None


def needed_atol(actual: np.ndarray, expected: np.ndarray, rtol: float) -> float:
    """The smallest atol with which ``actual`` passes against ``expected`` at ``rtol``."""
    difference = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return float(np.max(difference - rtol * np.abs(expected.astype(np.float64)), initial=0.0))


def disagreement(repeat: list[Mapping[str, np.ndarray]], expected: list[Mapping[str, np.ndarray]],
                 tolerance: Callable[[str], Tolerance]) -> str | None:
    """Why a second run of the source model does not pass against the first, or None if it does."""
    if compare(repeat, expected, tolerance)["passed"]:
        return None
    worst: dict[str, float] = {}
    for again, first in zip(repeat, expected):
        for name, reference in first.items():
            if name in again and np.shape(again[name]) == np.shape(reference) and reference.dtype.kind in "fc":
                need = needed_atol(np.asarray(again[name]), np.asarray(reference), tolerance(name).rtol)
                worst[name] = max(worst.get(name, 0.0), need)
    needs = ", ".join(f"atol >= {atol:.2g} for {name} (it has {tolerance(name).atol:g})"
                      for name, atol in worst.items() if atol > tolerance(name).atol)
    return (f"the source model is not deterministic: run twice on the same samples it disagrees with itself"
            f"{', ' + needs if needs else ''}; no format is to blame. Make the model deterministic (no "
            f"dropout or random draws in forward, weights loaded or seeded in the entry) or raise the tolerance")


def run_and_compare(runner: Any, samples: list[Mapping[str, np.ndarray]],
                    expected: list[Mapping[str, np.ndarray]], tolerance: Callable[[str], Tolerance],
                    repeat: list[Mapping[str, np.ndarray]] | None = None) -> dict[str, Any]:
    """Run ``samples`` through ``runner`` and compare with ``expected``; ``repeat`` is a second run
    of the source model, when it differed from the first: if it disagrees beyond the tolerance, the
    artifact is not run and the check fails on the source."""
    unstable = disagreement(repeat, expected, tolerance) if repeat is not None else None
    if unstable:
        return {"passed": False, "outputs": {}, "failures": [unstable], "samples": len(expected),
                "runner": runner.name, "source_deterministic": False}
    with runner:
        actual = [runner.infer(sample) for sample in samples]
    result = compare(actual, expected, tolerance)
    result["runner"] = runner.name
    provider = getattr(runner, "provider", None)
    if provider:
        result["provider"] = provider
    return result


def none_passed(targets: Mapping[str, Mapping[str, Any]]) -> str | None:
    """When no target of a model passed its check (its entries in the build status): the sentence that
    says so, with each failure's first reason; None when one passed or none was checked yet."""
    checked = {name: entry["correctness"] for name, entry in targets.items() if entry.get("correctness")}
    if not checked or any(result.get("passed") for result in checked.values()):
        return None
    reasons = "; ".join(f"{name}: {(result.get('failures') or ['failed'])[0]}" for name, result in sorted(checked.items()))
    return f"no target passed its correctness check ({reasons})"
