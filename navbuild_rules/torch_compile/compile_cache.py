"""Compile once per (model, options, device): torch's compiler caches kept in the rule's cache folder.

The build, the correctness check and the profile of a torch-compile target each need the compiled
model, in one process or in three. Inductor keeps what it compiled on disk (FX graphs, AOTAutograd
graphs, autotuning results, Triton kernels) under ``TORCHINDUCTOR_CACHE_DIR``; with that folder set
to the rule's persistent ``cache_dir`` (one per device fingerprint, in the store; the engine hands
the same folder to the build as ``ctx.cache_dir`` and to the runner as ``runner.cache_dir``), only
the first of the three compiles and the others load, and so does a later build on the same device.

``CompileCounter`` reads torch's own counters: FX graph cache misses are graphs that inductor
compiled, hits are graphs it loaded. torch is imported on first use.

A caveat seen with torch 2.13 and 2.14: inductor's cache key pickles ``torch.contiguous_format``,
whose pickled module is the first module in ``sys.modules`` with a ``torch`` attribute that reaches
it (``torch._utils``, or a module that did ``torch = lazy_import("torch")`` before torch was first
imported). So the key depends on import order: a process that imports torch before navbuild's rule
modules computes other keys than navbuild's own processes (which import the rules first, torch
lazily) and compiles once more instead of loading. ``benchmarks/vs_hand.py`` imports the rules first.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from navbuild.lazy import lazy_import
from navbuild_rules.torch_compile import options

torch = lazy_import("torch")

ENV = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


@contextlib.contextmanager
def using(directory: Path | None) -> Iterator[None]:
    """Inductor's and Triton's caches in ``directory`` while the block runs (None: torch's defaults)."""
    if directory is None:
        yield
        return
    directory = Path(directory).resolve()
    wanted = {"TORCHINDUCTOR_CACHE_DIR": str(directory / "inductor"), "TRITON_CACHE_DIR": str(directory / "triton")}
    saved = {name: os.environ.get(name) for name in ENV}
    os.environ.update(wanted)
    _clear_path_caches()  # functions that memoized the previous folder
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _clear_path_caches()


def _clear_path_caches() -> None:
    try:
        from torch._inductor.utils import clear_caches
    except ImportError:  # an older torch without the registry: nothing memoized to clear
        return
    clear_caches()


def folder(cache_dir: Path | None, axes: Mapping[str, Any] | None) -> Path | None:
    """The cache folder for a compile with these dynamic axes: ``cache_dir`` itself without any, else
    a subfolder per set of bounds. Inductor's cached graphs keep the guards of the bounds they were
    compiled for, and a graph loaded for other bounds fails dynamo's constraint check."""
    if cache_dir is None or not axes:
        return cache_dir
    from navbuild.hashing import digest_value

    return Path(cache_dir) / f"axes-{digest_value(axes)[:16]}"


class CompileCounter:
    """FX graphs compiled (cache misses) and loaded (hits) since it was made."""

    KEYS = ("fxgraph_cache_miss", "fxgraph_cache_hit", "fxgraph_cache_bypass")

    def __init__(self) -> None:
        self.start = self._read()

    @staticmethod
    def _read() -> dict[str, int]:
        from torch._dynamo.utils import counters

        return {key: int(counters["inductor"].get(key, 0)) for key in CompileCounter.KEYS}

    def delta(self) -> dict[str, int]:
        now = self._read()
        return {"graphs_compiled": now["fxgraph_cache_miss"] - self.start["fxgraph_cache_miss"],
                "graphs_loaded": now["fxgraph_cache_hit"] - self.start["fxgraph_cache_hit"],
                "graphs_uncached": now["fxgraph_cache_bypass"] - self.start["fxgraph_cache_bypass"]}


def compile_model(model: Any, opts: Mapping[str, Any], specializations: int) -> Any:
    """``torch.compile`` with the recipe's options, with room for one dynamo entry per warm-up shape
    (the build and the runner compile alike, so the runner finds what the build compiled)."""
    allow_recompiles(specializations)
    return torch.compile(model, mode=opts["mode"], backend=opts["backend"], dynamic=options.DYNAMIC[opts["dynamic"]])


def allow_recompiles(count: int) -> None:
    """Room for ``count`` more specializations of one model in dynamo's per-function cache.

    Each bucket is one cache entry of the model's ``forward``, and so is every other compile of the
    same model class in this process (another precision, mode or memory format); past the limit
    (8 by default) dynamo silently runs the model eagerly. The limit only ever grows here.
    """
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # the newer name first; older torch has the second
        current = getattr(config, name, None)
        if isinstance(current, int):
            setattr(config, name, current + count)
            return


@contextlib.contextmanager
def loud_recompile_limit() -> Iterator[None]:
    """While warming up, hitting dynamo's recompile limit is an error instead of a silent eager run."""
    config = torch._dynamo.config
    if not hasattr(config, "fail_on_recompile_limit_hit"):
        yield
        return
    with config.patch(fail_on_recompile_limit_hit=True):
        yield
