"""``navbuild.package.save(package, path)`` and ``navbuild.package.load(path)``: a ``Package`` as the
``.nav`` file the CLI writes (``navbuild.deploy.package``), and back. See docs/python-api.md."""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Iterable

__all__ = ["save", "load"]


def save(package: Any, path: str | Path, override: bool = False, *,
         strategies: Iterable[str] = ("max-throughput", "min-latency"), include_all: bool = False) -> Path:
    """Write ``package`` to ``path``: its status, samples, reference outputs, the base formats and the
    targets the strategies select (every built target with ``include_all``). Byte-reproducible."""
    from navbuild.deploy.package import PackageError, write_package

    path = Path(path)
    if path.exists() and not override:
        raise PackageError(f"{path} exists; pass override=True to replace it")
    status = dict(package.project_status)
    status["models"] = {package.name: package.status}
    return write_package(status, path, strategies=strategies, include_all=include_all)


def load(path: str | Path, model: str | None = None, workspace: str | Path | None = None) -> Any:
    """The ``Package`` of ``model`` (the only one, by default) in the ``.nav`` file at ``path``.

    Its files are extracted under ``workspace`` (default: a temporary folder removed with the
    package); digests are checked on the way. A package carries no source code: targets whose runner
    runs the model's own code (the eager ``torch`` target) cannot be loaded from it.
    """
    from navbuild.api.package import Package
    from navbuild.deploy.package import PackageError, read_package

    contents = read_package(Path(path))
    models = sorted((contents.status.get("models") or {}))
    if model is None:
        if len(models) != 1:
            raise PackageError(f"{path} holds models {models}; name one with model=")
        model = models[0]
    if model not in models:
        raise PackageError(f"{path} holds no model {model!r}; it holds {models}")
    folder = Path(workspace) if workspace is not None else Path(tempfile.mkdtemp(prefix="navbuild-package-"))
    status = contents.extract(folder)
    package = Package(model, status["models"][model], project_status=status, root=None)
    if workspace is None:
        weakref.finalize(package, shutil.rmtree, folder, True)
    return package
