"""Running one target's action: build an artifact, check it, or profile it.

``execute`` is the one place where an action runs: in a scratch folder, with the output captured
into the target's log, its files put into the store and its manifest written under its key. The
three kinds differ only in the function that fills the output folder (``ACTIONS``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from navbuild.engine import binding, discovery, fingerprint, keys
from navbuild.engine.atomic import atomic_write
from navbuild.engine.digests import output_digest
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, REFERENCE, SAMPLES, Target
from navbuild.engine.log_cap import capped, capped_file
from navbuild.engine.outputs import CHECK_FILE, PROFILE_FILE
from navbuild.engine.progress import Progress, Say, silent
from navbuild.engine.store import safe_name
from navbuild.hashing import digest_value
from navbuild.rule import CHECK_HINT, ROLE_SAMPLES, BuildContext, Skip, repeat_file_name

if TYPE_CHECKING:
    from navbuild.engine.session import Session

STEP_VERSIONS = {CHECK: keys.CHECK_VERSION, PROFILE: keys.PROFILE_VERSION}
# What a model's reference target writes (any framework's reference rule): its outputs on every
# sample, and a second run of the source when the two differed (see measure/correctness.py).


def execute(session: Session, target: Target, key: str, material: dict[str, Any],
            log_path: Path | None = None, progress: Say | None = None) -> dict[str, Any]:
    """Run ``target``'s action in this process and store its outputs; returns the manifest written
    under ``key``. A session calls it through ``workers.execute`` (a worker process runs it there);
    ``log_path`` (a worker's) receives the log as it is written; ``progress`` hears the phases the
    action goes through (engine/progress.py)."""
    store = session.store
    scratch = store.scratch(safe_name(target.name) + "-")
    log = BuildLog(echo=session.options.verbose and log_path is None, path=log_path, progress=progress)
    started = time.perf_counter()
    recorder, recording = _recorder(session, target), None
    started_ns = time.time_ns()
    try:
        out_dir = scratch / "out"
        out_dir.mkdir()
        try:
            with log.capture(), recorder as recording:
                log(f"navbuild: building {target.name} (key {key[:12]})")
                _same_card_type(material)
                metadata = ACTIONS[target.kind](session, target, out_dir, scratch, log)
        finally:
            if recording is not None:  # a failure is recorded under the key of what it read, too
                key, material = _discovered(session, target, material, recording)
        if recording is not None:
            unchanged_since(session.project.root, material, started_ns)
        files = _store_outputs(session, target, out_dir)
        digest = output_digest(target, out_dir, files, material)
        seconds = time.perf_counter() - started
        log(f"navbuild: {target.name} done in {seconds:.2f} s, digest {digest[:12]}")
        manifest = {"target": target.name, "rule": target.rule.name if target.rule else target.kind,
                    "rule_version": target.rule.version if target.rule else STEP_VERSIONS[target.kind],
                    "files": files, "digest": digest, **binding.bytes_field(digest, files),
                    "log": store.put_bytes(log.text().encode()),
                    "seconds": seconds, "created": time.time(), "metadata": jsonable(metadata or {}),
                    "material": material, "status": "ok"}
        store.put_manifest(key, manifest)
        return {**manifest, "key": key}
    except Skip:
        raise
    except BaseException:
        log(traceback.format_exc())
        write_failure_log(session, target, log.text())
        raise
    finally:
        log.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _same_card_type(material: dict[str, Any]) -> None:
    """A key that holds a GPU names its card type; this process's card (a worker's, pinned to one)
    must be of that type, or a build for one type would be stored under another's key."""
    keyed = (material.get("device_fingerprint") or {}).get("gpu")
    if not keyed:
        return  # no GPU in the key, or NAVBUILD_DEVICE_FINGERPRINT in its place
    visible = fingerprint.gpus()
    mine = fingerprint.card_type(visible[0]) if visible else None
    if mine is None or (mine["name"], mine["capability"]) != (keyed.get("name"), keyed.get("capability")):
        seen = f"{mine['name']} ({mine['capability']})" if mine else "no GPU"
        raise RuntimeError(f"this process sees {seen}, but the key was computed for {keyed.get('name')} "
                           f"({keyed.get('capability')}): a worker is pinned to a card of another type")


def _recorder(session: Session, target: Target) -> Any:
    """Discovery's recording for an action that runs the model's code, else nothing."""
    if not keys.discovers(target):
        return contextlib.nullcontext()
    project = session.project
    return discovery.recording(project.root, discovery.excluded_folders(project.store, project.out,
                                                                        session.registry.rule_modules))


def _discovered(session: Session, target: Target, material: dict[str, Any],
                recording: discovery.Recording) -> tuple[str, dict[str, Any]]:
    """The key and material of what the action read (an export from the source adds the reference's
    list: a build in a child process is not seen here); the list is kept under the declared key."""
    found = recording.found().without(material.get("sources", {}))
    if target.rule.role is None:
        reference = session.current_manifest(f"{target.spec.name}:{REFERENCE}")
        found = found.union(discovery.found_in((reference or {}).get("material", {})) or discovery.Found())
    declared = discovery.declared(material)
    session.store.put_discovered(keys.key_of(declared), found)
    material = session.keys.with_found(target, declared, found)
    return keys.key_of(material), material


class ChangedWhileBuilding(RuntimeError):
    """A file the build read was written while it ran: its digest may not be what the build read.
    Not the target's doing: never recorded as its failure (``transient``); the next run builds it."""

    transient = True


def unchanged_since(root: Path, material: dict[str, Any], started_ns: int) -> None:
    """ccache's "too new" rule: a discovered file modified after the build started is refused, for
    the key would hold its new digest beside an output built from what it held before. (A time in
    the future says nothing of this build: a clock skew or an unpacked archive.)"""
    now = time.time_ns()
    for relative in (material.get("discovered") or {}).get("sources") or {}:
        with contextlib.suppress(OSError):
            if started_ns < (root / relative).stat().st_mtime_ns <= now:
                raise ChangedWhileBuilding(f"{relative} changed while the target was building; run the build again")


def write_failure_log(session: Session, target: Target, text: str) -> None:
    """The log of a failed action where the user looks for it (``navbuild-out/.../build.log``)."""
    with contextlib.suppress(OSError):
        session.outputs.own(session.outputs.folder(target))
        atomic_write(session.outputs.log_path(target), capped(text).encode(errors="replace"))


# -- the three kinds of action ------------------------------------------------------------------
def build_artifact(session: Session, target: Target, out_dir: Path, scratch: Path,
                   log: BuildLog) -> dict[str, Any] | None:
    rule = target.rule
    samples: list[dict[str, Any]] = []
    if rule.role != ROLE_SAMPLES:
        samples = _samples(session, target)
    cache_dir = _cache_dir(session, target)
    params = dict(target.params)
    if rule.role == ROLE_SAMPLES:
        params["samples"] = target.model.samples
    ctx = BuildContext(model=target.spec, target=target.name, precision=target.precision, device=target.device,
                       params=params, out_dir=out_dir,
                       input_dir=session.outputs.materialized(target.upstream) if target.upstream else None,
                       samples=samples, log=log, workdir=scratch, cache_dir=cache_dir,
                       engine_values=dict(target.engine_values), progress=log.phase)
    return rule.build(ctx)


def check_artifact(session: Session, target: Target, out_dir: Path, scratch: Path, log: BuildLog) -> dict[str, Any]:
    from navbuild import tensors
    from navbuild.measure import correctness, coverage

    runner = _runner(session, target)
    reference = session.graph.targets[f"{target.spec.name}:{REFERENCE}"]
    folder = session.outputs.materialized(reference.name)
    repeat_path = folder / repeat_file_name(reference.tensor_file)  # a second run of the source, when it differed
    samples = _samples(session, target)
    buckets = runner.served_batch_sizes()
    cases, expected = coverage.check_cases(samples, tensors.load(folder / reference.tensor_file), buckets,
                                           target.spec.batch_dim)
    repeat = None
    if repeat_path.is_file():
        _, repeat = coverage.check_cases(samples, tensors.load(repeat_path), buckets, target.spec.batch_dim)
    result = correctness.run_and_compare(
        runner, cases, expected, lambda output: target.model.correctness.tolerance(target.precision, output),
        repeat=repeat)
    hint = (session.current_manifest(target.artifact) or {}).get("metadata", {}).get(CHECK_HINT)
    if hint and result["failures"] and result.get("source_deterministic", True):
        result["failures"][0] += f"; {hint}"
    if len(cases) > len(samples):
        result["bucket_cases"] = [coverage.batch_size(case, target.spec.batch_dim) for case in cases[len(samples):]]
    if result.get("source_deterministic", True):  # else the runner never ran
        result["runner_info"] = runner.runtime_info()
    for failure in result["failures"]:
        log(f"correctness: {failure}")
    # the file is the check's output, digested: what describes this one run (seconds, compile counts)
    # stays in the manifest's metadata, so the same check of the same artifact gives the same digest
    written = {**result, "runner_info": of_the_artifact(result["runner_info"])} if "runner_info" in result else result
    (out_dir / CHECK_FILE).write_text(json.dumps(jsonable(written), indent=2, sort_keys=True) + "\n")
    return result


def of_the_artifact(runner_info: dict[str, Any]) -> dict[str, Any]:
    """``runner_info`` without what measures one run: keys ending in ``_seconds`` or starting with
    ``graphs_`` (a compile's time, graphs compiled or loaded from the cache)."""
    return {k: v for k, v in runner_info.items() if not (k.endswith("_seconds") or k.startswith("graphs_"))}


def profile_artifact(session: Session, target: Target, out_dir: Path, scratch: Path,
                     log: BuildLog) -> dict[str, Any]:
    from navbuild.measure import axis_sweep, coverage, profiling

    check = session.current_manifest(f"{target.artifact}.check")
    if check is None or not check.get("metadata", {}).get("passed", False):
        raise Skip(f"{target.artifact} did not pass its correctness check; it is not profiled")
    runner = _runner(session, target)

    def phase(event: Any) -> None:  # what the console shows while the profile runs
        if event.kind == "start" and event.batch_size is not None:
            of = f", {event.step + 1} of {event.total}" if event.total > 1 else ""
            log.phase("profiling", f"batch {event.batch_size}{of}")
        elif event.kind == "search" and event.batch_size is not None:
            log.phase("profiling", f"largest batch that fits: trying {event.batch_size}")

    def progress(event: Any) -> None:
        phase(event)
        if event.kind == "point" and event.point is not None:
            point = event.point
            log(f"profile: batch {point.batch_size}: p50 {point.p50_ms:.3f} ms, "
                f"{point.throughput:.1f} samples/s ±{point.spread_pct:.0f}%"
                + (f" ({point.note})" if point.note else ""))

    # the buckets a runner serves are measured too, under the same budget and window sizing
    config = coverage.profile_config(session.project.profile.measure, runner.served_batch_sizes(),
                                     target.spec.max_batch_size)
    samples = _samples(session, target)
    sizes, size_notes = axis_sweep.planned(config, target.spec, samples)  # [profile] axis_sizes
    config = axis_sweep.shared_budget(config, target.device, 1 + len(sizes))
    runner.activate()  # once for the sample's shape and every swept size
    try:
        # what it measures depends on its key alone: it reads no other target's figures
        result = profiling.profile_runner(runner, samples[0], config, device=target.device, progress=progress)
        swept = axis_sweep.sweep(lambda sample, each: profiling.profile_runner(runner, sample, each,
                                                                               device=target.device,
                                                                               progress=phase),
                                 target.spec, samples, sizes, config, log)
    finally:
        runner.deactivate()
    result.notes.extend(size_notes)
    for note in result.notes:
        log(f"profile: {note}")
    data = {**result.to_dict(), "runner_info": runner.runtime_info(), **({"axis_sweep": swept} if swept else {})}
    (out_dir / PROFILE_FILE).write_text(json.dumps(jsonable(data), indent=2, sort_keys=True) + "\n")
    return data


ACTIONS: dict[str, Callable[..., dict[str, Any] | None]] = {
    ARTIFACT: build_artifact, CHECK: check_artifact, PROFILE: profile_artifact}


def _samples(session: Session, target: Target) -> list[dict[str, Any]]:
    return _role_tensors(session, target, SAMPLES)


def _role_tensors(session: Session, target: Target, role: str) -> list[dict[str, Any]]:
    """The tensors file of the model's samples or reference target, as its rule declares it."""
    from navbuild import tensors

    role_target = session.graph.targets[f"{target.spec.name}:{role}"]
    return tensors.load(session.outputs.materialized(role_target.name) / role_target.tensor_file)


def _runner(session: Session, target: Target) -> Any:
    """The runner of the artifact that ``target`` checks or profiles, not yet activated; it gets the
    rule's cache folder, so it reuses what the build compiled.

    A model that declares no outputs gets the reference's output names (the keys of what its forward
    returns, or ``output__<i>``), so that a runner whose artifact returns a tuple names them the same.
    """
    artifact = session.graph.targets[target.artifact]
    runner_cls = session.registry.runner(artifact.rule.runner)
    spec = target.spec
    if not spec.outputs:
        spec = dataclasses.replace(spec, outputs=tuple(session.keys.reference_outputs(target)))
    runner = runner_cls(session.outputs.materialized(artifact.name), spec, artifact.device, artifact.precision)
    runner.cache_dir = _cache_dir(session, artifact)
    return runner


def _cache_dir(session: Session, artifact: Target) -> Path | None:
    """The persistent cache folder of a device-bound rule on this device (None for portable rules)."""
    if not artifact.rule.device_bound:
        return None
    return session.store.rule_cache_dir(artifact.rule.name, digest_value(fingerprint.device(artifact.device)))


# -- outputs ------------------------------------------------------------------------------------
def _store_outputs(session: Session, target: Target, out_dir: Path) -> dict[str, str]:
    paths = {path.relative_to(out_dir).as_posix(): path for path in sorted(out_dir.rglob("*")) if path.is_file()}
    if not paths:
        raise RuntimeError("the rule wrote no output file")
    undeclared = target.rule.undeclared_outputs(list(paths)) if target.rule else []
    if undeclared:  # the Triton writer and the roles trust the declaration: hold the rule to it
        raise RuntimeError(f"rule {target.rule.name} wrote {', '.join(undeclared)}, which its outputs "
                           f"({', '.join(target.rule.outputs)}) do not declare")
    return {name: session.store.put_file(path) for name, path in paths.items()}


def jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


# -- logs ---------------------------------------------------------------------------------------
class BuildLog:
    """A build's log: lines from the rule, plus whatever it prints; echoed with --verbose.

    With a ``path`` (in a worker process) the log is that file, and while capturing, file
    descriptors 1 and 2 point at it too, so that native output (a C++ abort message, the
    faulthandler traceback of a segfault) lands in the log that the parent keeps."""

    def __init__(self, echo: bool, path: Path | None = None, progress: Say | None = None) -> None:
        self.echo = echo
        self.path = path
        self.progress = progress or silent
        self.buffer = io.StringIO()
        self.file = open(path, "a", buffering=1, encoding="utf-8", errors="replace") if path else None

    def __call__(self, message: str) -> None:
        line = message if message.endswith("\n") else message + "\n"
        (self.file or self.buffer).write(line)
        if self.echo:
            sys.__stderr__.write(line)

    def phase(self, phase: str, detail: str = "") -> None:
        """Say what the action does now (``BuildContext.progress``): the console shows it while the
        target runs; the log keeps only what the rule logs."""
        self.progress(Progress(phase, detail))

    def text(self) -> str:
        """The log as the store keeps it: capped (``capped``), its head and tail kept."""
        if self.file is None:
            return capped(self.buffer.getvalue())
        self.file.flush()
        return capped_file(Path(self.path))

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
