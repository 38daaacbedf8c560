"""Issue 24, item 1: long work is never silent. A toy rule that takes a few seconds in five steps,
saying each (tests/plugins/toy_rules.py ``toy-slow``), built in a worker process, whose progress
frames reach the console: "still ..." lines in a log, a live display on a terminal, nothing with -q."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from navbuild.engine.progress import Progress
from navbuild.engine.records import BUILT, Record
from navbuild.engine.scheduler import FINISHED, PROGRESS, QUEUED, STARTED, Event
from navbuild.view.progress import LiveView, Reporter
from tests.plugins import TOY_MODEL, install

ROOT = Path(__file__).resolve().parents[2]

CONFIG = '''[project]
name = "slow"

[profile]
enabled = false

[models.m]
framework = "toy"
entry = "m.py:model"
samples = "m.py:samples"
inputs = ["x"]
outputs = ["y"]
max_batch_size = 2

[models.m.targets]
formats = ["toy-slow"]

[models.m.targets.toy-slow]
seconds = 2.5
'''


def slow_project(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "m.py").write_text(TOY_MODEL.format(factor=2.0, index=1))
    (root / "navbuild.toml").write_text(CONFIG)
    return root / "navbuild.toml"


def navbuild(tmp_path: Path, config: Path, *words: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(install(tmp_path / "plugin"))]),
           "NAVBUILD_PROGRESS_EVERY": "0.5"}
    return subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), *words],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_long_build_in_a_log_says_it_is_still_running_with_what_its_worker_said(tmp_path):
    config = slow_project(tmp_path / "project")
    result = navbuild(tmp_path, config, "m:toy-slow")
    assert result.returncode == 0, result.stdout + result.stderr
    still = [line for line in result.stderr.splitlines() if line.startswith("still ")]
    # the phase and step come from the rule, in the worker process, through progress frames
    assert any(line.startswith("still compiling m:toy-slow (step ") and line.endswith(" s") for line in still), \
        result.stderr
    assert len(still) >= 3, still  # every half second of the build's 2.5 s, not once
    assert "built    m:toy-slow" in result.stderr

    quiet = navbuild(tmp_path, config, "m:toy-slow", "--force", "-q")
    assert quiet.returncode == 0 and "still " not in quiet.stderr and quiet.stdout == "", quiet.stderr


def test_the_live_display_shows_each_running_target_with_its_phase_and_time():
    screen = io.StringIO()
    from rich.console import Console

    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    reporter = Reporter(console, total=3, kinds={"m:onnx": "artifact", "m:onnx.profile": "profile"})
    began = time.monotonic() - 75
    for event in (Event(QUEUED, "m:onnx"), Event(STARTED, "m:onnx", time=began),
                  Event(PROGRESS, "m:onnx", progress=Progress("compiling", "warm-up batch 2 of 4")),
                  Event(QUEUED, "m:onnx.profile"), Event(STARTED, "m:onnx.profile"),
                  Event(PROGRESS, "m:onnx.profile", progress=Progress("profiling", "batch 8, 4 of 5")),
                  Event(QUEUED, "m:trt")):
        reporter(event)
    console.print(LiveView(reporter.board))
    lines = [line.strip() for line in screen.getvalue().splitlines()]
    assert lines[0].startswith("navbuild") and "0/3 done, 2 running, 1 waiting" in lines[0], lines
    assert "m:onnx compiling (warm-up batch 2 of 4) 1:15" in " ".join(lines[1].split()), lines
    assert "m:onnx.profile profiling (batch 8, 4 of 5) 0:00" in " ".join(lines[2].split()), lines

    reporter(Event(FINISHED, "m:onnx", record=Record("m:onnx", BUILT, seconds=75.0)))
    screen.seek(0)
    screen.truncate()
    console.print(LiveView(reporter.board))
    assert "1/3 done, 1 running" in screen.getvalue() and "compiling" not in screen.getvalue()


def test_plain_lines_come_once_per_interval_for_each_running_target():
    from rich.console import Console

    reporter = Reporter(Console(file=io.StringIO(), width=120), total=1, every=30, kinds={"m:aoti": "artifact"})
    began = time.monotonic()
    reporter(Event(STARTED, "m:aoti", time=began))
    assert reporter.due(began + 29) == []
    assert reporter.due(began + 31) == ["still building m:aoti, 31 s"]
    assert reporter.due(began + 45) == []  # once per interval
    reporter(Event(PROGRESS, "m:aoti", progress=Progress("compiling")))
    assert reporter.due(began + 61) == ["still compiling m:aoti, 61 s"]
