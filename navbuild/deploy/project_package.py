"""The project's own ``.nav`` package: written by ``navbuild package`` and as the last step of
``navbuild all`` (``navbuild-out/<project>.nav``)."""
from __future__ import annotations

from pathlib import Path

from navbuild.engine.session import Session

LAST_PACKAGE = "last-package"  # in the store: the digest of the package the last `all` wrote


def default_path(session: Session) -> Path:
    return session.project.out / f"{session.project.name}.nav"


def write(session: Session, dest: Path | None = None, include_all: bool = False) -> Path:
    from navbuild.deploy import package, status

    collected = status.collect(session)
    return package.write_package(collected, dest or default_path(session),
                                 strategies=session.project.profile.strategies, include_all=include_all)


def write_after_build(session: Session, changed: bool = True) -> Path | None:
    """The package after a build; None when a run that built nothing found it intact (the no-op
    path stays fast). Raises PackageError when it cannot be written."""
    from navbuild.engine.store import atomic_write

    path = default_path(session)
    record = session.store.root / LAST_PACKAGE
    if not changed and path.is_file() and record.is_file():
        try:
            if record.read_text() == session.store.files.digest(path):
                return None
        except OSError:
            pass
    path = write(session)
    atomic_write(record, session.store.files.digest(path).encode())
    return path
