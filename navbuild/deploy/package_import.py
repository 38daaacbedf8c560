"""``navbuild build --from PKG``: a package's artifacts into the store, under keys this project computes,
recorded as imported (docs/deploy.md, "Threat model").

A package is untrusted input. ``read_package`` first checks its entry names, sizes and
``status.json``. Then a packaged artifact is imported only when

- it is an artifact of the local graph, not samples or reference outputs (computed here);
- the key this project computes for it (its own sources, parameters, tool versions, device
  fingerprint, with the package's digests of the target's inputs, and the files its build discovered
  the model's code reading, hashed here) is the key the package records;
- its recorded digest follows from its files' digests (refused as tampered otherwise);
- its rule declares a ``scan`` and the scan, reading the files as data, finds nothing that reaches
  outside the model (an operator that reads or writes files, a custom operator, a path out of the
  folder): one that does refuses the whole package, naming it.

A package signed by a key in ``[trust] keys`` (``deploy/signing.py``) is the signer's word: its
artifacts may also carry code that loading runs (TensorRT plans, compiled programs: ``loads_code``)
or have digests this machine cannot recompute, every entry's SHA-256 is checked against the
signature, and what it brings is proven. Scans still run.

Every imported manifest records its origin (``imported``: the package's name and digest, its
signer). Until proven (signed, or rebuilt here with the same digest by ``navbuild verify``), an
imported artifact is not this project's build: the summary, ``status``, the lock and ``verify`` say
so, and ``navbuild package`` does not ship it. Files are streamed into a staging folder with a
running digest and moved into the store only when every one matched and every scan passed;
manifests are written last. Checks and profiles are never imported: the build computes them here,
so each imported artifact is checked against this machine's own reference outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from navbuild.deploy import signing
from navbuild.deploy.package import DEFAULT_LIMITS, Limits, PackageContents, PackageError, read_package
from navbuild.engine import binding
from navbuild.engine.digests import output_digest
from navbuild.engine.discovery import Found, declared, found_in
from navbuild.engine.graph import ARTIFACT
from navbuild.engine.keys import KeyResolver, Pending
from navbuild.engine.session import Session
from navbuild.engine.store import CorruptObject
from navbuild.hashing import digest_file, digest_value, tree_digest


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # already in the store under the same key
    skipped: dict[str, str] = field(default_factory=dict)  # target -> why it was not imported
    signer: str | None = None  # the trusted key that signed the package, if one did


class _PackageKeys(KeyResolver):
    """Keys computed by this project, taking the digests of a target's inputs from the package, and
    the list of files its build discovered (hashed here: a file that differs here gives another key)."""

    def __init__(self, session: Session, digests: dict[str, str], discovered: dict[str, Found]) -> None:
        super().__init__(session.project, session.graph, session.registry, session.store)
        self.digests, self.discovered = digests, discovered

    def digest_of(self, name: str) -> str:
        if name not in self.digests:
            raise Pending(name)
        return self.digests[name]

    def candidates(self, target: Any, declared_key: str) -> list[Found]:
        packaged = self.discovered.get(target.name)
        return [packaged] if packaged is not None else super().candidates(target, declared_key)


def import_package(session: Session, path: Path, limits: Limits = DEFAULT_LIMITS) -> ImportReport:
    contents = read_package(path, limits)
    signer = contents.signer(session.project.trust_keys)
    report = ImportReport(signer=signer.key if signer else None)
    plan = _plan(session, contents, report, trusted=signer is not None)
    origin = {"package": Path(path).name, "package_digest": digest_file(Path(path)),
              "signer": signer.key if signer else None}
    sha256: dict[str, str] = {}  # xxh3 -> SHA-256 of the bytes staged under it
    try:
        with session.store.staging() as staging:
            for name, _key, target, _material in plan:
                for file_name, digest in sorted(target["files"].items()):
                    entry = f"{target['dir']}/{file_name}"
                    with contents.stream(entry) as stream:
                        reader = signing.Sha256Reader(stream)
                        if staging.add(reader, digest, limits.entry, f"{path}: entry {entry} ({name})"):
                            sha256[digest] = reader.hexdigest()
                    if signer is not None:
                        signing.expect(path, signer, entry, sha256[digest])
            for name, _key, target, _material in plan:
                _scan(session, path, name, staging.view(target["files"]))
            staging.commit()
    except CorruptObject as exc:
        raise PackageError(str(exc)) from None
    for name, key, target, material in plan:
        rule = session.graph.targets[name].rule
        session.store.put_manifest(key, {
            "target": name, "rule": rule.name, "rule_version": rule.version, "files": dict(target["files"]),
            "digest": target["digest"], **binding.bytes_field(target["digest"], target["files"]),
            "status": "ok", "metadata": target.get("metadata") or {},
            "material": material, "imported": origin, "seconds": 0.0})
        found = found_in(material)
        if found is not None:  # the next up-to-date check looks the key up through its discovered list
            session.store.put_discovered(digest_value(declared(material)), found)
        report.imported.append(name)
    session.forget_keys()
    return report


def _scan(session: Session, path: Path, name: str, folder: Path) -> None:
    """The rule's scan of an artifact's files, before anything loads them; a finding refuses the package."""
    scan = session.graph.targets[name].rule.scan
    problem = scan(folder) if scan is not None else None
    if problem:
        raise PackageError(f"{path}: {name}: {problem}; the package is refused, nothing was imported")


def _plan(session: Session, contents: PackageContents, report: ImportReport,
          trusted: bool) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """``(target, key, package entry, key material)`` of each artifact to import."""
    digests: dict[str, str] = {}
    discovered: dict[str, Found] = {}
    packaged: dict[str, dict[str, Any]] = {}
    for model_name, model in (contents.status.get("models") or {}).items():
        samples = model.get("samples") or {}
        if samples.get("digest") and samples.get("path"):  # its target's files: the one file its rule wrote
            digests[f"{model_name}:samples"] = tree_digest({PurePosixPath(samples["path"]).name: samples["digest"]})
        for short, target in (model.get("targets") or {}).items():
            name = f"{model_name}:{short}"
            if target.get("digest"):
                digests[name] = target["digest"]
            found = found_in(target) if isinstance(target.get("discovered"), dict) else None
            if found is not None:
                discovered[name] = found
            if target.get("packaged") and target.get("files"):
                packaged[name] = target
    keys = _PackageKeys(session, digests, discovered)
    plan = []
    for name, target in sorted(packaged.items()):
        why = _not_importable(session, name, target, trusted)
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
                else:
                    if local.rule.normalized:  # a digest that names the model is recomputed with the material
                        _check_digest(contents, name, target, output_digest(local, None, target["files"], material))
                    if _present(session, name, key):
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


def _not_importable(session: Session, name: str, target: dict[str, Any], trusted: bool) -> str | None:
    local = session.graph.targets.get(name)
    if local is None or local.kind != ARTIFACT or local.rule is None:
        return "not a target of this project"
    rule = local.rule
    if rule.role is not None:
        return "computed here (samples and reference outputs are never imported)"
    if not target.get("key"):
        return "the package records no key for it"
    if trusted:
        return None
    signed = "; a package signed by a key in [trust] keys may bring it"
    if rule.loads_code:
        return f"{rule.name} outputs carry code that loading runs; built here{signed}"
    if not rule.normalized:
        return f"its digest cannot be recomputed from its files; built here{signed}"
    if rule.scan is None:
        return f"rule {rule.name} declares no scan that reads its files before they are loaded; built here{signed}"
    return None


def _present(session: Session, name: str, key: str) -> bool:
    manifest = session.store.get_manifest(key)
    return manifest is not None and session.keys.acceptable(name, manifest)
