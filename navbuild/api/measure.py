"""``navbuild.profile(func, dataloader)``: latency and throughput of any callable (Model Navigator's
``nav.profile``), on the profiler the engine uses (``navbuild.measure.profiling``). After an in-place
optimize, the pipeline is profiled once per way of running its modules (``pipeline_profile.py``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterable, Mapping


def profile(func: Any, dataloader: Iterable[Any], config: Any = None, *, report: str | Path | None = None,
            strategy: Any = None, **options: Any) -> Any:
    """Profile ``func`` on the first sample of ``dataloader``, tiled to each batch size; returns a
    ``ProfileResult``. Items may be samples (a tensor, a tuple of arguments, a dict of keyword
    arguments) or in-place style ``(batch_size, sample)`` pairs. ``config`` is a ``ProfileConfig`` or
    a mapping of its fields; ``options`` go to ``navbuild.measure.profiling.profile``.

    When ``navbuild.Module``s were optimized (or found by ``load_optimized``) in this process, ``func``
    is taken for their pipeline: it is profiled once per combination (original code, each module's
    best, each built format) and a ``PipelineProfile`` is returned, its figures also written to
    ``report`` (default ``navbuild-out/pipeline-profile.json`` in the workspace; ``.yaml`` for YAML)."""
    from navbuild.measure.profiling import ProfileConfig, profile as run_profile

    if isinstance(config, Mapping):
        config = ProfileConfig.from_dict(config)
    modules = _optimized_modules()
    if modules:
        from navbuild.api.pipeline_profile import profile_pipeline

        workspace = modules[0].package.root
        return profile_pipeline(func, dataloader, modules, config, strategy=strategy, report=report,
                                workspace=workspace, **options)
    return run_profile(func, (_sample(item) for item in dataloader), config, **options)


def _optimized_modules() -> list[Any]:
    """The wrapped modules that have a package (none unless in-place optimization was used)."""
    inplace = sys.modules.get("navbuild.api.inplace")  # never imported here for a plain callable
    if inplace is None:
        return []
    return [module for module in inplace.registered().values() if module.package is not None]


def _sample(item: Any) -> Any:
    """An in-place dataloader's ``(batch_size, sample)`` pair gives its sample."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], int) and not isinstance(item[0], bool):
        return item[1]
    return item
