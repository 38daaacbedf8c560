"""How a Python call of a model becomes the engine's flat, named tensors, and back.

The engine runs a model as ``model(*tensors)`` in the order of its declared inputs and flattens
whatever it returns into named outputs. A live model is called with anything: positional and
keyword arguments, nested tuples and dicts, flags such as ``return_dict=False``; it may return a
Hugging Face output class. A ``Call`` records one such call's structure: its tensors become named
inputs, everything else is a constant of the structure. ``FlatCall`` (a module) replays the
structure around the model (``flatcall.py``) so that the engine sees flat tensors in and out;
models called with positional tensors only are used as they are (TorchScript can then script them).
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from navbuild.lazy import lazy_import

torch = lazy_import("torch")

CONSTANT_TYPES = (int, float, str, bool, type(None))


class CallError(ValueError):
    """A call that cannot be described (an argument that is neither a tensor nor a constant)."""


# -- structures -----------------------------------------------------------------------------------
def is_tensor(value: Any) -> bool:
    return "torch" in sys.modules and isinstance(value, torch.Tensor)


def describe(value: Any, leaves: list[Any], path: tuple[Any, ...], paths: list[tuple[Any, ...]]) -> Any:
    """``value`` as a plain tree: tensors become ``{"t": index}`` (appended to ``leaves``); a tensor
    without dimensions (a diffusion step's timestep) is marked ``"scalar"`` (see ``record``)."""
    if is_tensor(value):
        leaves.append(value)
        paths.append(path)
        return {"t": len(leaves) - 1, "scalar": True} if value.dim() == 0 else {"t": len(leaves) - 1}
    if isinstance(value, CONSTANT_TYPES):
        return {"c": value}
    if isinstance(value, Mapping):
        return {"map": [[key, describe(item, leaves, path + (key,), paths)] for key, item in value.items()],
                "type": _type_name(value, dict)}
    if isinstance(value, (tuple, list)):
        return {"seq": [describe(item, leaves, path + (index,), paths) for index, item in enumerate(value)],
                "type": _type_name(value, tuple if isinstance(value, tuple) else list)}
    raise CallError(f"{'.'.join(map(str, path)) or 'the value'} is a {type(value).__name__}; navbuild "
                    "records tensors, numbers, strings, None, and tuples, lists and dicts of them")


def rebuild(tree: Any, leaves: Sequence[Any], classes: Mapping[str, type] | None = None) -> Any:
    """The value ``describe`` saw, with ``leaves`` in place of its tensors. Mappings come back as
    dicts and sequences as tuples or lists, except for classes found in ``classes`` (by name)."""
    if "t" in tree:
        leaf = leaves[tree["t"]]
        # a scalar travels as one copy per batch item (``record``); the model gets it back as it was
        return leaf[0] if tree.get("scalar") and getattr(leaf, "ndim", 0) == 1 else leaf
    if "c" in tree:
        return tree["c"]
    classes = classes or {}
    if "map" in tree:
        items = {key: rebuild(item, leaves, classes) for key, item in tree["map"]}
        cls = classes.get(tree["type"])
        return cls(**items) if cls is not None else items
    items = [rebuild(item, leaves, classes) for item in tree["seq"]]
    cls = classes.get(tree["type"])
    if cls is not None:
        return cls(*items)
    return list(items) if tree["type"] == "list" else tuple(items)


def plain(tree: Any) -> bool:
    """Only tensors, tuples, lists and plain dicts: what the engine flattens by itself."""
    if "t" in tree:
        return True
    if "c" in tree:
        return False
    kind = tree["type"]
    children = [item for _, item in tree["map"]] if "map" in tree else tree["seq"]
    return kind in ("dict", "tuple", "list") and all(plain(child) for child in children)


def _type_name(value: Any, base: type) -> str:
    cls = type(value)
    return base.__name__ if cls is base else f"{cls.__module__}.{cls.__qualname__}"


def classes_in(value: Any) -> dict[str, type]:
    """Output classes that are not plain containers, by the name ``describe`` gives them."""
    found: dict[str, type] = {}
    if isinstance(value, Mapping):
        children = list(value.values())
    elif isinstance(value, (tuple, list)):
        children = list(value)
    else:
        return found
    if type(value) not in (dict, tuple, list):
        found[f"{type(value).__module__}.{type(value).__qualname__}"] = type(value)
    for child in children:
        found.update(classes_in(child))
    return found


# -- one call ---------------------------------------------------------------------------------------
@dataclass
class Call:
    """One call's structure: ``tree`` describes ``(args, kwargs)``; ``names`` name its tensors."""

    tree: Any
    names: list[str]

    @property
    def positional(self) -> bool:
        """``model(t0, t1, ...)`` with tensors only: no adapter needed."""
        args, kwargs = self.tree["seq"]
        return not kwargs["map"] and all("t" in item and "scalar" not in item for item in args["seq"])

    def same_structure(self, other: "Call") -> bool:
        """Tensor leaves hold only their index: trees compare by structure and constants."""
        return self.tree == other.tree


def record(args: Sequence[Any], kwargs: Mapping[str, Any], input_names: Sequence[str] | None = None
           ) -> tuple[Call, list[Any]]:
    """The call's structure and its tensors, in order. A tensor without dimensions is repeated along
    the call's batch (the first dimension of its first batched tensor), so that every input has the
    batch first, as the engine's samples, exports and dynamic batch axes need."""
    leaves: list[Any] = []
    paths: list[tuple[Any, ...]] = []
    tree = describe((tuple(args), dict(kwargs)), leaves, (), paths)
    if any(leaf.dim() == 0 for leaf in leaves):
        batch = next((leaf.shape[0] for leaf in leaves if leaf.dim() > 0), 1)
        leaves = [leaf.reshape(1).repeat(batch) if leaf.dim() == 0 else leaf for leaf in leaves]
    names = list(input_names) if input_names else [_input_name(path) for path in paths]
    if len(names) != len(leaves):
        raise CallError(f"input_names names {len(names)} inputs but the call passes {len(leaves)} tensors")
    return Call(tree, _unique(names)), leaves


class Binder:
    """A recorded call's structure made into a matcher once: ``leaves(args, kwargs)`` gives a later
    call's tensors in the recorded order when its structure and constants are the recorded ones
    (what ``record`` + ``same_structure`` decide), else None, without building a tree per call."""

    def __init__(self, call: Call) -> None:
        self.names = list(call.names)
        args_tree, kwargs_tree = call.tree["seq"]
        # the call's own containers: whatever sequence holds the arguments, whatever mapping the keywords
        self._args = _matcher({**args_tree, "type": "any"})
        self._kwargs = _matcher({**kwargs_tree, "type": "any"})
        self._scalars = _has_scalars(call.tree)

    def leaves(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any] | None:
        found: list[Any] = []
        if not (self._args(args, found) and self._kwargs(kwargs, found)):
            return None
        if self._scalars:  # as ``record`` sends them: one copy per batch item
            batch = next((leaf.shape[0] for leaf in found if leaf.dim() > 0), 1)
            found = [leaf.reshape(1).repeat(batch) if leaf.dim() == 0 else leaf for leaf in found]
        return found


Matcher = Callable[[Any, list], bool]


def _matcher(tree: Any) -> Matcher:
    """A function ``(value, found) -> bool``: whether ``value`` has ``tree``'s structure, appending its
    tensors to ``found`` in order."""
    if "t" in tree:
        scalar = bool(tree.get("scalar"))
        return lambda value, found: (is_tensor(value) and (value.dim() == 0) == scalar
                                     and (found.append(value) or True))
    if "c" in tree:
        constant = tree["c"]
        return lambda value, found: isinstance(value, CONSTANT_TYPES) and value == constant
    kind = tree["type"]
    if "map" in tree:
        keys = [key for key, _ in tree["map"]]
        items = [(key, _matcher(item)) for key, item in tree["map"]]

        def match_map(value: Any, found: list) -> bool:
            return ((type(value) is dict or isinstance(value, Mapping)) and list(value) == keys
                    and (kind == "any" or _type_name(value, dict) == kind)
                    and all(match(value[key], found) for key, match in items))
        return match_map
    children = [_matcher(item) for item in tree["seq"]]
    count = len(children)

    def match_seq(value: Any, found: list) -> bool:
        return (isinstance(value, (tuple, list)) and len(value) == count
                and (kind == "any" or _type_name(value, tuple if isinstance(value, tuple) else list) == kind)
                and all(match(item, found) for match, item in zip(children, value)))
    return match_seq


def _has_scalars(tree: Any) -> bool:
    if "t" in tree:
        return bool(tree.get("scalar"))
    if "c" in tree:
        return False
    return any(_has_scalars(item) for item in ([item for _, item in tree["map"]] if "map" in tree else tree["seq"]))


def _input_name(path: tuple[Any, ...]) -> str:
    where, *rest = path
    if where == 0:  # positional: input__<position>[__<nested index or key>]
        head, *rest = rest
        parts = [f"input__{head}", *map(str, rest)]
    else:
        parts = [str(part) for part in rest]
    return _identifier("__".join(parts))


def output_names(tree: Any, count: int, given: Sequence[str] | None) -> list[str]:
    """Declared names, else a top-level dict's keys (one tensor each), else ``output__<i>``."""
    if given:
        return list(given)
    if "map" in tree and all("t" in item for _, item in tree["map"]) and len(tree["map"]) == count:
        return _unique([_identifier(str(key)) for key, _ in tree["map"]])
    return [f"output__{index}" for index in range(count)]


def _identifier(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", text) or "input"


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}_{seen[name]}"
        else:
            seen[name] = 0
        unique.append(name)
    return unique


def call_args(sample: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A dataloader sample as ``(args, kwargs)`` (Model Navigator's convention): a tuple or list is
    the positional arguments (a trailing dict holds keyword arguments), a dict the keyword
    arguments, anything else the one argument."""
    if isinstance(sample, Mapping):
        return (), dict(sample)
    if isinstance(sample, (tuple, list)):
        if sample and isinstance(sample[-1], Mapping):
            return tuple(sample[:-1]), dict(sample[-1])
        return tuple(sample), {}
    return (sample,), {}


def flatten_outputs(value: Any) -> list[Any]:
    """Tensors of a return value in the engine's order (mappings by value order, sequences in order)."""
    if is_tensor(value):
        return [value]
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in flatten_outputs(item)]
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in flatten_outputs(item)]
    return []  # constants (None, numbers) are not outputs
