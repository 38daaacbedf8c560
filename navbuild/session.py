"""A build session: one project, its store and graph; decides, builds, checks and records targets.

doit schedules; this module does each target's work. ``is_up_to_date`` answers doit's uptodate
question from the store alone (never from doit's dependency file), restoring materialized outputs
on the way; ``run`` builds under a per-key lock so two processes never build the same key.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from navbuild import fingerprint, keys
from navbuild.config import ProjectConfig
from navbuild.graph import ARTIFACT, CHECK, PROFILE, Graph, Target
from navbuild.hashing import digest_value, tree_digest
from navbuild.registry import Registry
from navbuild.rule import BuildContext, MachineInfo, Skip
from navbuild.store import Store, atomic_write, is_disk_full, safe_name

BUILT, CACHED, SKIPPED, FAILED = "built", "cached", "skipped", "failed"
LOG_NAME = "build.log"
CHECK_FILE = "correctness.json"
PROFILE_FILE = "profile.json"
LOG_NAMES = {ARTIFACT: LOG_NAME, CHECK: "check.log", PROFILE: "profile.log"}


@dataclass
class Options:
    verbose: bool = False
    quiet: bool = False
    run_dir: Path | None = None  # where this run's records go (shared by worker processes)
    config_arg: str | None = None  # how the user named the config (for rebuild commands)


@dataclass
class Record:
    target: str
    status: str
    reason: str | None = None
    digest: str | None = None
    key: str | None = None
    seconds: float = 0.0
    correctness: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Session:
    def __init__(self, project: ProjectConfig, registry: Registry, graph: Graph, options: Options | None = None):
        self.project = project
        self.registry = registry
        self.graph = graph
        self.options = options or Options()
        self.store = Store(project.store)
        self.machine = MachineInfo()
        self.records: dict[str, Record] = {}
        self.forced: set[str] = set()  # targets that --force rebuilds even when cached
        self.built_something = False  # set by a build command: did this run change any target?
        self._keys: dict[str, tuple[str, dict[str, Any]]] = {}
        # manifests found current in this run; an absent one is looked up again (it may be built since)
        self._current: dict[str, dict[str, Any]] = {}
        self._source_digests: dict[tuple[str, ...], dict[str, str]] = {}

    # -- paths ------------------------------------------------------------------------------------
    def out_dir(self, target: Target) -> Path:
        name = target.name if target.kind == ARTIFACT else target.artifact
        model, short = name.split(":", 1)
        return self.project.out / model / short

    def rebuild_command(self, name: str) -> str:
        config = f" --config {self.options.config_arg}" if self.options.config_arg else ""
        return f"navbuild{config} {name} --force --verbose"

    # -- keys -------------------------------------------------------------------------------------
    def _sources(self, target: Target) -> dict[str, str]:
        patterns = list(target.model.sources)
        samples = target.model.samples
        samples_file = samples.rsplit(":", 1)[0] if ":" in samples else samples
        if samples_file not in patterns:
            patterns.append(samples_file)
        cache_key = tuple(patterns)
        if cache_key not in self._source_digests:
            self._source_digests[cache_key] = keys.source_digests(self.project.root, patterns, self.store.files.digest)
        return self._source_digests[cache_key]

    def current_manifest(self, name: str) -> dict[str, Any] | None:
        """The manifest of ``name``'s current key, if built and intact."""
        if name in self._current:
            return self._current[name]
        try:
            key, _ = self.key(name)
        except keys.Pending:
            return None
        manifest = self.store.get_manifest(key)
        if manifest is None or manifest.get("status") != "ok" or not self.store.manifest_intact(manifest):
            return None
        self._current[name] = manifest
        return manifest

    def _digest_of(self, name: str) -> str:
        manifest = self.current_manifest(name)
        if manifest is None:
            raise keys.Pending(name)
        return manifest["digest"]

    def key(self, name: str) -> tuple[str, dict[str, Any]]:
        if name in self._keys:
            return self._keys[name]
        target = self.graph.targets[name]
        samples_name = f"{target.spec.name}:samples"
        if target.kind == PROFILE:
            artifact = self.graph.targets[target.artifact]
            runner = self.registry.runner(artifact.rule.runner)
            material = keys.profile_material(
                target, artifact=artifact, artifact_digest=self._digest_of(artifact.name),
                samples_digest=self._digest_of(samples_name), runner=runner.name,
                runner_tools=tuple(getattr(runner, "tools", ()) or artifact.rule.tools),
                config=self.profile_config().as_key())
        elif target.kind == CHECK:
            artifact = self.graph.targets[target.artifact]
            runner = self.registry.runner(artifact.rule.runner)
            outputs = list(target.spec.outputs) or self._reference_outputs(target)
            material = keys.check_material(
                target, artifact=artifact, artifact_digest=self._digest_of(artifact.name),
                reference_digest=self._digest_of(f"{target.spec.name}:reference"),
                samples_digest=self._digest_of(samples_name), runner=runner.name,
                runner_tools=tuple(getattr(runner, "tools", ()) or artifact.rule.tools),
                tolerances=target.model.correctness.as_key(target.precision, outputs))
        else:
            samples_digest = None if name == samples_name else self._digest_of(samples_name)
            upstream_digest = self._digest_of(target.upstream) if target.upstream else None
            material = keys.artifact_material(target, sources=self._sources(target), samples_digest=samples_digest,
                                               upstream_digest=upstream_digest)
        result = (keys.key_of(material), material)
        self._keys[name] = result
        return result

    def profile_config(self):
        from navbuild.profiling import ProfileConfig

        return ProfileConfig.from_dict(self.project.profile.options)

    def _reference_outputs(self, target: Target) -> list[str]:
        manifest = self.current_manifest(f"{target.spec.name}:reference")
        return list(manifest.get("metadata", {}).get("outputs", [])) if manifest else []

    def forget_keys(self) -> None:
        self._keys.clear()
        self._current.clear()

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
            self._current.pop(name, None)
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
            self._record(Record(name, SKIPPED, reason=reason))
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
                    manifest = {**self._execute(target, key, material), "key": key}
                    status = BUILT
                self.materialize(target, manifest)
                self._current[name] = manifest
        except Skip as skip:
            self._record(Record(name, SKIPPED, reason=str(skip), seconds=time.perf_counter() - started))
            return True
        except Exception as exc:  # the target fails, the build goes on
            return self._failed(target, exc, started)
        self._record_from_manifest(name, status, key, manifest, seconds=time.perf_counter() - started)
        self.store.put_target_record(name, {"key": key, "material": material, "digest": manifest["digest"],
                                            "time": time.time()})
        if target.kind == CHECK and not manifest.get("metadata", {}).get("passed", False):
            return False
        return manifest.get("status") == "ok"

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

    def _upstream_unavailable(self, name: str, upstream: str) -> bool:
        record = self.records.get(upstream) or self._read_run_record(upstream)
        if record is not None and record.status == SKIPPED:
            self._record(Record(name, SKIPPED, reason=f"needs {upstream}, skipped: {record.reason}"))
            return True
        why = f"{record.status}: {record.reason}" if record else "not built"
        self._record(Record(name, FAILED, reason=f"needs {upstream}, which {why}"))
        return False

    def _execute(self, target: Target, key: str, material: dict[str, Any]) -> dict[str, Any]:
        scratch = self.store.scratch(safe_name(target.name) + "-")
        log = _Log(echo=self.options.verbose)
        started = time.perf_counter()
        try:
            out_dir = scratch / "out"
            out_dir.mkdir()
            with log.capture():
                log(f"navbuild: building {target.name} (key {key[:12]})")
                if target.kind == CHECK:
                    metadata = self._run_check(target, out_dir, log)
                elif target.kind == PROFILE:
                    metadata = self._run_profile(target, out_dir, log)
                else:
                    metadata = self._run_rule(target, out_dir, scratch, log)
            files = self._store_outputs(out_dir)
            digest = self._output_digest(target, out_dir, files)
            seconds = time.perf_counter() - started
            log(f"navbuild: {target.name} done in {seconds:.2f} s, digest {digest[:12]}")
            step_versions = {CHECK: keys.CHECK_VERSION, PROFILE: keys.PROFILE_VERSION}
            manifest = {"target": target.name, "rule": target.rule.name if target.rule else target.kind,
                        "rule_version": target.rule.version if target.rule else step_versions[target.kind],
                        "files": files, "digest": digest, "log": self.store.put_bytes(log.text().encode()),
                        "seconds": seconds, "created": time.time(), "metadata": _jsonable(metadata or {}),
                        "material": material, "status": "ok"}
            self.store.put_manifest(key, manifest)
            return manifest
        except Skip:
            raise
        except BaseException:
            log(traceback.format_exc())
            self._write_failure_log(target, log.text())
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _run_rule(self, target: Target, out_dir: Path, scratch: Path, log: "_Log") -> dict[str, Any] | None:
        rule = target.rule
        samples: list[dict[str, Any]] = []
        if rule.name != "samples":
            from navbuild import tensors

            samples = tensors.load(self._materialized(f"{target.spec.name}:samples") / "samples.tensors")
        cache_dir = None
        if rule.device_bound:
            cache_dir = self.store.rule_cache_dir(rule.name, digest_value(fingerprint.device(target.device)))
        params = dict(target.params)
        if rule.name == "samples":
            params["samples"] = target.model.samples
        ctx = BuildContext(model=target.spec, target=target.name, precision=target.precision, device=target.device,
                           params=params, out_dir=out_dir,
                           input_dir=self._materialized(target.upstream) if target.upstream else None,
                           samples=samples, log=log, workdir=scratch, cache_dir=cache_dir)
        return rule.build(ctx)

    def _run_check(self, target: Target, out_dir: Path, log: "_Log") -> dict[str, Any]:
        from navbuild import correctness, tensors

        artifact = self.graph.targets[target.artifact]
        runner_cls = self.registry.runner(artifact.rule.runner)
        samples = tensors.load(self._materialized(f"{target.spec.name}:samples") / "samples.tensors")
        expected = tensors.load(self._materialized(f"{target.spec.name}:reference") / "reference.tensors")
        runner = runner_cls(self._materialized(artifact.name), target.spec, artifact.device, artifact.precision)
        result = correctness.run_and_compare(
            runner, samples, expected, lambda output: target.model.correctness.tolerance(target.precision, output))
        for failure in result["failures"]:
            log(f"correctness: {failure}")
        (out_dir / CHECK_FILE).write_text(json.dumps(_jsonable(result), indent=2, sort_keys=True) + "\n")
        return result

    def _run_profile(self, target: Target, out_dir: Path, log: "_Log") -> dict[str, Any]:
        from navbuild import profiling, tensors

        check = self.current_manifest(f"{target.artifact}.check")
        if check is None or not check.get("metadata", {}).get("passed", False):
            raise Skip(f"{target.artifact} did not pass its correctness check; it is not profiled")
        artifact = self.graph.targets[target.artifact]
        runner_cls = self.registry.runner(artifact.rule.runner)
        samples = tensors.load(self._materialized(f"{target.spec.name}:samples") / "samples.tensors")
        runner = runner_cls(self._materialized(artifact.name), target.spec, artifact.device, artifact.precision)

        def progress(event: Any) -> None:
            if event.kind == "point" and event.point is not None:
                point = event.point
                log(f"profile: batch {point.batch_size}: p50 {point.p50_ms:.3f} ms, "
                    f"{point.throughput:.1f} samples/s{'' if point.stable else ' (not stable)'}")

        result = profiling.profile_runner(runner, samples[0], self.profile_config(), device=target.device,
                                          progress=progress)
        data = result.to_dict()
        (out_dir / PROFILE_FILE).write_text(json.dumps(_jsonable(data), indent=2, sort_keys=True) + "\n")
        return data

    def _store_outputs(self, out_dir: Path) -> dict[str, str]:
        files = {}
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                files[path.relative_to(out_dir).as_posix()] = self.store.put_file(path)
        if not files:
            raise RuntimeError("the rule wrote no output file")
        return files

    def _output_digest(self, target: Target, out_dir: Path, files: dict[str, str]) -> str:
        rule = target.rule
        if rule is not None and not rule.normalized and rule.canonical_digest is not None:
            return "c" + rule.canonical_digest(out_dir)[:31]
        return tree_digest(files)

    def _failed(self, target: Target, exc: BaseException, started: float) -> bool:
        if is_disk_full(exc):
            reason = f"disk full while building ({exc}); free space and run again"
        else:
            reason = f"{type(exc).__name__}: {exc}".strip()
        first_line = reason.splitlines()[0] if reason else type(exc).__name__
        log_path = self.out_dir(target) / LOG_NAMES[target.kind]
        self._record(Record(target.name, FAILED, reason=first_line, seconds=time.perf_counter() - started,
                            metadata={"log": str(log_path), "rebuild": self.rebuild_command(target.name)}))
        return False

    def _write_failure_log(self, target: Target, text: str) -> None:
        log_path = self.out_dir(target) / LOG_NAMES[target.kind]
        with contextlib.suppress(OSError):
            atomic_write(log_path, text.encode())

    # -- materialized outputs -------------------------------------------------------------------------
    def _materialized(self, name: str) -> Path:
        """The folder of an upstream target's verified files (it is current: doit ran it first)."""
        manifest = self.current_manifest(name)
        if manifest is None:
            raise keys.Pending(name)
        target = self.graph.targets[name]
        self.materialize(target, manifest)
        return self.out_dir(target)

    def materialize(self, target: Target, manifest: dict[str, Any]) -> None:
        """Copy the manifest's files out of the store where they are missing or changed."""
        folder = self.out_dir(target)
        files = dict(manifest["files"])
        if manifest.get("log"):
            files[LOG_NAMES[target.kind]] = manifest["log"]
        for relative, digest in files.items():
            dest = folder / relative
            try:
                if self.store.files.digest(dest) == digest:
                    continue
            except FileNotFoundError:
                pass
            self.store.copy_object(digest, dest)

    # -- records ----------------------------------------------------------------------------------------
    def _record_from_manifest(self, name: str, status: str, key: str, manifest: dict[str, Any],
                              seconds: float | None = None) -> None:
        target = self.graph.targets[name]
        correctness = None
        metadata = manifest.get("metadata", {})
        if target.kind == CHECK:
            correctness = metadata
            if not metadata.get("passed", False):
                failures = metadata.get("failures") or ["correctness failed"]
                self._record(Record(name, FAILED, reason=failures[0], digest=manifest["digest"], key=key,
                                    seconds=seconds if seconds is not None else 0.0, correctness=correctness,
                                    metadata={"cached": status == CACHED,
                                              "log": str(self.out_dir(target) / "check.log")}))
                return
        kept = {"points": metadata.get("points", [])} if target.kind == PROFILE else _small(metadata)
        self._record(Record(name, status, digest=manifest["digest"], key=key,
                            seconds=seconds if seconds is not None else 0.0,
                            correctness=correctness, metadata={"build_seconds": manifest.get("seconds", 0.0),
                                                               **kept}))

    def _record(self, record: Record) -> None:
        self.records[record.target] = record
        if self.options.run_dir is not None:
            with contextlib.suppress(OSError):
                atomic_write(self.options.run_dir / safe_name(record.target),
                             msgpack.packb(record.to_dict(), use_bin_type=True), durable=False)

    def _read_run_record(self, name: str) -> Record | None:
        if self.options.run_dir is None:
            return None
        try:
            data = msgpack.unpackb((self.options.run_dir / safe_name(name)).read_bytes(), raw=False)
        except (OSError, ValueError):
            return None
        return Record(**data)

    def collect_records(self, names: list[str]) -> dict[str, Record]:
        """This run's records of ``names``, including those written by worker processes."""
        found = {}
        for name in names:
            record = self._read_run_record(name) or self.records.get(name)
            if record is not None:
                found[name] = record
        return found

    def close(self) -> None:
        self.store.files.save()


def _small(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool)) and len(str(v)) < 200}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


class _Log:
    """A build's log: lines from the rule, plus whatever it prints; echoed with --verbose."""

    def __init__(self, echo: bool) -> None:
        self.buffer = io.StringIO()
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = message if message.endswith("\n") else message + "\n"
        self.buffer.write(line)
        if self.echo:
            sys.__stderr__.write(line)

    def text(self) -> str:
        return self.buffer.getvalue()

    @contextlib.contextmanager
    def capture(self):
        stream = _Tee(self.buffer, sys.__stderr__ if self.echo else None)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield


class _Tee(io.TextIOBase):
    def __init__(self, buffer: io.StringIO, echo: Any) -> None:
        self.buffer_, self.echo = buffer, echo

    def write(self, text: str) -> int:
        self.buffer_.write(text)
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()


def clear_run_dir(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def new_run_dir(store_root: Path) -> Path:
    run_dir = store_root / "tmp" / f"run-{os.getpid()}-{time.time_ns()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
