"""``lazy_import``: a module bound at the top of a file, imported on first use (Polygraphy's shape).

Rule families name their framework once per module (``torch = lazy_import("torch")``) and use it
freely inside functions, while importing the family stays free of the framework: the no-op path
and config validation never pay for torch, onnx or TensorFlow.
"""
from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for a module until an attribute is read; then it is imported once and reused, and each
    attribute read is kept on the stand-in (a module's names, such as ``torch.Tensor``, stay bound)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_module"] = None

    def _load(self) -> types.ModuleType:
        module = self.__dict__["_lazy_module"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attr: str) -> Any:
        value = getattr(self._load(), attr)
        if not attr.startswith("__"):  # read once, kept: a runner's call reads torch.Tensor on every call
            self.__dict__[attr] = value
        return value

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        state = "imported" if self.__dict__["_lazy_module"] is not None else "not imported yet"
        return f"<lazy module {self.__name__!r} ({state})>"


def lazy_import(name: str) -> Any:
    """``np = lazy_import("numpy")``: import ``name`` (dotted names too) when first used."""
    return LazyModule(name)
