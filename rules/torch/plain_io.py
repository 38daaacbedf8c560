"""``PlainIO``: a model fed by position and returning a tuple of tensors, whatever it takes and returns.

Exporters and compiled runtimes handle plain tensors best: a Hugging Face ``ModelOutput`` is a
pytree node only in a process that imported transformers (an AOTInductor worker is not one), and
inputs that go by name would need each exporter's own keyword support. The wrapper's ``forward``
has one named parameter per input (generated, since their number varies), so ``dynamic_shapes``
and the exporters' input names stay one per input. Imported only when a model needs it (it
imports torch at module level).
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import torch

from rules.torch import model_io


class PlainIO(torch.nn.Module):
    """``model`` called with its inputs by name or by position; its result as a tuple of the tensors
    under ``keys`` (a dict-like result), or of all its tensors in order (``flat``), or as it is."""

    def __init__(self, model: Any, names: Sequence[str], by_name: bool, keys: Sequence[str] | None,
                 flat: bool) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.binding = model_io.BY_NAME if by_name else model_io.POSITIONAL
        self.keys = None if keys is None else list(keys)
        self.flat = flat

    def call(self, inputs: tuple[Any, ...]) -> Any:
        outputs = model_io.call(self.model, self.names, inputs, self.binding)
        if self.keys is not None:
            found = dict(model_io.tensor_leaves(outputs, ""))
            return tuple(found[key] for key in self.keys)
        return tuple(model_io.flatten(outputs)) if self.flat else outputs


@functools.cache
def _class_for(count: int) -> type:
    """A PlainIO subclass whose forward takes ``count`` named tensors: ``forward(self, input_0, ...)``."""
    params = ", ".join(f"input_{index}" for index in range(count))
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {params}):\n    return self.call(({params},))\n", namespace)  # noqa: S102
    name = f"PlainIO{count}"  # one TorchScript class name per signature
    return type(name, (PlainIO,), {"forward": namespace["forward"], "__module__": __name__, "__qualname__": name})


def plain_io(model: Any, names: Sequence[str], by_name: bool, *, keys: Sequence[str] | None,
             flat: bool) -> PlainIO:
    return _class_for(len(names))(model, names, by_name, keys, flat)
