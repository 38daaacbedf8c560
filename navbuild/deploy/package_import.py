"""``navbuild build --from PKG``: a package's artifacts into the store, under keys this project computes.

A package is untrusted input (docs/deploy.md, "Threat model"). ``read_package`` first checks its
entry names, sizes and ``status.json``. Then a packaged artifact is imported only when

- it is an artifact of the local graph whose rule does not ``loads_code`` (compiled or pickled
  outputs are rebuilt here, never taken from a package);
- its recorded digest is the tree digest of its files' digests (refused as tampered otherwise);
- the key this project computes for it (its own sources, parameters, tool versions, device
  fingerprint, with the package's digests of the target's inputs) is the key the package records.

Imported files are streamed into a staging folder with a running digest and moved into the store
only when every one of them matched; manifests are written last. Samples, reference outputs,
checks and profiles are never imported: the build computes them here, so each imported artifact is
checked against this machine's own reference outputs before anything packages or deploys it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from navbuild.deploy.package import DEFAULT_LIMITS, Limits, PackageContents, PackageError, read_package
from navbuild.engine.digests import output_digest
from navbuild.engine.graph import ARTIFACT
from navbuild.engine.keys import KeyResolver, Pending
from navbuild.engine.session import Session
from navbuild.engine.store import CorruptObject
from navbuild.hashing import tree_digest


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already in the store under the same key
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why it was not imported


class _PackageKeys(KeyResolver):
    """Keys computed by this project, taking the digests of a target's inputs from the package."""

    def __init__(self, session: Session, digests: dict[str, str]) -> None:
        super().__init__(session.project, session.graph, session.registry, session.store)
        self.digests = digests

    def digest_of(self, name: str) -> str:
        if name not in self.digests:
            raise Pending(name)
        return self.digests[name]


def import_package(session: Session, path: Path, limits: Limits = DEFAULT_LIMITS) -> ImportReport:
    contents = read_package(path, limits)
    report = ImportReport()
    plan = _plan(session, contents, report)
    try:
        with session.store.staging() as staging:
            for name, _key, target, _material in plan:
                for file_name, digest in sorted(target["files"].items()):
                    entry = f"{target['dir']}/{file_name}"
                    with contents.stream(entry) as stream:
                        staging.add(stream, digest, limits.entry, f"{path}: entry {entry} ({name})")
            staging.commit()
    except CorruptObject as exc:
        raise PackageError(str(exc)) from None
    for name, key, target, material in plan:
        rule = session.graph.targets[name].rule
        session.store.put_manifest(key, {
            "target": name, "rule": rule.name, "rule_version": rule.version, "files": dict(target["files"]),
            "digest": target["digest"], "status": "ok", "metadata": target.get("metadata") or {},
            "material": material, "imported": str(path), "seconds": 0.0})
        report.imported.append(name)
    session.forget_keys()
    return report


def _plan(session: Session, contents: PackageContents,
          report: ImportReport) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """``(target, key, package entry, key material)`` of each artifact to import."""
    digests: dict[str, str] = {}
    packaged: dict[str, dict[str, Any]] = {}
    for model_name, model in (contents.status.get("models") or {}).items():
        samples = model.get("samples") or {}
        if samples.get("digest") and samples.get("path"):  # its target's files: the one file its rule wrote
            digests[f"{model_name}:samples"] = tree_digest({PurePosixPath(samples["path"]).name: samples["digest"]})
        for short, target in (model.get("targets") or {}).items():
            name = f"{model_name}:{short}"
            if target.get("digest"):
                digests[name] = target["digest"]
            if target.get("packaged") and target.get("files"):
                packaged[name] = target
    keys = _PackageKeys(session, digests)
    plan = []
    for name, target in sorted(packaged.items()):
        why = _not_importable(session, name, target)
        local = session.graph.targets[name] if why is None else None
        if local is not None and local.rule.output_identifies_model:
            _check_digest(contents, name, target, tree_digest(target["files"]))
        if why is None:
            try:
                key, material = keys.key(name)
            except Pending as pending:
                why = f"its input {pending.upstream} is not described in the package"
            else:
                if key != target.get("key"):
                    why = "built from other inputs (sources, parameters, tools or device) than this project's"
                else:  # same key, same material: a digest that names the model is recomputed with it
                    # (a normalized rule's digest needs no folder, only the files' digests)
                    _check_digest(contents, name, target, output_digest(local, None, target["files"], material))
                    if _present(session, key):
                        report.present.append(name)
                        continue
        if why is not None:
            report.skipped[name] = why
            continue
        plan.append((name, key, target, material))
    return plan


def _check_digest(contents: PackageContents, name: str, target: dict[str, Any], computed: str) -> None:
    if computed != target.get("digest"):
        raise PackageError(f"{contents.path}: {name} records digest {target.get('digest')}, but its files "
                           f"give {computed}; the package was altered")


def _not_importable(session: Session, name: str, target: dict[str, Any]) -> str | None:
    local = session.graph.targets.get(name)
    if local is None or local.kind != ARTIFACT or local.rule is None:
        return "not a target of this project"
    rule = local.rule
    if rule.role is not None:
        return "computed here (samples and reference outputs are never imported)"
    if rule.loads_code:
        return f"{rule.name} outputs carry code that loading runs; built here"
    if not rule.normalized:
        return "its digest cannot be recomputed from its files; built here"
    if not target.get("key"):
        return "the package records no key for it"
    return None


def _present(session: Session, key: str) -> bool:
    manifest = session.store.get_manifest(key)
    return manifest is not None and session.store.manifest_intact(manifest)
