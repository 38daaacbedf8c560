"""navbuild: a content-addressed build system for deploying deep-learning models.

The CLI reads navbuild.toml (``navbuild all``); the Python API (docs/python-api.md) has the shape
Triton Model Navigator users know, on the same engine and store:

    navbuild.torch.optimize(model, dataloader, config)   -> Package (one model)
    navbuild.onnx.optimize(path, dataloader, config)     -> Package
    navbuild.Module(module, name=...)                    wrap a module inside a pipeline
    navbuild.optimize(pipeline, dataloader, config)      optimize the wrapped modules in place
    navbuild.load_optimized()                            swap in each module's best runner
    navbuild.package.save(package, path) / load(path)    the .nav file
    navbuild.profile(callable, dataloader)               latency and throughput of any callable
    navbuild.pytriton.PyTritonAdapter(package=...)       serve it with PyTriton
    navbuild.triton.model_repository.add_model_from_package(...)   a Triton model repository entry

Importing navbuild imports no framework: every name above is loaded on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "OptimizeConfig": "navbuild.api.config",
    "Format": "navbuild.api.config",
    "DeviceKind": "navbuild.api.config",
    "MaxThroughputStrategy": "navbuild.api.config",
    "MinLatencyStrategy": "navbuild.api.config",
    "MaxThroughputWithLatencyBudgetStrategy": "navbuild.api.config",
    "ConfigError": "navbuild.engine.config",
    "Package": "navbuild.api.package",
    "Module": "navbuild.api.inplace",
    "optimize": "navbuild.api.inplace",
    "load_optimized": "navbuild.api.inplace",
    "profile": "navbuild.api.measure",
}
_SUBMODULES = ("torch", "onnx", "tensorflow", "jax", "package", "pytriton", "triton")

__all__ = sorted([*_NAMES, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"navbuild.{name}")
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'navbuild' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_NAMES, *_SUBMODULES])
