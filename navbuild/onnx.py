"""``navbuild.onnx.optimize(model, dataloader, config=None, **fields)``: an ONNX file as the source model.

It needs a rule family that reads ONNX files as sources (framework ``onnx``); without one it
refuses with that reason. Options as for ``navbuild.torch.optimize``. See docs/python-api.md.
"""
from __future__ import annotations

from typing import Any

__all__ = ["optimize"]


def optimize(model: Any, dataloader: Any, config: Any = None, *, name: str | None = None, jobs: int = 1,
             quiet: bool = False, **fields: Any) -> Any:
    from navbuild.api.single import optimize_onnx

    return optimize_onnx(model, dataloader, config, name=name, jobs=jobs, quiet=quiet, **fields)
