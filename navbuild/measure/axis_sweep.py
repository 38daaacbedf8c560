"""A profile across the sizes of a dynamic axis (``[profile] axis_sizes = { seq = [16, 128] }``).

The batch loop measures the first sample as it is; a text model's cost also grows with its sequence
length. For each listed size of a label the model declares (``navbuild.dynamic_axes``), the first
sample is resized along every axis with that label (cut, or grown by repeating its positions) and
measured with the same batch loop. The sizes share the target's time budget with the sample's own
shape: each gets an equal part. Sizes outside the axis's range (its declared bounds, else 1 to the
largest size in the samples) are not measured, with a note; a label the model does not declare is
left out. Selection and Triton's preferred batch sizes keep reading the sample's own points.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from navbuild import dynamic_axes


def planned(config: Any, model: Any, samples: Sequence[Mapping[str, Any]]) -> tuple[list[tuple[str, int]], list[str]]:
    """The ``(label, size)`` pairs to measure for ``model`` and a note for each size left out."""
    sizes = getattr(config, "axis_sizes", None) or {}
    spans = dynamic_axes.spec_ranges(model, samples)
    chosen, notes = [], []
    for label, wanted in sizes.items():
        if label not in spans:
            continue
        span = spans[label]
        for size in wanted:
            if span.min <= size <= span.max:
                chosen.append((label, size))
            else:
                notes.append(f"{label} = {size} not measured: outside its range {span.min}..{span.max} "
                             f"(declare max in dynamic_axes to serve it)")
    return chosen, notes


def shared_budget(config: Any, device: str, parts: int) -> Any:
    """``config`` with its budget divided among ``parts`` loops (the sample's shape and each size)."""
    budget = config.budget(device)
    if parts <= 1 or budget is None:
        return dataclasses.replace(config, axis_sizes=None)
    return dataclasses.replace(config, axis_sizes=None, budget_s=budget / parts)


def sweep(profile_one: Callable[[Mapping[str, Any], Any], Any], model: Any, samples: Sequence[Mapping[str, Any]],
          pairs: list[tuple[str, int]], config: Any, log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Each ``(label, size)`` measured by ``profile_one(sample, config)`` (a ProfileResult) on the first
    sample resized to it: ``[{"axis": label, "size": n, **result}]``."""
    results = []
    for label, size in pairs:
        sample = dynamic_axes.resized(samples[0], model.dynamic_axes, label, size)
        result = profile_one(sample, config)
        best = result.best_throughput()
        if best is not None:
            log(f"profile: {label} = {size}: best {best.throughput:.1f} samples/s at batch {best.batch_size}, "
                f"p50 {best.p50_ms:.3f} ms")
        results.append({"axis": label, "size": size, **result.to_dict()})
    return results
