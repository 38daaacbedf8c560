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
         strategies: Iterable[str] = ("max-throughput", "min-latency"), include_all: bool = False,
         sign: str | Path | None = None) -> Path:
    """Write ``package`` to ``path``: its status, samples, reference outputs, the base formats and the
    targets the strategies select (every built target with ``include_all``). Byte-reproducible: what
    was measured (profiles, the figures behind the selections) goes beside it, in
    ``<name>.profile.json``, when the package has figures. ``sign``: an Ed25519 private key file that
    signs it (as ``navbuild package --sign``)."""
    from navbuild.deploy.package import PackageError, figures_path, write_figures, write_package
    from navbuild.deploy.status import FIGURES_SCHEMA

    path = Path(path)
    if path.exists() and not override:
        raise PackageError(f"{path} exists; pass override=True to replace it")
    status = dict(package.project_status)
    status["models"] = {package.name: package.status}
    key = None
    if sign is not None:
        from navbuild.deploy.signing import load_private_key

        key = load_private_key(Path(sign))
    written = write_package(status, path, strategies=strategies, include_all=include_all, sign_key=key)
    if package.figures:
        figures = dict(package.project_figures or {"schema": FIGURES_SCHEMA, "project": status.get("project")})
        figures["models"] = {package.name: package.figures}
        write_figures(figures, figures_path(written))
    return written


def load(path: str | Path, model: str | None = None, workspace: str | Path | None = None) -> Any:
    """The ``Package`` of ``model`` (the only one, by default) in the ``.nav`` file at ``path``.

    Its files are extracted under ``workspace`` (default: a temporary folder removed with the
    package); digests are checked on the way. The figures measured with it are read from
    ``<name>.profile.json`` beside it, when that file is there (profiles, selections). A package carries no source code: targets whose runner
    runs the model's own code (the eager ``torch`` target) cannot be loaded from it. Before anything
    is loaded, each target's files are read by its rule's scan (``scan_artifacts``): a TorchScript,
    torch.export or ONNX artifact that would read or write files, run a process or call a custom
    operator refuses the package (PackageError naming it).
    """
    from navbuild.api.package import Package
    from navbuild.deploy.package import PackageError, figures_path, read_package, scan_artifacts

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
    try:
        scan_artifacts(status, Path(path))
    except PackageError:
        if workspace is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    figures = _figures_beside(figures_path(Path(path)))
    package = Package(model, status["models"][model], project_status=status, root=None,
                      figures=(figures.get("models") or {}).get(model), project_figures=figures or None)
    if workspace is None:
        weakref.finalize(package, shutil.rmtree, folder, True)
    return package


def _figures_beside(path: Path) -> dict[str, Any]:
    """The figures file beside a package, {} when it is missing or not one (they are optional)."""
    import json

    from navbuild.deploy.status import FIGURES_SCHEMA

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("schema") == FIGURES_SCHEMA else {}
