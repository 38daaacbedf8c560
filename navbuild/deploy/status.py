"""The build status as one plain dict (schema ``navbuild-status/1``, documented in
docs/status-schema.md): what the package, the Triton writer, PyTriton and reports read.

It is collected from the store and the materialized outputs, never from a live framework object.
"""
from __future__ import annotations

from typing import Any

from navbuild.engine import fingerprint
from navbuild.engine.graph import ARTIFACT, PROFILE
from navbuild.rule import ROLES
from navbuild.engine.session import Session

SCHEMA = "navbuild-status/1"


def collect(session: Session, models: list[str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"schema": SCHEMA, "project": session.project.name,
                              "machine": fingerprint.machine(session.registry.tools()),
                              "root": str(session.project.root), "models": {}}
    for name, model in session.project.models.items():
        if models and name not in models:
            continue
        status["models"][name] = _model(session, name, model)
    return status


def _model(session: Session, name: str, model: Any) -> dict[str, Any]:
    spec = model.spec
    entry: dict[str, Any] = {"framework": spec.framework, "entry": spec.entry, "inputs": [], "outputs": [],
                             "max_batch_size": spec.max_batch_size, "batch_dim": spec.batch_dim,
                             "samples": None, "reference": None, "targets": {}, "selected": {}}
    for role in ROLES:
        role_target = session.graph.targets[f"{name}:{role}"]
        manifest = session.current_manifest(role_target.name)
        if manifest is not None:
            folder = session.out_dir(role_target)
            session.materialize(role_target, manifest)
            entry[role] = {"digest": manifest["files"][role_target.tensor_file], "key": manifest["key"],
                           "path": str(folder / role_target.tensor_file)}
    if entry["samples"]:
        entry["inputs"] = _io_from(entry["samples"]["path"])
    if entry["reference"]:
        entry["outputs"] = _io_from(entry["reference"]["path"])
    for target_name, target in session.graph.targets.items():
        if target.kind != ARTIFACT or target.spec.name != name or target.rule.role is not None:
            continue
        entry["targets"][target.short] = _target(session, target)
    entry["selected"], entry["selections"] = select(entry["targets"], session.project.profile.strategies)
    return entry


def select(targets: dict[str, Any], strategies: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Each strategy's choice among the profiled, correct targets (and the figures behind it)."""
    from navbuild.measure.profiling import ProfileResult
    from navbuild.measure.selection import select as choose

    candidates = {name: (ProfileResult.from_dict(t["profile"]), bool((t["correctness"] or {}).get("passed")))
                  for name, t in targets.items() if t.get("profile")}
    if not candidates:
        return {}, {}
    selected, details = {}, {}
    for strategy in strategies:
        selection = choose(candidates, strategy)
        details[strategy] = selection.to_dict()
        if selection.target:
            selected[strategy] = selection.target
    return selected, details


def _io_from(path: str) -> list[dict[str, Any]]:
    from navbuild import tensors

    first = tensors.load(path)[0]
    return [{"name": n, "dtype": str(a.dtype), "shape": [-1, *a.shape[1:]]} for n, a in first.items()]


def _target(session: Session, target: Any) -> dict[str, Any]:
    rule = target.rule
    record = {"target": target.name, "format": rule.name, "precision": target.precision, "rule": rule.name,
              "rule_version": rule.version, "key": None, "digest": None, "device": target.device,
              "device_bound": rule.device_bound, "portable": not rule.device_bound, "runner": rule.runner,
              "files": {}, "dir": str(session.out_dir(target)), "status": "missing", "reason": None,
              "correctness": None, "profile": None, "metadata": {}, "base": rule.base,
              "triton": rule.triton.to_dict() if rule.triton else None}
    reason = session.unmet_needs(target)
    if reason:
        record.update(status="skipped", reason=reason)
        return record
    manifest = session.current_manifest(target.name)
    if manifest is None:
        return record
    session.materialize(target, manifest)
    record.update(key=manifest["key"], digest=manifest["digest"], files=dict(manifest["files"]), status="built",
                  metadata=manifest.get("metadata", {}))
    check = session.current_manifest(f"{target.name}.check")
    if check is not None:
        record["correctness"] = check.get("metadata")
    profile_name = f"{target.name}.profile"
    if profile_name in session.graph.targets and session.graph.targets[profile_name].kind == PROFILE:
        profile = session.current_manifest(profile_name)
        if profile is not None:
            record["profile"] = profile.get("metadata")
    return record
