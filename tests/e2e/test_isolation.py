"""A model cannot take the build down (issue 10, item 2): a forward that segfaults, loops forever or
aborts fails its own target, with its log and the reason, and the rest of the graph is built."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import make_project

BAD_MODELS = textwrap.dedent('''
    import ctypes
    import os

    import torch

    CXX_ERROR = ("terminate called after throwing an instance of 'c10::Error'\\n"
                 "  what():  The size of tensor a (13) must match the size of tensor b (8) at non-singleton "
                 "dimension 1\\nException raised from infer_size_impl at aten/src/ATen/ExpandUtils.cpp:31 (most "
                 "recent call first):\\n" + "".join(f"frame #{i}: c10::Error::Error()\\n" for i in range(200)))

    class Bad(torch.nn.Module):
        def __init__(self, how):
            super().__init__()
            self.how = how
            self.linear = torch.nn.Linear(4, 2)

        def forward(self, x):
            if self.how == "segfault":
                ctypes.string_at(0)  # reads address 0: SIGSEGV
            elif self.how == "hang":
                while True:
                    pass
            elif self.how == "abort":  # what a C++ exception nobody catches does: std::terminate, SIGABRT
                os.write(2, CXX_ERROR.encode())
                os.abort()
            return self.linear(x)


    def segfault():
        return Bad("segfault")


    def hang():
        return Bad("hang")


    def abort():
        return Bad("abort")


    def make_samples():
        return [torch.ones(2, 4)]
''')


def bad_model(name: str, extra: str = "") -> str:
    return textwrap.dedent(f'''
        [models.{name}]
        framework = "torch"
        entry = "bad/models.py:{name}"
        samples = "bad/models.py:make_samples"
        sources = ["bad/models.py"]
        max_batch_size = 4
        {extra}

        [models.{name}.targets]
        formats = ["onnx"]
    ''')


@pytest.fixture
def unruly(tmp_path):
    """The example CNN beside three models that crash, hang (timeout 5 s) and abort."""
    project = make_project(tmp_path / "project")
    (project.root / "bad").mkdir()
    (project.root / "bad" / "models.py").write_text(BAD_MODELS)
    config = project.config.read_text().split("[models.encoder]")[0]
    config += bad_model("segfault") + bad_model("hang", "timeout = 5") + bad_model("abort")
    project.config.write_text(config)
    return project


def run(project, *words: str, timeout: float = 600) -> tuple[int, str, dict]:
    report = project.root / "records.json"
    result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), "--json",
                             str(report), *words], capture_output=True, text=True, timeout=timeout)
    records = json.loads(report.read_text()) if report.exists() else {}
    return result.returncode, result.stdout + result.stderr, records


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_crash_a_hang_and_an_abort_fail_their_targets_and_the_build_goes_on(unruly, jobs):
    code, output, records = run(unruly, "-j", jobs)
    assert code == 1, output  # not 139 (SIGSEGV) nor 134 (SIGABRT), and it came back (no hang)
    assert "Traceback" not in output
    reasons = {name: records[name]["reason"] for name in ("segfault:reference", "hang:reference", "abort:reference")}
    assert records["segfault:reference"]["status"] == "failed"
    assert "SIGSEGV" in reasons["segfault:reference"], reasons
    assert "no result after 5 s" in reasons["hang:reference"], reasons
    assert "SIGABRT" in reasons["abort:reference"], reasons
    # the head of the C++ message, not only the signal (its stack of frames is in the log)
    assert "c10::Error: The size of tensor a (13) must match the size of tensor b (8)" in reasons["abort:reference"]
    for name in ("cnn:torchscript-trace", "cnn:onnx", "cnn:onnx.check", "segfault:samples"):
        assert records[name]["status"] == "built", (name, records[name])
    assert records["segfault:onnx"]["status"] == "failed"  # not run: its reference failed
    log = unruly.root / "navbuild-out" / "segfault" / "reference" / "build.log"
    text = log.read_text()
    assert "Segmentation fault" in text and "forward" in text  # faulthandler's traceback, from the worker
    assert "killed by SIGSEGV" in text
    assert "no result after 5 s" in (unruly.root / "navbuild-out" / "hang" / "reference" / "build.log").read_text()


def test_no_op_starts_no_worker_and_in_process_mode_runs_none(project):
    """A no-op must not start a worker; NAVBUILD_IN_PROCESS=1 builds without any."""
    forbid = ("import sys, navbuild.engine.workers as w\n"
              "def refuse(*a, **k): raise SystemExit('a worker was started')\n"
              "w.Worker.__init__ = refuse\n"
              "from navbuild.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    result = subprocess.run([sys.executable, "-c", forbid, "--config", str(project.config), "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    (project.root / "vision" / "model.py").write_text("# edited\n" + (project.root / "vision" / "model.py").read_text())
    result = subprocess.run([sys.executable, "-c", forbid, "--config", str(project.config), "-q", "cnn:onnx"],
                            capture_output=True, text=True, env={**os.environ, "NAVBUILD_IN_PROCESS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_failure_in_the_worker_keeps_its_type_and_message(unruly):
    text = unruly.config.read_text().replace('entry = "bad/models.py:abort"', 'entry = "bad/models.py:missing"')
    unruly.config.write_text(text)
    (unruly.root / "bad" / "models.py").write_text(BAD_MODELS + "\n\ndef missing():\n    raise KeyError('no such model')\n")
    code, output, records = run(unruly, "abort:reference")
    assert code == 1
    assert records["abort:reference"]["reason"] == "KeyError: 'no such model'", records["abort:reference"]


def test_workers_rebuild_a_project_from_its_description_without_a_config_file(tmp_path):
    """What the Python API will need: a project known only as data (no navbuild.toml) builds in workers."""
    import msgpack

    from navbuild.engine.project import open_described, open_project
    from navbuild.engine.scheduler import LocalExecutor, Scheduler

    project = make_project(tmp_path / "project")
    description = msgpack.unpackb(msgpack.packb(open_project(project.config).describe()))  # plain data
    project.config.unlink()
    session = open_described(description)
    executor = LocalExecutor()
    try:
        Scheduler(session, executor, keep_open=True).build(["cnn:samples"])
        assert session.collect_records(["cnn:samples"])["cnn:samples"].status == "built"
        assert executor.pool is not None  # it ran in a worker, which opened the description too
    finally:
        executor.close()
        session.close()
