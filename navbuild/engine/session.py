"""A build session: one project, its store and graph; decides whether each target is current, and
runs the ones that are not.

doit schedules; the session answers doit's two questions per target. ``is_up_to_date`` asks the
store alone (never doit's dependency file), restoring materialized outputs on the way; ``run``
executes the target's action (``actions.execute``) under a per-key lock, so two processes never
build the same key, and records the outcome (``records``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from navbuild.engine import actions, keys
from navbuild.engine.config import ProjectConfig
from navbuild.engine.fingerprint import MachineInfo
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, Graph, Target
from navbuild.engine.outputs import Outputs
from navbuild.engine.records import BUILT, CACHED, FAILED, SKIPPED, Record, RunRecords
from navbuild.engine.registry import Registry
from navbuild.engine.store import Store, is_disk_full
from navbuild.rule import Skip

__all__ = ["Session", "Options", "Record", "BUILT", "CACHED", "SKIPPED", "FAILED"]


@dataclass
class Options:
    verbose: bool = False
    quiet: bool = False
    config_arg: str | None = None  # how the user named the config (for rebuild commands)


class Session:
    def __init__(self, project: ProjectConfig, registry: Registry, graph: Graph, options: Options | None = None):
        self.project = project
        self.registry = registry
        self.graph = graph
        self.options = options or Options()
        self.store = Store(project.store)
        self.machine = MachineInfo()
        self.keys = keys.KeyResolver(project, graph, registry, self.store)
        self.outputs = Outputs(project.out, graph, self.store, self.keys)
        self.records = RunRecords()
        self.forced: set[str] = set()  # targets that --force rebuilds even when cached
        self.workers = None  # navbuild.engine.workers.Pool, made when the first action runs
        self.built_something = False  # set by a build command: did this run change any target?

    # -- what other modules ask ---------------------------------------------------------------------
    def key(self, name: str) -> tuple[str, dict[str, Any]]:
        return self.keys.key(name)

    def current_manifest(self, name: str) -> dict[str, Any] | None:
        return self.keys.current_manifest(name)

    def forget_keys(self) -> None:
        self.keys.forget()

    def profile_config(self):
        return self.keys.profile_config()

    def out_dir(self, target: Target) -> Path:
        return self.outputs.folder(target)

    def materialize(self, target: Target, manifest: dict[str, Any]) -> None:
        self.outputs.materialize(target, manifest)

    def collect_records(self, names: list[str]) -> dict[str, Record]:
        return self.records.collect(names)

    def rebuild_command(self, name: str) -> str:
        config = f" --config {self.options.config_arg}" if self.options.config_arg else ""
        return f"navbuild{config} {name} --force --verbose"

    def unmet_needs(self, target: Target) -> str | None:
        if target.kind != ARTIFACT:
            artifact = self.graph.targets[target.artifact]
            reason = self.unmet_needs(artifact)
            if reason:
                return reason
            runner = self.registry.runner(artifact.rule.runner)
            return runner.needs.unmet(target.device, self.machine)
        reason = target.rule.needs.unmet(target.device, self.machine)
        if reason is None and target.device not in target.rule.devices:
            reason = f"{target.rule.name} does not build for device {target.device}"
        return reason

    # -- up to date ---------------------------------------------------------------------------------
    def is_up_to_date(self, name: str) -> bool:
        if name in self.forced:
            return False
        manifest = self.current_manifest(name)
        if manifest is None:
            return False
        try:
            self.materialize(self.graph.targets[name], manifest)
        except Exception:
            self.keys.drop_current(name)
            return False  # an object went bad on the way out: rebuild
        self._record_from_manifest(name, CACHED, manifest["key"], manifest)
        return True

    # -- building -----------------------------------------------------------------------------------
    def run(self, name: str) -> bool:
        """Build, check or skip one target; returns False when it failed."""
        target = self.graph.targets[name]
        started = time.perf_counter()
        reason = self.unmet_needs(target)
        if reason:
            self.records.add(Record(name, SKIPPED, reason=reason))
            return True
        try:
            key, material = self.key(name)
        except keys.Pending as pending:
            return self._upstream_unavailable(name, pending.upstream)
        try:
            with self.store.lock(key):
                manifest = self.store.get_manifest(key)
                if manifest is not None and self.store.manifest_intact(manifest) and name not in self.forced:
                    status = CACHED  # another process built it while we waited for the lock
                else:
                    manifest = {**actions.execute(self, target, key, material), "key": key}
                    status = BUILT
                self.materialize(target, manifest)
                self.keys.set_current(name, manifest)
        except Skip as skip:
            self.records.add(Record(name, SKIPPED, reason=str(skip), seconds=time.perf_counter() - started))
            return True
        except Exception as exc:  # the target fails, the build goes on
            return self._failed(target, exc, started)
        self._record_from_manifest(name, status, key, manifest, seconds=time.perf_counter() - started)
        self.store.put_target_record(name, {"key": key, "material": material, "digest": manifest["digest"],
                                            "time": time.time()})
        if target.kind == CHECK and not manifest.get("metadata", {}).get("passed", False):
            return False
        return manifest.get("status") == "ok"

    def _upstream_unavailable(self, name: str, upstream: str) -> bool:
        record = self.records.get(upstream)
        if record is not None and record.status == SKIPPED:
            self.records.add(Record(name, SKIPPED, reason=f"needs {upstream}, skipped: {record.reason}"))
            return True
        why = f"{record.status}: {record.reason}" if record else "not built"
        self.records.add(Record(name, FAILED, reason=f"needs {upstream}, which {why}"))
        return False

    def _failed(self, target: Target, exc: BaseException, started: float) -> bool:
        if is_disk_full(exc):
            reason = f"disk full while building ({exc}); free space and run again"
        else:
            reason = f"{type(exc).__name__}: {exc}".strip()
        first_line = reason.splitlines()[0] if reason else type(exc).__name__
        self.records.add(Record(target.name, FAILED, reason=first_line, seconds=time.perf_counter() - started,
                                metadata={"log": str(self.outputs.log_path(target)),
                                          "rebuild": self.rebuild_command(target.name)}))
        return False

    # -- records ----------------------------------------------------------------------------------------
    def _record_from_manifest(self, name: str, status: str, key: str, manifest: dict[str, Any],
                              seconds: float | None = None) -> None:
        target = self.graph.targets[name]
        correctness = None
        metadata = manifest.get("metadata", {})
        seconds = seconds if seconds is not None else 0.0
        if target.kind == CHECK:
            correctness = metadata
            if not metadata.get("passed", False):
                failures = metadata.get("failures") or ["correctness failed"]
                self.records.add(Record(name, FAILED, reason=failures[0], digest=manifest["digest"], key=key,
                                        seconds=seconds, correctness=correctness,
                                        metadata={"cached": status == CACHED,
                                                  "log": str(self.outputs.log_path(target))}))
                return
        kept = {"points": metadata.get("points", [])} if target.kind == PROFILE else _small(metadata)
        self.records.add(Record(name, status, digest=manifest["digest"], key=key, seconds=seconds,
                                correctness=correctness,
                                metadata={"build_seconds": manifest.get("seconds", 0.0), **kept}))

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close()
        self.store.close()


def _small(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) < 200}
