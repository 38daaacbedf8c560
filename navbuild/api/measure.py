"""``navbuild.profile(func, dataloader)``: latency and throughput of any callable (Model Navigator's
``nav.profile``), on the profiler the engine uses (``navbuild.measure.profiling``)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping


def profile(func: Any, dataloader: Iterable[Any], config: Any = None, **options: Any) -> Any:
    """Profile ``func`` on the first sample of ``dataloader``, tiled to each batch size; returns a
    ``ProfileResult``. Items may be samples (a tensor, a tuple of arguments, a dict of keyword
    arguments) or in-place style ``(batch_size, sample)`` pairs. ``config`` is a ``ProfileConfig`` or
    a mapping of its fields; ``options`` go to ``navbuild.measure.profiling.profile``."""
    from navbuild.measure.profiling import ProfileConfig, profile as run_profile

    if isinstance(config, Mapping):
        config = ProfileConfig.from_dict(config)
    return run_profile(func, (_sample(item) for item in dataloader), config, **options)


def _sample(item: Any) -> Any:
    """An in-place dataloader's ``(batch_size, sample)`` pair gives its sample."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int) and not isinstance(item[0], bool):
        return item[1]
    return item
