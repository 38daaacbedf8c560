"""What the deployment faces (``navbuild.pytriton``, ``navbuild.triton.model_repository``) take, as one
build status plus a model and a target: an API ``Package`` (from an optimize or ``package.load``),
the CLI's build status (``navbuild.deploy.status.collect``), or the path of a ``.nav`` file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from navbuild.api.config import strategy_of

DEFAULT_STRATEGY = "max-throughput"


@dataclass
class Deployment:
    status: Any  # a status dict, or a path / PackageContents the deploy layer reads itself
    model_name: str
    target: str | None  # None: the target the status selected for ``strategy``
    strategy: str
    root: Path | None  # the project root, for a target that runs the model's code


def resolve(package: Any, strategy: Any = None, *, model_name: str | None = None,
            target: str | None = None) -> Deployment:
    """``package`` and the options as the deploy layer's arguments. For an API ``Package`` the target
    is the one ``package.selected(strategy)`` chooses (what ``get_runner`` would run)."""
    chosen = strategy_of(strategy, DEFAULT_STRATEGY)
    if hasattr(package, "project_status") and hasattr(package, "selected"):  # navbuild.Package
        if model_name not in (None, package.name):
            raise ValueError(f"the package holds model {package.name!r}, not {model_name!r}")
        status = dict(package.project_status)
        status["models"] = {package.name: package.status}
        return Deployment(status, package.name, target or package.selected(chosen), chosen.name, package.root)
    status = package
    if isinstance(package, (str, Path)):
        from navbuild.deploy.package import read_package

        status = read_package(Path(package))
    models = sorted(_models(status))
    if model_name is None:
        if len(models) != 1:
            raise ValueError(f"the status holds models {models}; name one with model_name=")
        model_name = models[0]
    return Deployment(status, model_name, target, chosen.name, None)


def _models(status: Any) -> Mapping[str, Any]:
    if isinstance(status, Mapping):
        return status.get("models") or {}
    return (getattr(status, "status", None) or {}).get("models") or {}  # PackageContents
