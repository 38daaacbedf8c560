"""Open a project: navbuild.toml, a mapping of the same shape (the Python API), or a project's
description (a worker process) + the registered rules -> a target graph and a session.

All three go through ``config.from_mapping``, the one validator."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

from navbuild.engine import config as config_module
from navbuild.engine.graph import build_graph
from navbuild.engine.options import Options
from navbuild.engine.registry import Registry, default_registry, from_modules
from navbuild.engine.session import Session


def open_project(config_path: str | Path | None = None, options: Options | None = None) -> Session:
    path = Path(config_path) if config_path else config_module.find_config(Path.cwd())
    registry = default_registry()
    project = config_module.load(path, registry.formats)
    return _session(project, registry, options)


def open_mapping(data: Mapping[str, Any], root: str | Path, label: str | Path | None = None,
                 options: Options | None = None) -> Session:
    """A project described as the navbuild.toml mapping plus its root (the Python API)."""
    registry = default_registry()
    project = config_module.from_mapping(data, Path(root), registry.formats, label=label)
    return _session(project, registry, options)


def open_described(description: dict[str, Any]) -> Session:
    """The project a worker process serves, from ``Session.describe``."""
    registry = from_modules(description["rule_modules"])
    project = config_module.from_mapping(description["config"], Path(description["root"]), registry.formats,
                                         label=description["label"])
    project = dataclasses.replace(project, store=Path(description["store"]), out=Path(description["out"]))
    given = description["options"]
    options = Options(verbose=given["verbose"], config_arg=given["config_arg"],
                      retry_failed=given.get("retry_failed", False),
                      remote_cache=given.get("remote_cache"), remote_read_only=given.get("remote_read_only", False))
    # "auto" devices as the process that asked resolved them: a CPU target's worker sees no GPU
    session = _session(project, registry, options, gpu_present=description.get("gpu_present"))
    session.keys.forget_lock()  # the process that asked decided what is current; the lock may be a run behind
    return session


def _session(project: config_module.ProjectConfig, registry: Registry, options: Options | None,
             gpu_present: bool | None = None) -> Session:
    gpu = bool(gpu_present)
    if gpu_present is None and any(m.targets.device == "auto" for m in project.models.values()):
        from navbuild.engine import fingerprint

        gpu = fingerprint.gpu_present()
    graph = build_graph(project, registry, gpu_present=gpu)
    session = Session(project, registry, graph, options)
    session.gpu_present = gpu
    return session
