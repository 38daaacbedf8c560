"""Open a project: navbuild.toml (or its description) + the registered rules -> a target graph and a session."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.engine import config as config_module
from navbuild.engine.graph import INTERNAL_RULES, build_graph
from navbuild.engine.registry import Registry, default_registry, from_modules
from navbuild.engine.session import Options, Session


def open_project(config_path: str | Path | None = None, options: Options | None = None) -> Session:
    path = Path(config_path) if config_path else config_module.find_config(Path.cwd())
    registry = default_registry()
    project = config_module.load(path, _formats(registry))
    return _session(project, registry, options)


def describe(session: Session) -> dict[str, Any]:
    """What a worker process needs to open the same project: plain data, no file required."""
    project = session.project
    return {"config": project.mapping, "path": str(project.path), "root": str(project.root),
            "rule_modules": list(session.registry.rule_modules),
            "options": {"verbose": session.options.verbose, "config_arg": session.options.config_arg}}


def open_described(description: dict[str, Any]) -> Session:
    registry = from_modules(description["rule_modules"])
    project = config_module.from_mapping(description["config"], Path(description["path"]),
                                         Path(description["root"]), _formats(registry))
    options = Options(verbose=description["options"]["verbose"], config_arg=description["options"]["config_arg"])
    return _session(project, registry, options)


def _formats(registry: Registry) -> dict[str, Any]:
    return {name: rule for name, rule in registry.rules.items() if name not in INTERNAL_RULES}


def _session(project: config_module.ProjectConfig, registry: Registry, options: Options | None) -> Session:
    gpu = False
    if any(m.targets.device == "auto" for m in project.models.values()):
        from navbuild.engine import fingerprint

        gpu = fingerprint.gpu_present()
    graph = build_graph(project, registry, gpu_present=gpu)
    return Session(project, registry, graph, options)
