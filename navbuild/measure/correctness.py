"""Correctness: an artifact's outputs against the source model's, sample by sample.

An output passes when every element satisfies |actual - expected| <= atol + rtol * |expected|
(numpy.allclose's rule). NaN or Inf in an output fails with its own message.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from navbuild.engine.config import Tolerance


def compare(actual_samples: list[Mapping[str, np.ndarray]], expected_samples: list[Mapping[str, np.ndarray]],
            tolerance: Callable[[str], Tolerance]) -> dict[str, Any]:
    """Compare outputs of every sample; returns figures per output and the failure messages."""
    outputs: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
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
            failure = _compare_one(name, index, np.asarray(actual[name]), np.asarray(reference), tol, figures)
            if failure:
                figures["passed"] = False
                failures.append(failure)
    if len(actual_samples) != len(expected_samples):
        failures.append(f"{len(actual_samples)} results for {len(expected_samples)} samples")
    return {"passed": not failures, "outputs": outputs, "failures": failures, "samples": len(expected_samples)}


def _compare_one(name: str, index: int, actual: np.ndarray, expected: np.ndarray, tol: Tolerance,
                 figures: dict[str, Any]) -> str | None:
    if actual.shape != expected.shape:
        return f"output {name}, sample {index}: shape {list(actual.shape)}, the reference's is {list(expected.shape)}"
    if expected.dtype.kind not in "fc":
        if not np.array_equal(actual, expected):
            mismatched = int(np.sum(actual != expected))
            return f"output {name}, sample {index}: {mismatched} of {expected.size} values differ (exact match required for {expected.dtype})"
        return None
    actual64 = actual.astype(np.float64)
    expected64 = expected.astype(np.float64)
    if not np.all(np.isfinite(expected64)):
        return f"output {name}, sample {index}: the reference itself holds NaN or Inf; the source model is unstable on this sample"
    bad = ~np.isfinite(actual64)
    if bad.any():
        kind = "NaN" if np.isnan(actual64).any() else "Inf"
        return f"output {name}, sample {index}: {int(bad.sum())} values are {kind}"
    abs_error = np.abs(actual64 - expected64)
    rel_error = abs_error / np.maximum(np.abs(expected64), np.finfo(np.float64).tiny)
    max_abs = float(abs_error.max()) if abs_error.size else 0.0
    max_rel = float(rel_error.max()) if rel_error.size else 0.0
    figures["max_abs"] = max(figures["max_abs"], max_abs)
    figures["max_rel"] = max(figures["max_rel"], max_rel)
    allowed = tol.atol + tol.rtol * np.abs(expected64)
    if np.any(abs_error > allowed):
        worst = int(np.argmax(abs_error - allowed))
        return (f"output {name}, sample {index}: max abs error {max_abs:.3g} exceeds atol {tol.atol:g} + "
                f"rtol {tol.rtol:g} * |expected| (worst element {worst}: got {actual64.flat[worst]:.6g}, "
                f"expected {expected64.flat[worst]:.6g})")
    return None


def run_and_compare(runner: Any, samples: list[Mapping[str, np.ndarray]],
                    expected: list[Mapping[str, np.ndarray]], tolerance: Callable[[str], Tolerance]) -> dict[str, Any]:
    with runner:
        actual = [runner.infer(sample) for sample in samples]
    result = compare(actual, expected, tolerance)
    result["runner"] = runner.name
    provider = getattr(runner, "provider", None)
    if provider:
        result["provider"] = provider
    return result
