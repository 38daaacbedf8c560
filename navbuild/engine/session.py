"""A build session: one project, its store and graph; decides whether each target is current, and
settles one that is not.

The scheduler (``engine/scheduler.py``) asks the session two questions per target:
``is_up_to_date`` asks the store alone, restoring materialized outputs on the way; ``run`` replays
a failure recorded under the target's key, or restores it from the remote cache, or has the
caller's ``act`` run its action, all under the key's lock (two processes never build one key),
and records the outcome (``records``). Where and how an action runs (a worker process, this
process, a Ray node) is the scheduler's executors' business, not the session's.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable

from navbuild.engine import discovery, keys
from navbuild.engine.atomic import atomic_write
from navbuild.engine.config import ProjectConfig
from navbuild.engine.fingerprint import MachineInfo
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, Graph, Target
from navbuild.engine.options import Options
from navbuild.engine.outputs import Outputs
from navbuild.engine.records import (BUILT, CACHED, FAILED, IMPORTED, REMOTE, SKIPPED, Record, RunRecords,
                                     origin_text)
from navbuild.engine.registry import Registry
from navbuild.engine.remote import RemoteCache
from navbuild.engine.store import Store, is_disk_full
from navbuild.rule import Skip, tf32_enabled, tf32_unmet

LOG_KEPT_BYTES = 1 << 20  # the tail of a failed build's log kept in its failure record
# runs a target's action wherever its executor runs actions; returns the manifest stored under the key
Act = Callable[[Target, str, dict[str, Any]], dict[str, Any]]


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
        self.built_something = False  # set by a build command: did this run change any target?
        self.gpu_present = False  # how "auto" devices were resolved (project.py sets it; workers take it)
        remote = project.remote.with_overrides(self.options.remote_cache, self.options.remote_read_only)
        self.remote = RemoteCache(remote) if remote.url else None

    # -- what other modules ask ---------------------------------------------------------------------
    def key(self, name: str) -> tuple[str, dict[str, Any]]:
        return self.keys.key(name)

    def current_manifest(self, name: str) -> dict[str, Any] | None:
        return self.keys.current_manifest(name)

    def forget_keys(self) -> None:
        self.keys.forget()

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
        if reason is None and tf32_enabled(target.precision):
            reason = tf32_unmet(target.precision, target.device, self.machine.cuda_capability())
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
    def run(self, name: str, act: Act | None) -> bool:
        """Build, check or skip one target; returns False when it failed. ``act`` runs the action
        when neither the store nor the remote cache has it; None: restore only (never run one)."""
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
        if name not in self.forced and not self.options.retry_failed:
            failure = self.store.get_failure(key)
            if failure is not None:
                return self._failed_before(target, failure)
        origin = None
        try:
            with self.store.lock(key):
                key, material, manifest = self._stored(name, key, material)
                if manifest is not None and name not in self.forced and self.keys.acceptable(name, manifest):
                    status = CACHED  # another process built it while we waited for the lock
                elif name not in self.forced and (manifest := self._restore(target, key, material)) is not None:
                    status, origin = CACHED, REMOTE
                elif act is None:
                    raise Skip("not in the store nor in the remote cache (restore only)")
                else:
                    manifest = {"key": key, **act(target, key, material)}
                    status = BUILT
                # the key of what the build (or the cache's) read, when it differs from the one guessed
                key, material = manifest["key"], manifest.get("material", material)
                self.keys.set_key(name, key, material)
                self.materialize(target, manifest)
                self.keys.set_current(name, manifest)
            if status == BUILT and self.remote is not None:
                self.remote.publish(self.store, target, key, manifest)
        except Skip as skip:
            self.records.add(Record(name, SKIPPED, reason=str(skip), seconds=time.perf_counter() - started))
            return True
        except Exception as exc:  # the target fails, the build goes on
            return self._failed(target, exc, started, self._key_after_failure(name, key))
        if status == BUILT:
            self.store.drop_failure(key)  # a retry that succeeded
        self._record_from_manifest(name, status, key, manifest, seconds=time.perf_counter() - started,
                                   origin=origin)
        self.store.put_target_record(name, {"key": key, "material": material, "digest": manifest["digest"],
                                            "time": time.time()})
        if target.kind == CHECK and not manifest.get("metadata", {}).get("passed", False):
            return False
        return manifest.get("status") == "ok"

    def _stored(self, name: str, key: str, material: dict[str, Any]) -> tuple[str, dict[str, Any], Any]:
        """The key, material and stored manifest of ``name`` once its key's lock is held: another
        process may have built it meanwhile, under the key of the sources it discovered (the key
        guessed before its first build holds none)."""
        manifest = self.store.get_manifest(key)
        if manifest is not None or not keys.discovers(self.graph.targets[name]):
            return key, material, manifest
        self.keys.forget_target(name)
        key, material = self.key(name)
        return key, material, self.store.get_manifest(key)

    def _restore(self, target: Target, key: str, material: dict[str, Any]) -> dict[str, Any] | None:
        """The remote cache's build of ``key``, when it has one that the lock does not contradict."""
        if self.remote is None:
            return None
        declared = discovery.declared(material)
        manifest = self.remote.restore(self.store, target, key, material,
                                       rekey=lambda found: self.keys.with_found(target, declared, found))
        if manifest is not None and not self.keys.acceptable(target.name, manifest):
            self.store.drop_manifest(manifest["key"])
            return None
        return manifest

    def _key_after_failure(self, name: str, key: str) -> str:
        """The key a failure is kept under: the one of what the failed build read (the action stored
        its discovered list before it failed), so editing a file it read runs it again."""
        if not keys.discovers(self.graph.targets[name]):
            return key
        self.keys.forget_target(name)
        try:
            return self.key(name)[0]
        except keys.Pending:
            return key

    def _upstream_unavailable(self, name: str, upstream: str) -> bool:
        record = self.records.get(upstream)
        if record is not None and record.status == SKIPPED:
            self.records.add(Record(name, SKIPPED, reason=f"needs {upstream}, skipped: {record.reason}"))
            return True
        why = f"{record.status}: {record.reason}" if record else "not built"
        self.records.add(Record(name, FAILED, reason=f"needs {upstream}, which {why}"))
        return False

    def _failed(self, target: Target, exc: BaseException, started: float, key: str | None = None) -> bool:
        # not the target's doing: a full disk, no memory, or no worker process that could start
        transient = is_disk_full(exc) or isinstance(exc, MemoryError) or getattr(exc, "transient", False)
        if is_disk_full(exc):
            reason = f"disk full while building ({exc}); free space and run again"
        else:
            reason = f"{type(exc).__name__}: {exc}".strip()
        first_line = reason.splitlines()[0] if reason else type(exc).__name__
        if key is not None and not transient:
            self._record_failure(target, key, first_line)
        self.records.add(Record(target.name, FAILED, reason=first_line, seconds=time.perf_counter() - started,
                                metadata={"log": str(self.outputs.log_path(target)),
                                          "rebuild": self.rebuild_command(target.name)}))
        return False

    # -- failure records: the same key fails again at once, with its log ---------------------------------
    def _record_failure(self, target: Target, key: str, reason: str) -> None:
        """Keep the failure under its key, with the log that the action left (in this process or a worker)."""
        try:
            log = self.outputs.log_path(target).read_bytes()[-LOG_KEPT_BYTES:]
        except OSError:
            log = b""
        with contextlib.suppress(OSError):
            self.store.put_failure(key, {"target": target.name, "reason": reason, "log": log, "time": time.time()})

    def _failed_before(self, target: Target, failure: dict[str, Any]) -> bool:
        log_path = self.outputs.log_path(target)
        if failure.get("log"):
            with contextlib.suppress(OSError):
                atomic_write(log_path, failure["log"], durable=False)
        reason = f"{failure.get('reason', 'failed')} (failed before with the same inputs; not run again, " \
                 f"--retry-failed, or retry_failed=True from Python, runs it)"
        self.records.add(Record(target.name, FAILED, reason=reason,
                                metadata={"log": str(log_path), "rebuild": self.rebuild_command(target.name),
                                          "failed_before": failure.get("time")}))
        return False

    # -- records ----------------------------------------------------------------------------------------
    def _record_from_manifest(self, name: str, status: str, key: str, manifest: dict[str, Any],
                              seconds: float | None = None, origin: str | None = None) -> None:
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
                                                  "log": str(self.outputs.log_path(target))}, origin=origin))
                return
        kept = _profile_kept(metadata) if target.kind == PROFILE else _small(metadata)
        reason = None
        if status == CACHED and isinstance(manifest.get("imported"), dict):  # not this project's build
            origin, imported = IMPORTED, manifest["imported"]
            kept["imported"] = origin_text(imported)
            reason = f"from {kept['imported']}" + ("" if imported.get("signer") else
                                                   f"; not proven: `navbuild verify {name}` rebuilds it here")
        self.records.add(Record(name, status, reason=reason, digest=manifest["digest"], key=key, seconds=seconds,
                                correctness=correctness, origin=origin,
                                metadata={"build_seconds": manifest.get("seconds", 0.0), **kept}))

    def describe(self) -> dict[str, Any]:
        """What a worker process needs to open this project (``project.open_described``): plain data,
        no file required."""
        return {"config": self.project.mapping, "root": str(self.project.root), "label": str(self.project.path),
                "store": str(self.project.store), "out": str(self.project.out),  # as used: verify's scratch
                "rule_modules": list(self.registry.rule_modules), "gpu_present": self.gpu_present,
                "options": {"verbose": self.options.verbose, "config_arg": self.options.config_arg,
                            "retry_failed": self.options.retry_failed}}

    def close(self) -> None:
        self.store.close()


def _profile_kept(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a profile's record keeps: its points, and the spread its figures had to stay within."""
    bound = (metadata.get("config") or {}).get("stability_pct")
    return {"points": metadata.get("points", []), **({"stability_pct": bound} if bound is not None else {})}


def _small(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) < 200}
