"""What identifies a live model object: its code, its attributes and its weights, as one digest.

A model handed to the API as an object has no files for the engine to hash, so the API hashes what
decides its outputs and writes the digest into the model's generated entry file (``objects.py``):

- code: the source of the class of every submodule and of its user-defined base classes; of the
  functions and classes their methods name as globals (followed recursively), and of the user
  modules they name (the whole file's digest); closures' values; forward hooks. Code from
  installed packages (``discovery.in_library``: site-packages, or any folder a distribution was
  installed into; editable installs excepted) counts by distribution and version instead of by text.
- attributes: every attribute of every submodule that is not torch's bookkeeping: numbers,
  strings, tuples, lists, dicts, enums, dtypes, plain tensors (by content), objects with a
  ``to_dict`` (Hugging Face configs) or a ``__dict__`` (followed a few levels deep).
- weights: every parameter and buffer (persistent or not): name, dtype, shape and bytes.

Not captured: mutable global state (a module-level dict or object a method reads: its type is
recorded, not its contents), code reached only through an object that is not an attribute of the
model, and anything read from files or the environment at call time. The same model in another
process gives the same digest; an edited weight, method, helper function or attribute changes it.
"""
from __future__ import annotations

import enum
import functools
import inspect
import sys
import types
from pathlib import Path
from typing import Any

from navbuild.engine.discovery import in_library
from navbuild.hashing import digest_file, digest_value
from navbuild.lazy import lazy_import

torch = lazy_import("torch")
xxhash = lazy_import("xxhash")

MAX_DEPTH = 4  # how deep plain objects held as attributes are followed
_IN_PROGRESS: set[int] = set()  # modules being described (a module that holds its parent)
PRIMITIVES = (int, float, str, bytes, bool, complex, type(None))


def model_identity(model: Any) -> str:
    """The digest of ``describe(model)``: equal for equal models, in any process."""
    _IN_PROGRESS.add(id(model))
    try:
        return digest_value(describe(model))
    finally:
        _IN_PROGRESS.discard(id(model))


def describe(model: Any) -> dict[str, Any]:
    """The identity's material, a plain structure (msgpack-able) that can be diffed when debugging."""
    code = _Code()
    modules = []
    weights = []
    for prefix, sub in model.named_modules(remove_duplicate=False):
        cls = type(sub)
        code.add_class(cls)
        modules.append([prefix, _qualname(cls), _attributes(sub, code), _hooks(sub, code)])
        for kind, table in (("p", sub._parameters), ("b", sub._buffers)):
            for name, tensor in table.items():
                if tensor is not None:
                    weights.append([f"{prefix}.{name}" if prefix else name, kind, *tensor_material(tensor)])
    return {"format": "navbuild-model-identity/1", "modules": modules, "weights": weights, "code": code.entries}


def tensor_material(tensor: Any) -> list[Any]:
    """dtype, shape and a digest of the bytes of a tensor (copied to the host only if needed)."""
    tensor = tensor.detach()
    if tensor.is_sparse:
        tensor = tensor.to_dense()
    if tensor.is_quantized:
        tensor = tensor.int_repr()
    if tensor.device.type == "meta":
        return [str(tensor.dtype), list(tensor.shape), "meta"]
    flat = tensor.cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy() if flat.numel() else b""
    return [str(tensor.dtype), list(tensor.shape), xxhash.xxh3_128_hexdigest(memoryview(raw))]


# -- attributes ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _torch_bookkeeping() -> frozenset[str]:
    """Instance attributes every nn.Module has (hooks, registries, the training flag)."""
    return frozenset(vars(torch.nn.Module()))


def _attributes(module: Any, code: "_Code") -> list[Any]:
    skip = _torch_bookkeeping()
    return [[name, value_material(value, code)] for name, value in sorted(vars(module).items()) if name not in skip]


def _hooks(module: Any, code: "_Code") -> list[Any]:
    found = []
    for table in ("_forward_pre_hooks", "_forward_hooks"):
        for hook in getattr(module, table, {}).values():
            found.append(value_material(hook, code))
    return found


# configuration entries that record how a config was made, not what the model computes, and whose
# order changes from one process to the next: diffusers lists the keys left at their defaults
# from a set (its ``_use_default_values``), so two processes would see two models
UNORDERED_BOOKKEEPING = frozenset({"_use_default_values"})


def value_material(value: Any, code: "_Code", depth: int = 0) -> Any:
    """A deterministic description of an attribute's value (never an address or an id)."""
    if isinstance(value, bool) or isinstance(value, PRIMITIVES):
        return ["v", type(value).__name__, repr(value)]
    if isinstance(value, enum.Enum):
        return ["enum", _qualname(type(value)), repr(value.value)]
    if "torch" in sys.modules and isinstance(value, (torch.dtype, torch.device, torch.Size)):
        return ["torch", str(value)]
    if "torch" in sys.modules and isinstance(value, torch.Tensor):
        return ["tensor", *tensor_material(value)]
    if isinstance(value, (types.FunctionType, types.MethodType, type, functools.partial)):
        return ["code", code.add(value)]
    if isinstance(value, types.ModuleType):
        return ["module", value.__name__]
    if depth >= MAX_DEPTH:
        return ["type", _qualname(type(value))]
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [value_material(v, code, depth + 1) for v in value]
        return [type(value).__name__, sorted(items, key=repr) if isinstance(value, (set, frozenset)) else items]
    if isinstance(value, dict):
        return ["dict", sorted([[repr(k), value_material(v, code, depth + 1)] for k, v in value.items()
                                if k not in UNORDERED_BOOKKEEPING])]
    if "torch" in sys.modules and isinstance(value, torch.nn.Module):
        # a module held in a plain list or dict is no child: named_modules() does not reach it
        if id(value) in _IN_PROGRESS:
            return ["cycle", _qualname(type(value))]
        _IN_PROGRESS.add(id(value))
        try:
            return ["module", model_identity(value)]
        finally:
            _IN_PROGRESS.discard(id(value))
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        try:
            return ["object", code.add(type(value)), value_material(to_dict(), code, depth + 1)]
        except Exception:  # a to_dict that needs arguments or fails: fall through to __dict__
            pass
    if hasattr(value, "__dict__"):
        return ["object", code.add(type(value)), value_material(dict(vars(value)), code, depth + 1)]
    return ["type", _qualname(type(value))]


# -- code ---------------------------------------------------------------------------------------
class _Code:
    """Source text of user code and versions of library code, collected once per object."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}

    def add_class(self, cls: type) -> str:
        for base in cls.__mro__:
            if base is not object:
                self.add(base)
        return _qualname(cls)

    def add(self, obj: Any) -> str:
        if isinstance(obj, functools.partial):
            name = self.add(obj.func)
            return f"partial({name})"
        if isinstance(obj, types.MethodType):
            return self.add(obj.__func__)
        name = _qualname(obj)
        if name in self.entries:
            return name
        library = _library_version(obj)
        if library is not None:
            self.entries[name] = ["library", library]
            return name
        self.entries[name] = ["pending"]  # stops recursion through mutually referring functions
        self.entries[name] = ["source", _source(obj), self._referenced(obj)]
        return name

    def _referenced(self, obj: Any) -> list[Any]:
        """Globals and closure values that the code of ``obj`` (a function or a class) names."""
        functions = _functions_of(obj)
        found: dict[str, Any] = {}
        for function in functions:
            for global_name in sorted(_names(function.__code__)):
                if global_name in function.__globals__:
                    value = function.__globals__[global_name]
                    found[global_name] = self._global(value)
            for index, cell in enumerate(function.__closure__ or ()):
                try:
                    contents = cell.cell_contents
                except ValueError:  # an empty cell
                    continue
                found[f"{function.__qualname__}<closure {index}>"] = value_material(contents, self)
        return sorted(found.items())

    def _global(self, value: Any) -> Any:
        if isinstance(value, types.ModuleType):
            library = _library_version(value)
            if library is not None or not getattr(value, "__file__", None):
                return ["module", value.__name__]
            return ["module-file", value.__name__, digest_file(Path(value.__file__))]
        if isinstance(value, (types.FunctionType, type)):
            return ["code", self.add(value)]
        if isinstance(value, (bool, enum.Enum) + PRIMITIVES) or isinstance(value, (tuple, frozenset)):
            return value_material(value, self)
        return ["type", _qualname(type(value))]  # mutable global state: its type only (documented)


def _functions_of(obj: Any) -> list[types.FunctionType]:
    if isinstance(obj, types.FunctionType):
        return [obj]
    functions = []
    for value in vars(obj).values() if isinstance(obj, type) else ():
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if isinstance(value, property):
            functions.extend(f for f in (value.fget, value.fset) if isinstance(f, types.FunctionType))
        elif isinstance(value, types.FunctionType):
            functions.append(value)
    return functions


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        pass
    if isinstance(obj, type):  # its module is gone from sys.modules: its methods still know their file
        parts = [_source(function) for function in _functions_of(obj)]
        if parts:
            return "\n".join([f"class {obj.__qualname__}:", *parts])
    # no source (defined in a REPL, or built in): the qualified name is all that is known
    return f"<no source: {_qualname(obj)}>"


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or "?"
    if module == "__mp_main__":  # a spawned worker's name for the parent's __main__
        module = "__main__"
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', type(obj).__name__))}"


@functools.lru_cache(maxsize=None)
def _module_library_version(module_name: str) -> str | None:
    """``dist==version`` for a module installed in site-packages (or the stdlib), else None."""
    module = sys.modules.get(module_name)
    top = module_name.split(".")[0]
    if top in sys.builtin_module_names or top == "builtins":
        return f"python=={sys.version.split()[0]}"
    file = getattr(module, "__file__", None)
    if not file:
        return None
    if not in_library(file):  # the user's own code (an editable install's too): known by its text
        return None
    return f"{top}=={_version_of(top)}"


def _version_of(top: str) -> str:
    """An installed package's version, from ``__version__`` or its distribution's metadata."""
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return version
    from importlib import metadata

    try:
        return metadata.version(top)
    except metadata.PackageNotFoundError:
        return f"python {sys.version.split()[0]}"  # the standard library, or a dist named otherwise


def _library_version(obj: Any) -> str | None:
    module_name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    if not module_name:
        return None
    if module_name == "__mp_main__":
        module_name = "__main__"
    return _module_library_version(module_name)
