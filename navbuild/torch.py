"""``navbuild.torch.optimize(model, dataloader, config=None, **fields)``: one torch model, every target
built, checked and profiled on navbuild's store; returns a ``Package``. See docs/python-api.md."""
from __future__ import annotations

from typing import Any

__all__ = ["optimize"]


def optimize(model: Any, dataloader: Any, config: Any = None, *, name: str | None = None, jobs: int = 1,
             quiet: bool = False, **fields: Any) -> Any:
    """Optimize ``model`` (an ``nn.Module``, or ``"file.py:function"`` returning one, relative to the
    workspace) on the samples of ``dataloader`` (an iterable of tensors, tuples or dicts, batch first;
    or, for an entry, ``"file.py:function"`` or a ``.tensors``/``.npz`` file). ``name`` names the model
    (default: its class); ``jobs`` builds that many targets at once in worker processes. Options are
    an ``OptimizeConfig``, or its fields as keywords (``target_formats=..., target_device="cpu"``), as
    Model Navigator takes them; a field given both ways with two values is an error."""
    from navbuild.api.single import optimize_torch

    return optimize_torch(model, dataloader, config, name=name, jobs=jobs, quiet=quiet, **fields)
