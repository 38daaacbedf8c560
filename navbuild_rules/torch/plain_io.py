"""``PlainIO``: a model fed by position and returning a tuple of tensors, whatever it takes and returns.

Exporters and compiled runtimes handle plain tensors best: a Hugging Face ``ModelOutput`` is a
pytree node only in a process that imported transformers (an AOTInductor worker is not one), and
inputs that go by name would need each exporter's own keyword support. The wrapper's ``forward``
has one named parameter per input (generated, since their number varies), so ``dynamic_shapes``
and the exporters' input names stay one per input. The classes are made on first use, so importing
this module imports no framework.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any, Sequence

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec

from navbuild_rules.torch import model_io
from navbuild_rules.torch.model_io import BY_NAME, POSITIONAL, bind_outputs, call, input_binding, is_plain, keyed_items

torch = lazy_import("torch")


@functools.cache
def _base() -> type:
    """``PlainIO``, a ``torch.nn.Module``: made on first use, so importing this module stays free of torch."""

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

    return PlainIO


@functools.cache
def _class_for(count: int) -> type:
    """A PlainIO subclass whose forward takes ``count`` named tensors: ``forward(self, input_0, ...)``."""
    params = ", ".join(f"input_{index}" for index in range(count))
    namespace: dict[str, Any] = {}
    exec(f"def forward(self, {params}):\n    return self.call(({params},))\n", namespace)  # noqa: S102
    name = f"PlainIO{count}"  # one TorchScript class name per signature
    return type(name, (_base(),), {"forward": namespace["forward"], "__module__": __name__, "__qualname__": name})


def plain_io(model: Any, names: Sequence[str], by_name: bool, *, keys: Sequence[str] | None,
             flat: bool) -> Any:
    return _class_for(len(names))(model, names, by_name, keys, flat)


def exportable(model: Any, spec: ModelSpec, names: Sequence[str], example: Sequence[Any], *,
               compiled: Any = None) -> tuple[Any, list[str]]:
    """The module to export and its output names. It is ``model`` (or ``compiled``, a scripted copy
    of it) itself when that takes the inputs by position and returns plain tensors, else wrapped so
    that it does (``PlainIO``). A forward that takes ``*tensors`` is wrapped too: torch.export matches
    ``dynamic_shapes`` to forward's parameters, and ``*tensors`` is one parameter holding them all (a
    model given to the Python API with keyword inputs is such a forward). Runs the model once on
    ``example``."""
    binding = input_binding(spec, model, names)
    module = model if compiled is None else compiled
    with torch.no_grad():
        outputs = call(module, names, example, binding)
    output_names = [name for name, _ in bind_outputs(spec, outputs)]
    if binding == POSITIONAL and is_plain(outputs) and not takes_varargs(module):
        return module, output_names
    keys = output_names if keyed_items(outputs) is not None else None
    return plain_io(module, list(names), binding == BY_NAME, keys=keys, flat=True), output_names


def takes_varargs(model: Any) -> bool:
    """Whether ``model.forward`` gathers its inputs in ``*args``."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return False
    return any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters)


def runnable(model: Any, spec: ModelSpec, names: Sequence[str]) -> Any:
    """``model``, or ``model`` wrapped to take the inputs by position when it takes them by name
    (its result is left as it is: ``named_outputs`` binds it)."""
    if input_binding(spec, model, names) == POSITIONAL:
        return model
    return plain_io(model, list(names), True, keys=None, flat=False)
