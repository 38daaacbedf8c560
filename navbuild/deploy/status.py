"""The build status as one plain dict (schema ``navbuild-status/2``, documented in
docs/status-schema.md): what the package, the Triton writer, PyTriton and reports read.

It is collected from the store and the materialized outputs, never from a live framework object.
What was measured (profiles, the figures behind each selection, build times, the machine) is kept
apart from it, in a figures dict (``navbuild-figures/1``): the status holds only what two clean
builds of the same commit on one machine reproduce, and the one measured decision a deployment
needs, ``selected``, made stable (navbuild.measure.selection) and remembered in the store.
"""
from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any, Mapping

from navbuild import dynamic_axes
from navbuild.engine.graph import ARTIFACT, PROFILE
from navbuild.rule import ROLES

if TYPE_CHECKING:
    from navbuild.engine.session import Session

SCHEMA = "navbuild-status/2"
FIGURES_SCHEMA = "navbuild-figures/1"
SELECTIONS_FILE = "selections.json"  # in the store: model -> strategy -> the target last selected
TIMING_SUFFIX = "_seconds"  # rule metadata keys holding a time (a compile's): measured, not reproducible


def collect(session: Session, models: list[str] | None = None) -> dict[str, Any]:
    """The reproducible status of ``models`` (all by default)."""
    return collect_all(session, models)[0]


def collect_all(session: Session, models: list[str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(status, figures)``; the selections made are remembered in the store for the next run."""
    from navbuild.engine import fingerprint

    full: dict[str, Any] = {"schema": SCHEMA, "project": session.project.name,
                            "machine": fingerprint.machine(session.registry.tools()),
                            "root": str(session.project.root), "models": {}}
    remembered = _load_selections(session)
    for name, model in session.project.models.items():
        if models and name not in models:
            continue
        full["models"][name] = _model(session, name, model, remembered.setdefault(name, {}))
    _save_selections(session, remembered)
    return split_measured(full)


def split_measured(status: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(reproducible status, figures)`` of a full status: the machine, every target's ``profile``,
    the timings among its ``metadata`` and its check's ``runner_info``, and each model's
    ``selections`` move to the figures."""
    status = copy.deepcopy(dict(status))
    figures: dict[str, Any] = {"schema": FIGURES_SCHEMA, "project": status.get("project"),
                               "machine": status.pop("machine", None), "models": {}}
    status["schema"] = SCHEMA
    for model_name, model in (status.get("models") or {}).items():
        measured: dict[str, Any] = {"selections": model.pop("selections", None) or {}, "targets": {}}
        for target_name, target in (model.get("targets") or {}).items():
            metadata = target.get("metadata") or {}
            timings = {k: metadata.pop(k) for k in sorted(metadata) if k.endswith(TIMING_SUFFIX)}
            # what the runner said during the check (runner_info) may time itself too: a compile's seconds
            runner_info = (target.get("correctness") or {}).get("runner_info") or {}
            timings.update({f"check_{k}": runner_info.pop(k) for k in sorted(runner_info) if k.endswith(TIMING_SUFFIX)})
            timings.update(target.pop("timings", None) or {})
            measured["targets"][target_name] = {"profile": target.pop("profile", None), "timings": timings}
        figures["models"][model_name] = measured
    return status, figures


def _model(session: Session, name: str, model: Any, remembered: dict[str, str]) -> dict[str, Any]:
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
    if spec.dynamic_axes:
        entry["dynamic_axes"] = dynamic_axes.to_table(spec.dynamic_axes, spec.axis_bounds)
    if entry["samples"]:
        entry["inputs"] = _io_from(entry["samples"]["path"], spec)
    if entry["reference"]:
        entry["outputs"] = _io_from(entry["reference"]["path"], spec)
    artifacts = [t for t in session.graph.targets.values()
                 if t.kind == ARTIFACT and t.spec.name == name and t.rule.role is None]
    for target in artifacts:
        entry["targets"][target.short] = _target(session, target)
    order = tie_order(model, artifacts)
    entry["selected"], entry["selections"] = select(entry["targets"], session.project.profile.strategies,
                                                    order=order, previous=remembered,
                                                    margin_pct=session.project.profile.tie_margin_pct)
    remembered.clear()
    remembered.update(entry["selected"])
    return entry


def tie_order(model: Any, artifacts: list[Any]) -> list[str]:
    """The short names of a model's ``artifacts`` (in the graph's order) from the most preferred:
    the ``order`` its selections break ties with."""
    ranked = sorted(enumerate(artifacts), key=lambda item: preference(model, item[1], item[0]))
    return [target.short for _, target in ranked]


def preference(model: Any, target: Any, declared: int = 0) -> tuple[int, int, int, str]:
    """Which of two equally fast targets a model prefers: the earlier declared precision, then the
    earlier declared format (an implicit upstream format last), then the earlier in the graph's
    declaration order (``declared``: the variants of one format in the order their values were
    listed, or the rule declares them for ``"search"``), then the name."""
    precisions, formats = model.targets.precisions, model.targets.formats
    return (precisions.index(target.precision) if target.precision in precisions else len(precisions),
            formats.index(target.rule.name) if target.rule.name in formats else len(formats), declared,
            target.short)


def select(targets: dict[str, Any], strategies: list[Any], *, order: list[str] | None = None,
           previous: Mapping[str, str] | None = None,
           margin_pct: float | None = None) -> tuple[dict[str, str], dict[str, Any]]:
    """Each strategy's choice among the profiled, correct targets (and the figures behind it).

    ``previous``: each strategy's last choice, by its name; ``margin_pct``: the tie margin (None:
    the selection's default for the device)."""
    from navbuild.measure.results import ProfileResult
    from navbuild.measure.selection import select as choose

    candidates = {name: (ProfileResult.from_dict(t["profile"]), bool((t["correctness"] or {}).get("passed")))
                  for name, t in targets.items() if t.get("profile")}
    if not candidates:
        return {}, {}
    selected, details = {}, {}
    for strategy in strategies:
        name = strategy if isinstance(strategy, str) else getattr(strategy, "name", None)
        selection = choose(candidates, strategy, order=order or (), previous=(previous or {}).get(name),
                           margin_pct=margin_pct)
        details[strategy] = selection.to_dict()
        if selection.target:
            selected[strategy] = selection.target
    return selected, details


def _load_selections(session: Session) -> dict[str, dict[str, str]]:
    try:
        data = json.loads((session.store.root / SELECTIONS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(m): {str(s): str(t) for s, t in v.items()} for m, v in data.items() if isinstance(v, dict)}


def _save_selections(session: Session, selections: dict[str, dict[str, str]]) -> None:
    from navbuild.engine.atomic import atomic_write

    data = json.dumps({m: s for m, s in sorted(selections.items()) if s}, sort_keys=True, indent=2) + "\n"
    path = session.store.root / SELECTIONS_FILE
    try:
        if path.read_text() == data:
            return
    except OSError:
        pass
    try:
        atomic_write(path, data.encode())
    except OSError:  # a read-only store still gives a status; the next run decides afresh
        pass


def _io_from(path: str, spec: Any) -> list[dict[str, Any]]:
    """Name, dtype and shape of each tensor of a samples or reference file: -1 on the batch axis (when
    the model has one), on every declared dynamic axis, and on every axis whose size differs between
    the samples (an output axis that follows a sequence length), so that Triton and PyTriton accept
    every size."""
    from navbuild import tensors

    samples = tensors.load(path)
    varying = dynamic_axes.varying_axes(samples)
    return [{"name": name, "dtype": str(array.dtype),
             "shape": spec.declared_shape(array.shape, name, varying.get(name, ()))}
            for name, array in samples[0].items()]


WAITS = "waits for "


def _why_missing(session: Session, name: str) -> str | None:
    """Why a target has no current build: the failure recorded under its key, the upstream target it
    waits for, or None (never built)."""
    from navbuild.engine.keys import Pending

    try:
        key, _ = session.key(name)
    except Pending as pending:
        return f"{WAITS}{pending.upstream}, which is not built"
    failure = session.store.get_failure(key)
    return str(failure.get("reason") or "failed") if failure else None


def _target(session: Session, target: Any) -> dict[str, Any]:
    rule = target.rule
    record = {"target": target.name, "format": rule.name, "precision": target.precision, "rule": rule.name,
              "rule_version": rule.version, "key": None, "digest": None, "device": target.device,
              "device_bound": rule.device_bound, "portable": not rule.device_bound, "runner": rule.runner,
              "files": {}, "dir": str(session.out_dir(target)), "status": "missing", "reason": None,
              "correctness": None, "profile": None, "metadata": {}, "timings": {}, "base": rule.base,
              "triton": rule.triton.to_dict() if rule.triton else None}
    reason = session.unmet_needs(target)
    if reason:
        record.update(status="skipped", reason=reason)
        return record
    manifest = session.current_manifest(target.name)
    if manifest is None:
        record["reason"] = _why_missing(session, target.name)
        if record["reason"] and not record["reason"].startswith(WAITS):
            record["status"] = "failed"
        return record
    session.materialize(target, manifest)
    record.update(key=manifest["key"], digest=manifest["digest"], files=dict(manifest["files"]), status="built",
                  metadata=copy.deepcopy(manifest.get("metadata", {})))
    discovered = (manifest.get("material") or {}).get("discovered")
    if isinstance(discovered, dict):  # its key's discovered sources: a package import hashes them here
        record["discovered"] = discovered
    imported = manifest.get("imported")
    if isinstance(imported, dict):  # a package's build: where from, and whether it is proven (signed)
        record["origin"] = {"imported": imported.get("package"), "package_digest": imported.get("package_digest"),
                            "signer": imported.get("signer"), "proven": bool(imported.get("signer"))}
    record["timings"]["build_s"] = manifest.get("seconds")
    check = session.current_manifest(f"{target.name}.check")
    if check is not None:
        record["correctness"] = check.get("metadata")
        record["timings"]["check_s"] = check.get("seconds")
    profile_name = f"{target.name}.profile"
    if profile_name in session.graph.targets and session.graph.targets[profile_name].kind == PROFILE:
        profile = session.current_manifest(profile_name)
        if profile is not None:
            record["profile"] = profile.get("metadata")
            record["timings"]["profile_s"] = profile.get("seconds")
    return record
