"""``FlatCall``: a model called with the recorded structure around flat tensors (see ``calls.py``).

Its own module because it is an ``nn.Module``: it imports torch, and only code that already holds
a live model imports it.
"""
from __future__ import annotations

from typing import Any

import torch

from navbuild.api.calls import flatten_outputs, rebuild


class FlatCall(torch.nn.Module):
    """Calls ``module`` (or its method ``method``) as the recorded call did, with ``tensors`` in place
    of the recorded tensors; returns the tensors of its result as a flat tuple, the shape every
    exporter and runner of the engine takes."""

    def __init__(self, module: Any, tree: Any, method: str | None = None) -> None:
        super().__init__()
        self.module = module
        self.tree = tree
        self.method = method

    def forward(self, *tensors: Any) -> tuple[Any, ...]:
        args, kwargs = rebuild(self.tree, tensors)
        function = self.module if self.method is None else getattr(self.module, self.method)
        return tuple(flatten_outputs(function(*args, **kwargs)))
