"""Open a project: navbuild.toml + the registered rules -> a target graph and a session."""
from __future__ import annotations

from pathlib import Path

from navbuild.engine import config as config_module
from navbuild.engine.graph import build_graph
from navbuild.engine.registry import default_registry
from navbuild.engine.session import Options, Session


def open_project(config_path: str | Path | None = None, options: Options | None = None) -> Session:
    path = Path(config_path) if config_path else config_module.find_config(Path.cwd())
    registry = default_registry()
    project = config_module.load(path, registry.formats)
    gpu = False
    if any(m.targets.device == "auto" for m in project.models.values()):
        from navbuild.engine import fingerprint

        gpu = fingerprint.gpu_present()
    graph = build_graph(project, registry, gpu_present=gpu)
    return Session(project, registry, graph, options)
