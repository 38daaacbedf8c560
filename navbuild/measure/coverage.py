"""What a check and a profile must run so that every compiled bucket of an artifact is exercised.

A runner that serves batch sizes through code specialized to each (``Runner.served_batch_sizes``:
torch.compile or AOTInductor buckets, where a smaller batch is padded up to the next bucket) runs
different code per bucket. The samples alone may miss some buckets (samples of batch 1 and 8 never
reach a bucket of 64), so the correctness check adds, for each bucket no sample reaches, the first
sample tiled along the batch dimension to exactly that size, with its reference outputs tiled the
same way (the rows of a batch are independent, which padding relies on too); and the profile
measures every bucket besides its own batch sizes (none above the largest bucket).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import numpy as np

Sample = Mapping[str, np.ndarray]


def bucket_of(batch: int, buckets: Sequence[int]) -> int | None:
    """The smallest bucket that holds ``batch``, or None when the batch is above every bucket."""
    return next((bucket for bucket in sorted(buckets) if bucket >= batch), None)


def check_cases(samples: list[Sample], expected: list[Sample], buckets: Sequence[int] | None,
                batch_dim: int = 0) -> tuple[list[Sample], list[Sample]]:
    """The samples plus one tiled case per bucket that no sample reaches, and their references."""
    if not buckets or not samples:
        return list(samples), list(expected)
    cases, references = list(samples), list(expected)
    first, reference = samples[0], expected[0]
    rows_in_first = batch_size(first, batch_dim)
    if any(np.ndim(out) == 0 or np.shape(out)[batch_dim] != rows_in_first for out in reference.values()):
        return cases, references  # an output without the batch dimension cannot be tiled
    reached = {bucket_of(batch_size(sample, batch_dim), buckets) for sample in samples}
    for bucket in sorted(set(buckets) - reached):
        rows = np.arange(bucket) % rows_in_first
        cases.append({name: np.take(array, rows, axis=batch_dim) for name, array in first.items()})
        references.append({name: np.take(array, rows, axis=batch_dim) for name, array in reference.items()})
    return cases, references


def profile_config(config: Any, buckets: Sequence[int] | None, default_max: int | None = None) -> Any:
    """``config`` (a ProfileConfig) measuring each bucket too, besides the batch sizes it plans up to
    the largest bucket (a batch above it is refused by the runner)."""
    if not buckets:
        return config
    planned, _ = config.plan(default_max)
    sizes = {size for size in planned if size <= max(buckets)} | set(buckets)
    return dataclasses.replace(config, batch_sizes=tuple(sorted(sizes)))


def batch_size(sample: Sample, batch_dim: int = 0) -> int:
    return int(np.shape(next(iter(sample.values())))[batch_dim])
