"""Open a project: navbuild.toml + the registered rules -> a target graph and a session."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from navbuild.engine import config as config_module
from navbuild.engine.graph import build_graph
from navbuild.engine.registry import default_registry
from navbuild.engine.session import Options, Session


def open_project(config_path: str | Path | None = None, options: Options | None = None) -> Session:
    path = Path(config_path) if config_path else config_module.find_config(Path.cwd())
    registry = default_registry()
    project = config_module.load(path, registry.formats)
    return _session(project, registry, options)


def open_mapping(data: Mapping[str, Any], root: str | Path, label: str | Path | None = None,
                 options: Options | None = None) -> Session:
    """A project described as the navbuild.toml mapping plus its root (the Python API, workers)."""
    registry = default_registry()
    project = config_module.from_mapping(data, Path(root), registry.formats, label=label)
    return _session(project, registry, options)


def _session(project: Any, registry: Any, options: Options | None) -> Session:
    gpu = False
    if any(m.targets.device == "auto" for m in project.models.values()):
        from navbuild.engine import fingerprint

        gpu = fingerprint.gpu_present()
    graph = build_graph(project, registry, gpu_present=gpu)
    return Session(project, registry, graph, options)
