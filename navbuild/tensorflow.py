"""``navbuild.tensorflow.optimize(model, dataloader, config=None, **fields)``: a tensorflow model given as
``"file.py:function"`` (relative to the workspace; the function returns what navbuild.toml's ``entry``
of a tensorflow model returns), built, checked and profiled by navbuild's tensorflow rule family. Options as
for ``navbuild.torch.optimize``. See docs/python-api.md."""
from __future__ import annotations

from typing import Any

__all__ = ["optimize"]


def optimize(model: Any, dataloader: Any, config: Any = None, *, name: str | None = None, jobs: int = 1,
             quiet: bool = False, **fields: Any) -> Any:
    from navbuild.api.single import optimize_entry

    return optimize_entry("tensorflow", model, dataloader, config, name=name, jobs=jobs, quiet=quiet, **fields)
