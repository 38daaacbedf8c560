"""The project's own ``.nav`` package: written by ``navbuild package`` and as the last step of
``navbuild all`` (``navbuild-out/<project>.nav``), with what was measured beside it
(``navbuild-out/<project>.profile.json``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.engine.session import Session

LAST_PACKAGE = "last-package"  # in the store: the digest of the package the last `all` wrote


def default_path(session: Session) -> Path:
    return session.project.out / f"{session.project.name}.nav"


def write(session: Session, dest: Path | None = None, include_all: bool = False, sign_key: Any = None) -> Path:
    """The package at ``dest`` (the default path if None) and its figures beside it; ``sign_key``
    signs it (``deploy/signing.py``)."""
    from navbuild.deploy import package, status

    collected, figures = status.collect_all(session)
    if dest is None:
        dest = default_path(session)
        session.outputs.own(dest.parent)  # navbuild-out, made by navbuild: `clean` may delete it
    path = package.write_package(collected, dest, strategies=session.project.profile.strategies,
                                 include_all=include_all, sign_key=sign_key)
    package.write_figures(figures, package.figures_path(path))
    return path


def write_after_build(session: Session, changed: bool = True) -> Path | None:
    """The package after a build; None when a run that built nothing found it intact and written
    from the same targets and settings (the no-op path stays fast). Raises PackageError when it
    cannot be written."""
    from navbuild.deploy.package import figures_path
    from navbuild.engine.atomic import atomic_write

    path = default_path(session)
    record = session.store.root / LAST_PACKAGE
    inputs = _inputs_digest(session)
    if not changed and path.is_file() and record.is_file() and figures_path(path).is_file():
        try:
            if record.read_text() == f"{session.store.files.digest(path)} {inputs}":
                return None
        except OSError:
            pass
    path = write(session)
    atomic_write(record, f"{session.store.files.digest(path)} {inputs}".encode())
    return path


def _inputs_digest(session: Session) -> str:
    """What the package is made from: every declared target's current key, the strategies and the
    tie margin they choose with."""
    from navbuild.engine.keys import Pending
    from navbuild.hashing import digest_value

    keys = {}
    for name in session.graph.targets:
        try:
            keys[name] = session.key(name)[0]
        except Pending:
            keys[name] = None
    return digest_value({"keys": keys, "strategies": list(session.project.profile.strategies),
                         "tie_margin_pct": session.project.profile.tie_margin_pct})
