"""Batch-size buckets of the compiled targets, as TensorRT's optimization profiles and Triton's
preferred batch sizes work: code is compiled once for each bucket's exact batch size, and a request
runs in the smallest bucket that holds it, its batch padded up to the bucket and its outputs sliced
back. A batch above the largest bucket is refused.

Static shapes are what makes the compiled code fast: torch.compile's dynamic-batch kernels ran
about 35 % slower than shape-specialized ones for ResNet-50 on an H200. The default buckets are the
powers of two up to ``max_batch_size``, ``max_batch_size`` itself, and the profile's batch sizes.
Padding repeats the batch's own rows (valid inputs of the model, unlike zeros for token ids); the
rows of a batch must be independent (inference with no batch statistics), which the correctness
check verifies bucket by bucket. numpy and torch are not imported here.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from navbuild.runner import RunnerError

AUTO = "auto"


class BucketError(RunnerError):
    """A batch larger than every compiled bucket."""


def check_spec(value: Any) -> Any:
    """``"auto"`` or a non-empty list of positive integers (config-time check)."""
    if value == AUTO:
        return value
    if (not isinstance(value, list) or not value
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise ValueError(f'buckets must be "auto" or a list of batch sizes >= 1, not {value!r}')
    return value


def default_buckets(max_batch_size: int, profile_batch_sizes: Iterable[int] = ()) -> list[int]:
    powers = {1 << k for k in range(max_batch_size.bit_length()) if (1 << k) <= max_batch_size}
    return sorted(powers | {max_batch_size} | {int(b) for b in profile_batch_sizes if 1 <= int(b) <= max_batch_size})


def resolve(spec: Any, max_batch_size: int, profile_batch_sizes: Iterable[int] = ()) -> list[int]:
    """The sorted buckets: ``"auto"`` gives the defaults; a list may not pass ``max_batch_size``."""
    if check_spec(spec) == AUTO:
        return default_buckets(max_batch_size, profile_batch_sizes)
    buckets = sorted({int(v) for v in spec})
    if buckets[-1] > max_batch_size:
        raise ValueError(f"bucket {buckets[-1]} is above the model's max_batch_size {max_batch_size}; "
                         f"raise max_batch_size or drop the bucket")
    return buckets


def pick(batch: int, buckets: Sequence[int], where: str) -> int:
    """The smallest bucket that holds ``batch``; BucketError naming the buckets when none does."""
    for bucket in buckets:
        if bucket >= batch:
            return bucket
    raise BucketError(f"{where}: batch {batch} is above the largest compiled bucket {buckets[-1]} "
                      f"(buckets {', '.join(map(str, buckets))}); rebuild with a larger bucket "
                      f"(buckets = [...] or max_batch_size) or send smaller batches")


def pad(feed: Mapping[str, Any], bucket: int, batch_dim: int = 0) -> dict[str, Any]:
    """Each array (numpy, or a torch tensor: a bf16 feed is one) grown to ``bucket`` rows along the
    batch dimension by repeating its own rows."""
    import numpy as np

    padded = {}
    for name, array in feed.items():
        rows = array.shape[batch_dim]
        if rows == bucket:
            padded[name] = array
        elif hasattr(array, "index_select"):  # a torch tensor (torch is loaded), indexed on its own device
            import torch

            padded[name] = array.index_select(batch_dim, torch.arange(bucket, device=array.device) % rows)
        else:
            padded[name] = np.take(array, np.arange(bucket) % rows, axis=batch_dim)
    return padded


def unpad(outputs: Sequence[Any], batch: int, bucket: int) -> list[Any]:
    """The first ``batch`` rows of every output whose first dimension is the bucket's."""
    if batch == bucket:
        return list(outputs)
    return [out[:batch] if getattr(out, "ndim", 0) and out.shape[0] == bucket else out for out in outputs]


def batch_of(feed: Mapping[str, Any], batch_dim: int = 0) -> int:
    return int(next(iter(feed.values())).shape[batch_dim])
