"""Running one target's action: build an artifact, check it, or profile it.

``execute`` is the one place where an action runs: in a scratch folder, with the output captured
into the target's log, its files put into the store and its manifest written under its key. The
three kinds differ only in the function that fills the output folder (``ACTIONS``).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from navbuild.engine import fingerprint, keys
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, Target
from navbuild.engine.outputs import CHECK_FILE, PROFILE_FILE
from navbuild.engine.store import atomic_write, safe_name
from navbuild.hashing import digest_value, tree_digest
from navbuild.rule import BuildContext, Skip

if TYPE_CHECKING:
    from navbuild.engine.session import Session

STEP_VERSIONS = {CHECK: keys.CHECK_VERSION, PROFILE: keys.PROFILE_VERSION}


def execute(session: Session, target: Target, key: str, material: dict[str, Any]) -> dict[str, Any]:
    """Run ``target``'s action and store its outputs; returns the manifest written under ``key``.

    User code runs in a worker process (``workers``) unless ``NAVBUILD_IN_PROCESS=1``, so that a
    crash, a hang or an abort in it is this target's failure and not the build's end."""
    from navbuild.engine import workers

    if workers.isolated():
        return workers.pool(session).execute(target, key, material)
    return run_action(session, target, key, material)


def run_action(session: Session, target: Target, key: str, material: dict[str, Any],
               log_path: Path | None = None) -> dict[str, Any]:
    """``execute`` in this process; ``log_path`` (a worker's) receives the log as it is written."""
    store = session.store
    scratch = store.scratch(safe_name(target.name) + "-")
    log = BuildLog(echo=session.options.verbose and log_path is None, path=log_path)
    started = time.perf_counter()
    try:
        out_dir = scratch / "out"
        out_dir.mkdir()
        with log.capture():
            log(f"navbuild: building {target.name} (key {key[:12]})")
            metadata = ACTIONS[target.kind](session, target, out_dir, scratch, log)
        files = _store_outputs(session, out_dir)
        digest = _output_digest(target, out_dir, files)
        seconds = time.perf_counter() - started
        log(f"navbuild: {target.name} done in {seconds:.2f} s, digest {digest[:12]}")
        manifest = {"target": target.name, "rule": target.rule.name if target.rule else target.kind,
                    "rule_version": target.rule.version if target.rule else STEP_VERSIONS[target.kind],
                    "files": files, "digest": digest, "log": store.put_bytes(log.text().encode()),
                    "seconds": seconds, "created": time.time(), "metadata": jsonable(metadata or {}),
                    "material": material, "status": "ok"}
        store.put_manifest(key, manifest)
        return manifest
    except Skip:
        raise
    except BaseException:
        log(traceback.format_exc())
        write_failure_log(session, target, log.text())
        raise
    finally:
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


def write_failure_log(session: Session, target: Target, text: str) -> None:
    """The log of a failed action where the user looks for it (``navbuild-out/.../build.log``)."""
    with contextlib.suppress(OSError):
        atomic_write(session.outputs.log_path(target), text.encode(errors="replace"))


# -- the three kinds of action ------------------------------------------------------------------
def build_artifact(session: Session, target: Target, out_dir: Path, scratch: Path,
                   log: BuildLog) -> dict[str, Any] | None:
    rule = target.rule
    samples: list[dict[str, Any]] = []
    if rule.name != "samples":
        samples = _samples(session, target)
    cache_dir = None
    if rule.device_bound:
        cache_dir = session.store.rule_cache_dir(rule.name, digest_value(fingerprint.device(target.device)))
    params = dict(target.params)
    if rule.name == "samples":
        params["samples"] = target.model.samples
    ctx = BuildContext(model=target.spec, target=target.name, precision=target.precision, device=target.device,
                       params=params, out_dir=out_dir,
                       input_dir=session.outputs.materialized(target.upstream) if target.upstream else None,
                       samples=samples, log=log, workdir=scratch, cache_dir=cache_dir)
    return rule.build(ctx)


def check_artifact(session: Session, target: Target, out_dir: Path, scratch: Path, log: BuildLog) -> dict[str, Any]:
    from navbuild import tensors
    from navbuild.measure import correctness

    runner = _runner(session, target)
    expected = tensors.load(session.outputs.materialized(f"{target.spec.name}:reference") / "reference.tensors")
    result = correctness.run_and_compare(
        runner, _samples(session, target), expected,
        lambda output: target.model.correctness.tolerance(target.precision, output))
    for failure in result["failures"]:
        log(f"correctness: {failure}")
    (out_dir / CHECK_FILE).write_text(json.dumps(jsonable(result), indent=2, sort_keys=True) + "\n")
    return result


def profile_artifact(session: Session, target: Target, out_dir: Path, scratch: Path,
                     log: BuildLog) -> dict[str, Any]:
    from navbuild.measure import profiling

    check = session.current_manifest(f"{target.artifact}.check")
    if check is None or not check.get("metadata", {}).get("passed", False):
        raise Skip(f"{target.artifact} did not pass its correctness check; it is not profiled")
    runner = _runner(session, target)

    def progress(event: Any) -> None:
        if event.kind == "point" and event.point is not None:
            point = event.point
            log(f"profile: batch {point.batch_size}: p50 {point.p50_ms:.3f} ms, "
                f"{point.throughput:.1f} samples/s{'' if point.stable else ' (not stable)'}")

    result = profiling.profile_runner(runner, _samples(session, target)[0], session.profile_config(),
                                      device=target.device, progress=progress)
    data = result.to_dict()
    (out_dir / PROFILE_FILE).write_text(json.dumps(jsonable(data), indent=2, sort_keys=True) + "\n")
    return data


ACTIONS: dict[str, Callable[..., dict[str, Any] | None]] = {
    ARTIFACT: build_artifact, CHECK: check_artifact, PROFILE: profile_artifact}


def _samples(session: Session, target: Target) -> list[dict[str, Any]]:
    from navbuild import tensors

    return tensors.load(session.outputs.materialized(f"{target.spec.name}:samples") / "samples.tensors")


def _runner(session: Session, target: Target) -> Any:
    """The runner of the artifact that ``target`` checks or profiles, not yet activated."""
    artifact = session.graph.targets[target.artifact]
    runner_cls = session.registry.runner(artifact.rule.runner)
    return runner_cls(session.outputs.materialized(artifact.name), target.spec, artifact.device, artifact.precision)


# -- outputs ------------------------------------------------------------------------------------
def _store_outputs(session: Session, out_dir: Path) -> dict[str, str]:
    files = {}
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            files[path.relative_to(out_dir).as_posix()] = session.store.put_file(path)
    if not files:
        raise RuntimeError("the rule wrote no output file")
    return files


def _output_digest(target: Target, out_dir: Path, files: dict[str, str]) -> str:
    rule = target.rule
    if rule is not None and not rule.normalized and rule.canonical_digest is not None:
        return "c" + rule.canonical_digest(out_dir)[:31]
    return tree_digest(files)


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


# -- logs ---------------------------------------------------------------------------------------
class BuildLog:
    """A build's log: lines from the rule, plus whatever it prints; echoed with --verbose.

    With a ``path`` (in a worker process) the log is that file, and while capturing, file
    descriptors 1 and 2 point at it too, so that native output (a C++ abort message, the
    faulthandler traceback of a segfault) lands in the log that the parent keeps."""

    def __init__(self, echo: bool, path: Path | None = None) -> None:
        self.echo = echo
        self.path = path
        self.buffer = io.StringIO()
        self.file = open(path, "a", buffering=1, encoding="utf-8", errors="replace") if path else None

    def __call__(self, message: str) -> None:
        line = message if message.endswith("\n") else message + "\n"
        (self.file or self.buffer).write(line)
        if self.echo:
            sys.__stderr__.write(line)

    def text(self) -> str:
        if self.file is None:
            return self.buffer.getvalue()
        self.file.flush()
        return Path(self.path).read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    @contextlib.contextmanager
    def capture(self):
        if self.file is not None:
            with _descriptors_to(self.file), contextlib.redirect_stdout(self.file), \
                    contextlib.redirect_stderr(self.file):
                yield
            return
        stream = _Tee(self.buffer, sys.__stderr__ if self.echo else None)
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield


@contextlib.contextmanager
def _descriptors_to(file: Any):
    """File descriptors 1 and 2 pointed at ``file`` for a while (native writes included)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(file.fileno(), 1)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        file.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


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
