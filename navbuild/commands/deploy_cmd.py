"""What users deploy: ``navbuild package``, ``navbuild triton``, and ``navbuild build --from PKG``.

* ``package [-o PATH] [--all-targets]``: the byte-reproducible ``.nav`` zip (docs/deploy.md).
* ``triton --repo DIR [--model M] [--target T] [--strategy S] [--ort-tensorrt]``: a Triton model
  repository for each model's selected (or given) target.
* ``build --from PKG [targets]``: put a package's artifacts into the store under the keys it
  records, then build what is still missing: on the same project, every portable target is found
  and only device-bound ones for another GPU are rebuilt.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from navbuild.commands import console
from navbuild.project import open_project
from navbuild.session import Options, Session


def main(args: argparse.Namespace) -> int:
    command = args.words[0]
    if command == "build":
        return _build_from(args)
    session = open_project(args.config)
    try:
        if command == "package":
            path = write_package(session, Path(args.output) if args.output else None, include_all=args.all_targets)
            console().print(f"package: {path}", highlight=False)
            return 0
        return _triton(session, args)
    finally:
        session.close()


def default_package_path(session: Session) -> Path:
    return session.project.out / f"{session.project.name}.nav"


def write_package(session: Session, dest: Path | None = None, include_all: bool = False) -> Path:
    from navbuild import package, status

    collected = status.collect(session)
    return package.write_package(collected, dest or default_package_path(session),
                                 strategies=session.project.profile.strategies, include_all=include_all)


LAST_PACKAGE = "last-package"  # in the store: the digest of the package the last `all` wrote


def package_after_build(session: Session, changed: bool = True, quiet: bool = False) -> None:
    """The last step of ``navbuild all``; a package error never hides the build's own result.

    A run that built nothing leaves an intact package alone (the no-op path stays fast)."""
    from navbuild.package import PackageError
    from navbuild.store import atomic_write

    path = default_package_path(session)
    record = session.store.root / LAST_PACKAGE
    if not changed and path.is_file() and record.is_file():
        try:
            if record.read_text() == session.store.files.digest(path):
                return
        except OSError:
            pass
    try:
        path = write_package(session)
        atomic_write(record, session.store.files.digest(path).encode())
    except PackageError as exc:
        console(stderr=True).print(f"[yellow]package not written: {exc}[/]")
        return
    finally:
        session.close()
    if not quiet:
        console().print(f"package: {path}", highlight=False)


def _triton(session: Session, args: argparse.Namespace) -> int:
    from navbuild import status
    from navbuild.triton_repo import DeployError, write_model_repositories, write_model_repository

    collected = status.collect(session)
    repo = Path(args.repo or "model_repository")
    strategy = args.strategy or session.project.profile.strategies[0]
    try:
        if args.target:
            if not args.model:
                console(stderr=True).print("navbuild: --target needs --model")
                return 2
            paths = [write_model_repository(collected, args.model, repo, target=args.target, strategy=strategy,
                                            ort_tensorrt=args.ort_tensorrt, backend=args.backend,
                                            source_root=session.project.root)]
        else:
            paths = write_model_repositories(collected, repo, models=[args.model] if args.model else None,
                                             strategy=strategy, ort_tensorrt=args.ort_tensorrt,
                                             backend=args.backend, source_root=session.project.root)
    except DeployError as exc:
        console(stderr=True).print(f"navbuild: error: {exc}")
        return 1
    for path in paths:
        console().print(f"triton: {path}", highlight=False)
    return 0


def _build_from(args: argparse.Namespace) -> int:
    from navbuild.commands import build_cmd

    session = open_project(args.config, Options(verbose=args.verbose, quiet=args.quiet, config_arg=args.config))
    if args.from_package:
        if not Path(args.from_package).is_file():
            console(stderr=True).print(f"navbuild: error: package {args.from_package} does not exist", highlight=False)
            return 2
        imported = import_package(session, Path(args.from_package))
        console().print(f"imported {imported} artifacts from {args.from_package}", highlight=False)
    selected = session.graph.resolve(args.words[1:] or ["all"])
    return build_cmd.run(session, selected, args, force=set(selected) if args.force else set())


def import_package(session: Session, path: Path) -> int:
    """Objects into the store, and a manifest under each recorded key: the local graph finds them
    wherever it computes the same key (same project, same tools; same device for device-bound)."""
    from navbuild import package
    from navbuild.hashing import tree_digest

    status = package.import_package(path, session.store.put_file)
    count = 0
    for model_name, model in status.get("models", {}).items():
        for internal in ("samples", "reference"):
            info = model.get(internal)
            if info and info.get("key"):
                files = {f"{internal}.tensors": info["digest"]}
                metadata: dict[str, Any] = {}
                if internal == "reference":
                    metadata["outputs"] = [o["name"] for o in model.get("outputs", [])]
                _put(session, info["key"], f"{model_name}:{internal}", files, tree_digest(files), metadata)
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
