"""The one scheduler (engine/scheduler.py): what its listeners hear, the failed-dependency rule, the
lock it writes, and the faces that reach it. A toy numpy family registered by code (its actions run
in this process), so each build takes milliseconds."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from navbuild.engine import lockfile
from navbuild.engine.config import load
from navbuild.engine.graph import build_graph
from navbuild.engine.records import BUILT, CACHED, FAILED, SKIPPED, Record
from navbuild.engine.scheduler import FINISHED, PROGRESS, QUEUED, STARTED, Scheduler
from navbuild.engine.session import Session
from tests.e2e.tiny import make_tiny_project
from tests.test_rule_declarations import CONFIG, MODEL, registry

# profiles on, as short as a profile can be: the rule about profiles of failed artifacts needs them
PROFILED = CONFIG.replace("enabled = false", "batch_sizes = [1]\nbudget_s = 0.05\nwarmup_runs = 1\n"
                                                "min_trials = 1\nmax_trials = 1\nstabilization_windows = 1")


def open_session(root: Path, formats: str = '["scaled", "untidy"]') -> Session:
    (root / "model.py").write_text(MODEL)
    (root / "navbuild.toml").write_text(PROFILED.format(formats=formats))
    reg = registry()
    project = load(root / "navbuild.toml", reg.formats)
    return Session(project, reg, build_graph(project, reg))


def heard(session: Session, selected: list[str], **options) -> tuple[dict, list]:
    events = []
    records = Scheduler(session, listeners=[events.append], **options).build(selected)
    return records, events


def test_listeners_hear_each_target_queued_started_and_finished_once(tmp_path):
    session = open_session(tmp_path)
    records, events = heard(session, ["m:scaled.profile", "m:untidy.profile"])
    assert list(records) == session.graph.closure(["m:scaled.profile", "m:untidy.profile"])
    finished = [e.target for e in events if e.kind == FINISHED]
    assert sorted(finished) == sorted(records)  # every target of the closure, once
    for name in ("m:samples", "m:reference", "m:scaled", "m:scaled.check", "m:scaled.profile"):
        kinds = [e.kind for e in events if e.target == name and e.kind != PROGRESS]
        assert kinds == [QUEUED, STARTED, FINISHED], (name, kinds)
        assert records[name].status == BUILT, records[name]
    # between its start and its end, the profile said which batch size it measured
    said = [e for e in events if e.target == "m:scaled.profile" and e.kind == PROGRESS]
    assert [(e.progress.phase, e.progress.detail) for e in said] == [("profiling", "batch 1")]
    started = next(e for e in events if e.kind == STARTED and e.target == "m:scaled.profile")
    assert started.grant.gpu is None and started.grant.waited >= 0.0
    # a dependency failed: not run (a profile: not profiled), heard as finished only
    assert records["m:untidy"].status == FAILED
    assert (records["m:untidy.check"].status, records["m:untidy.check"].reason) == (FAILED, "not run: m:untidy failed")
    profile = records["m:untidy.profile"]
    assert profile.status == SKIPPED and profile.reason == "not profiled: m:untidy, m:untidy.check failed"
    assert [e.kind for e in events if e.target == "m:untidy.check"] == [FINISHED]

    session = open_session(tmp_path)  # the next run: what is current is only heard as finished
    again, events = heard(session, ["m:scaled.profile"])
    assert {r.status for r in again.values()} == {CACHED}
    assert {e.kind for e in events} == {FINISHED}


def test_the_lock_is_written_from_the_records_the_run_returns(tmp_path):
    session = open_session(tmp_path, '["scaled"]')
    lock = tmp_path / "navbuild.lock"
    records, _ = heard(session, session.graph.resolve(["m"]), lock=lock)
    entries = lockfile.read(lock)
    assert entries["m:scaled"].key == records["m:scaled"].key
    assert entries["m:scaled.check"].digest == records["m:scaled.check"].digest
    assert "m:scaled.profile" not in entries  # timings are never locked
    records, _ = heard(open_session(tmp_path, '["scaled"]'), ["m:samples"])  # no lock given: none written
    assert lockfile.read(lock) == entries


def test_a_partial_lock_keeps_the_models_the_run_does_not_know(tmp_path):
    session = open_session(tmp_path, '["scaled"]')
    lock = tmp_path / "api.lock"
    other = lockfile.LockEntry("other:onnx", "onnx", "k" * 32, "d" * 32)
    stale = lockfile.LockEntry("m:gone", "gone", "k" * 32, "d" * 32)
    lock.write_text(lockfile.render([other, stale]))
    heard(session, ["m:scaled"], lock=lock, partial_lock=True)
    entries = lockfile.read(lock)
    assert entries["other:onnx"] == other and "m:gone" not in entries and "m:scaled" in entries


def test_navbuild_builds_without_doit(tmp_path):
    """The CLI reaches the scheduler directly: a build imports no doit (dodo.py does)."""
    make_tiny_project(tmp_path)
    code = ("import sys\nfrom navbuild.cli import main\ncode = main(['-q', 'mlp:samples'])\n"
            "assert code == 0, code\nassert not any(m == 'doit' or m.startswith('doit.') for m in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_plain_doit_builds_through_the_scheduler_and_writes_the_lock(tmp_path):
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from navbuild.engine import doit_glue

    session = open_session(tmp_path, '["scaled"]')
    namespace = {"task_navbuild": lambda: doit_glue.task_dicts(session),
                 "DOIT_CONFIG": {"backend": "navbuild-null", "dep_file": str(tmp_path / "doit-null"),
                                 "verbosity": 0}}
    extra = {"BACKEND": {"navbuild-null": "navbuild.engine.doit_glue:NullBackend"}}
    assert DoitMain(ModuleTaskLoader(namespace), config_filenames=(), extra_config=extra).run(["m:scaled"]) == 0
    assert session.records.get("m:scaled").status == BUILT
    assert lockfile.read(tmp_path / "navbuild.lock")["m:scaled"].key == session.records.get("m:scaled").key


def test_a_record_gives_the_time_its_target_ran_apart_from_the_time_it_waited(tmp_path):
    """A profile kept waiting by the profile lock (here: a build holding the machine for a second
    after the profile was queued): its record says it waited that second and ran for less; the run's
    wall time, split by what ran, adds up."""
    import threading

    from navbuild.view.summary import OWN_WORK, wall_split

    from navbuild.engine.scheduler import LocalExecutor
    from navbuild.engine.slots import Slots

    session = open_session(tmp_path, '["scaled"]')
    executor = LocalExecutor()
    executor.slots = Slots()  # laid out before the build, so that the test holds it first
    scheduler = Scheduler(session, executor)
    building = executor.slots.measuring.shared()  # as a build running beside it would
    building.__enter__()

    def release_later(event) -> None:
        if event.kind == QUEUED and event.target == "m:scaled.profile":
            threading.Timer(1.0, building.__exit__, (None, None, None)).start()

    scheduler.listeners.append(release_later)
    records = scheduler.build(["m:scaled.profile"])
    profile = records["m:scaled.profile"]
    assert profile.status == BUILT
    assert profile.waits["slots"] >= 0.9, profile.waits  # the profile lock
    assert profile.waited == pytest.approx(profile.waits["executor"] + profile.waits["slots"], abs=1e-9)  # both rounded
    assert profile.seconds < profile.waits["slots"], (profile.seconds, profile.waits)  # its run, without the wait
    assert profile.started_at >= profile.waits["dependencies"] + profile.waits["slots"] - 0.01
    assert profile.waits["dependencies"] > 0  # it waited for its artifact and check first
    for record in records.values():
        assert set(record.waits) == {"dependencies", "executor", "slots"}, record
    shares = wall_split(session, records, scheduler.wall)
    assert abs(sum(shares.values()) - scheduler.wall) < 1e-6, (shares, scheduler.wall)
    assert shares["profile"] <= profile.seconds + 1e-6 and shares[OWN_WORK] >= 0.9  # the wait ran nothing


def test_the_summary_gives_one_line_per_target_and_counts_what_a_failure_kept_from_running_once(tmp_path):
    import io

    from rich.console import Console

    from navbuild.view.summary import print_summary

    session = open_session(tmp_path)
    scheduler = Scheduler(session)
    records = scheduler.build(["m:scaled.profile", "m:untidy.profile"])
    assert records["m:untidy.check"].blocked_by == ["m:untidy"] == records["m:untidy.profile"].blocked_by
    screen = io.StringIO()
    print_summary(Console(file=screen, width=200), session, records, wall=scheduler.wall)
    out = screen.getvalue()
    rows = [line for line in out.splitlines() if line.startswith(" m:")]
    assert [row.split()[0] for row in rows] == ["m:samples", "m:reference", "m:scaled", "m:untidy"], out
    assert all(len(row) <= 200 for row in rows)  # one line each, whatever the reason's length
    narrow = io.StringIO()
    print_summary(Console(file=narrow, width=95), session, records, wall=scheduler.wall)
    rows = [line for line in narrow.getvalue().splitlines() if line.startswith(" m:")]
    assert [row.split()[0] for row in rows] == ["m:samples", "m:reference", "m:scaled", "m:untidy"], narrow.getvalue()
    assert all(len(row) <= 95 for row in rows), narrow.getvalue()  # the note gives way, then the digest
    assert "not run (m:untidy failed): 2 targets: m:untidy.check, m:untidy.profile" in out
    lines = out.splitlines()
    failure = next(at for at, line in enumerate(lines) if line.startswith("m:untidy failed: "))
    assert lines[failure] == "m:untidy failed: RuntimeError: rule untidy wrote stray.tmp, which its outputs " \
                             "(scale.npy, notes/*) do not declare"  # its first clause, in full
    assert lines[failure + 1].startswith("  log: ") and lines[failure + 1].endswith("build.log"), out
    assert "2 checks (1 built, 1 not run)" in out and "2 profiles (1 built, 1 not run)" in out
    assert "4 artifacts (3 built, 1 failed)" in out  # the failure once; what it kept from running apart


def test_a_profile_whose_spread_exceeds_its_bound_is_marked_unstable():
    from navbuild.view.summary import _throughput_text

    steady = Record("m:a.profile", BUILT, metadata={"stability_pct": 10.0, "points": [
        {"batch_size": 1, "throughput": 9712.0, "spread_pct": 3.0, "ended": "stable", "stable": True}]})
    noisy = Record("m:b.profile", BUILT, metadata={"stability_pct": 10.0, "points": [
        {"batch_size": 1, "throughput": 1.92, "spread_pct": 85.0, "ended": "budget", "stable": False},
        {"batch_size": 4, "throughput": 1.5, "spread_pct": 4.0, "ended": "stable", "stable": True}]})
    assert _throughput_text(steady) == ("9712/s @ batch 1", "")
    assert _throughput_text(noisy) == ("~1.92/s @ batch 1", "unstable: \u00b185% > 10% (batch 1)")


def test_doit_forget_forgets_the_build_and_the_next_doit_run_builds_it_again(tmp_path):
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from navbuild.engine import doit_glue

    def doit(*words: str) -> tuple[int, Session]:
        session = open_session(tmp_path, '["scaled"]')
        namespace = {"task_navbuild": lambda: doit_glue.task_dicts(session),
                     "DOIT_CONFIG": {"backend": "navbuild-null", "dep_file": str(tmp_path / "doit-null"),
                                     "verbosity": 0}}
        # as the checkout's pyproject.toml registers them ([tool.doit.plugins.*])
        extra = {"BACKEND": {"navbuild-null": "navbuild.engine.doit_glue:NullBackend"},
                 "COMMAND": {"forget": "navbuild.engine.doit_glue:Forget"}}
        return DoitMain(ModuleTaskLoader(namespace), config_filenames=(), extra_config=extra).run(list(words)), session

    code, session = doit("m:scaled")
    assert code == 0 and session.records.get("m:scaled").status == BUILT
    code, session = doit("m:scaled")
    assert code == 0 and session.records.get("m:scaled").status == CACHED  # up to date: doit ran nothing
    built_key = session.current_manifest("m:scaled")["key"]

    code, session = doit("forget", "m:scaled")
    assert code == 0
    assert session.store.get_manifest(built_key) is None  # really forgotten: the build is gone from the store
    code, session = doit("m:scaled")
    assert code == 0 and session.records.get("m:scaled").status == BUILT  # so it is built again
    assert session.records.get("m:scaled").key == built_key
    assert session.records.get("m:samples").status == CACHED  # and only it


def test_a_skip_decided_before_anything_ran_shows_no_seconds():
    import io

    from rich.console import Console

    from navbuild.view.summary import _table

    skipped = Record("m:trt", SKIPPED, reason="tensorrt is not installed")
    row = {"target": "m:trt", "status": SKIPPED, "reason": skipped.reason, "digest": None, "seconds": 0.0,
           "check_seconds": 0.0, "profile_seconds": 0.0, "waited": 3.5, "correctness": "",
           "throughput": ("not profiled", ""), "record": skipped, "check": None, "node": None}
    screen = io.StringIO()
    Console(file=screen, width=200).print(_table([row]))
    line = next(text for text in screen.getvalue().splitlines() if text.startswith(" m:trt"))
    assert "0.00" not in line and "3.50" in line, line  # what it waited, not seconds it never ran
