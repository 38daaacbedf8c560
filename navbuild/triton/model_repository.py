"""``add_model_from_package(model_repository_path=, model_name=, package=, strategy=)``: a model's
selected target as ``<repository>/<model_name>/{config.pbtxt,1/...}``, as Model Navigator names it.
The work is ``navbuild.deploy.triton_repo.write_model_repository``'s (docs/deploy.md)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["add_model_from_package"]


def add_model_from_package(model_repository_path: str | Path, model_name: str, package: Any,
                           strategy: Any = None, *, target: str | None = None, package_model: str | None = None,
                           **options: Any) -> Path:
    """Write the target ``strategy`` selects (max-throughput by default; a strategy object or its name),
    or ``target``, of ``package`` (an optimize's ``Package``, the CLI's build status, or a ``.nav``
    path; ``package_model`` names the model when it holds several) under the Triton name
    ``model_name``. ``options`` go to ``write_model_repository`` (``backend=``, ``instance_count=``,
    ``dynamic_batching=``...). Returns the model's folder."""
    from navbuild.api.deployment import resolve
    from navbuild.deploy.package import PackageContents
    from navbuild.deploy.triton_repo import write_model_repository

    chosen = resolve(package, strategy, model_name=package_model, target=target)
    status, extracted = chosen.status, None
    if isinstance(status, PackageContents):  # files are copied from an extraction, then it goes
        extracted = Path(tempfile.mkdtemp(prefix="navbuild-triton-"))
        status = status.extract(extracted)
    try:
        return write_model_repository(status, chosen.model_name, Path(model_repository_path),
                                      target=chosen.target, strategy=chosen.strategy, triton_name=model_name,
                                      source_root=chosen.root, **options)
    finally:
        if extracted is not None:
            shutil.rmtree(extracted, ignore_errors=True)
