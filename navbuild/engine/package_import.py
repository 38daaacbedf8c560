"""``navbuild build --from PKG``: a package's artifacts into the store, each under its recorded key.

The local graph then finds an imported artifact wherever it computes the same key (same project,
same tools; same device for device-bound targets) and builds only what is still missing.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from navbuild.engine.session import Session
from navbuild.hashing import tree_digest
from navbuild.rule import ROLE_REFERENCE, ROLES


def import_package(session: Session, path: Path) -> int:
    """Objects into the store and a manifest under each recorded key; returns how many targets."""
    from navbuild.deploy import package

    status = package.import_package(path, session.store.put_file)
    count = 0
    for model_name, model in status.get("models", {}).items():
        for role in ROLES:
            info = model.get(role)
            if info and info.get("key"):
                files = {PurePosixPath(info["path"]).name: info["digest"]}  # the file its rule wrote
                metadata: dict[str, Any] = {}
                if role == ROLE_REFERENCE:
                    metadata["outputs"] = [o["name"] for o in model.get("outputs", [])]
                _put(session, info["key"], f"{model_name}:{role}", files, tree_digest(files), metadata)
                count += 1
        for short, target in model.get("targets", {}).items():
            if target.get("packaged") and target.get("key") and target.get("files"):
                _put(session, target["key"], f"{model_name}:{short}", dict(target["files"]), target["digest"],
                     target.get("metadata") or {})
                count += 1
    session.forget_keys()
    return count


def _put(session: Session, key: str, name: str, files: dict[str, str], digest: str, metadata: dict[str, Any]) -> None:
    if session.store.get_manifest(key) is None:
        session.store.put_manifest(key, {"target": name, "files": files, "digest": digest, "status": "ok",
                                         "metadata": metadata, "imported": True, "seconds": 0.0})
