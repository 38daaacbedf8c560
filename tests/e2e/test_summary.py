"""Issue 14: what a run says it did adds up, and what cannot run here says every reason."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from navbuild.cli import main
from navbuild.engine.project import open_project

from .conftest import REPO
from .tiny import ARTIFACTS, CHECKS, PROFILES, make_tiny_project


def test_the_summary_counts_every_kind_of_target_and_adds_up(tmp_path, capsys):
    project = make_tiny_project(tmp_path / "project")
    report = tmp_path / "records.json"
    assert main(["--config", str(project.config), "--json", str(report)]) == 0
    out = capsys.readouterr().out
    import json

    records = json.loads(report.read_text())
    footer = re.search(r"(\d+) targets: (\d+) artifacts \(([^)]*)\), (\d+) checks \(([^)]*)\), "
                       r"(\d+) profiles \(([^)]*)\)", out.replace("\n", " "))
    assert footer, out
    total, artifacts, artifact_states, checks, check_states, profiles, profile_states = footer.groups()
    assert int(total) == len(records) == int(artifacts) + int(checks) + int(profiles)
    assert (int(artifacts), int(checks), int(profiles)) == (len(ARTIFACTS) + 2, len(CHECKS), len(PROFILES))
    assert artifact_states == f"{len(ARTIFACTS) + 2} built" and profile_states == f"{len(PROFILES)} built"
    # the wall time, split by what ran (and navbuild's own work when nothing ran), adds up
    wall, build, check, profile, own = map(float, re.search(
        r"time: (\d+\.\d) s wall = build (\d+\.\d) s, check (\d+\.\d) s, profile (\d+\.\d) s, "
        r"navbuild (\d+\.\d) s", out).groups())
    assert abs(build + check + profile + own - wall) <= 0.25, out  # each part rounded to 0.1 s
    assert re.search(r"target\s.*\sbuild s\s.*\scheck s\s.*\sprofile s\s+waited s", out), out  # run and wait apart
    for name, record in records.items():  # each record: the time it ran, and apart what it waited for
        assert set(record["waits"]) == {"dependencies", "executor", "slots"}, record
        assert abs(record["waited"] - record["waits"]["executor"] - record["waits"]["slots"]) < 1e-3, record
    for row in (line for line in out.splitlines() if line.lstrip().startswith("mlp:")):
        profile_record = records.get(f"{row.split()[0]}.profile")
        if profile_record:  # the profile column is the time it ran, never its wait for the profile lock
            assert f"{profile_record['seconds']:.2f}" in row.split(), (row, profile_record)

    assert main(["--config", str(project.config), "--table"]) == 0  # a second run, asked for the table
    out = capsys.readouterr().out.replace("\n", " ")
    assert f"{len(records)} targets: {len(ARTIFACTS) + 2} artifacts ({len(ARTIFACTS) + 2} cached)" in out


def test_a_run_that_changes_nothing_says_so_in_one_line(tmp_path):
    project = make_tiny_project(tmp_path / "project", precisions='["fp32"]', budget_s=0.05)
    project.config.write_text(project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]',
                                                                 'formats = ["onnx", "trt"]'))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run = [sys.executable, "-m", "navbuild.cli", "--config", str(project.config)]
    first = subprocess.run(run, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    session = open_project(project.config)
    skipped = session.unmet_needs(session.graph.targets["mlp:trt-fp32"])
    again = subprocess.run(run, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and again.stderr == "", again.stderr  # no skipped lines printed again
    targets = len(session.graph.targets)
    if skipped:  # trt, its check and its profile: one reason, said once
        assert again.stdout == f"{targets - 3} targets up to date, 3 skipped: {skipped}\n", again.stdout
    else:
        assert again.stdout == f"{targets} targets up to date\n", again.stdout
    table = subprocess.run([*run, "-v"], capture_output=True, text=True, env=env)
    assert "mlp:onnx" in table.stdout and "targets: " in table.stdout  # asked for: the table and the counts


def test_unmet_needs_are_all_named_and_list_shows_the_device_a_target_needs(tmp_path, capsys):
    project = make_tiny_project(tmp_path / "project")
    project.config.write_text(project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]',
                                                                 'formats = ["onnx", "trt"]'))
    session = open_project(project.config)
    target = session.graph.targets["mlp:trt-fp32"]
    machine = session.machine
    reasons = []
    if not machine.has_module("tensorrt"):
        reasons.append("tensorrt is not installed")
    if not machine.has_cuda():
        reasons.append("no CUDA GPU on this machine")
    assert session.unmet_needs(target) == ("; ".join(reasons) or None)
    assert main(["--config", str(project.config), "list"]) == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:]]
            for line in capsys.readouterr().out.splitlines() if line.startswith("│")}
    assert rows["mlp:trt-fp32"][3] == "cuda"  # the project's device is cpu, but a plan needs a GPU
    assert rows["mlp:onnx"][3] == "cpu"


def test_doit_describes_profiles_as_profiles(tmp_path):
    from navbuild.engine.doit_glue import task_dicts

    project = make_tiny_project(tmp_path / "project")
    docs = {task["basename"]: task["doc"] for task in task_dicts(open_project(project.config))}
    assert docs["mlp:onnx.profile"] == "profile of mlp:onnx (latency and throughput)"
    assert docs["mlp:onnx.check"] == "correctness of mlp:onnx"


def test_triton_without_the_triton_extra_says_which_extra_to_install(tmp_path):
    project = make_tiny_project(tmp_path / "project")
    code = ("import sys; sys.modules['tritonclient'] = None; from navbuild.cli import main; "
            f"sys.exit(main(['--config', {str(project.config)!r}, 'triton', '--repo', 'repo']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install -e '.[triton]'" in result.stderr and "Traceback" not in result.stderr


def test_triton_on_an_unbuilt_project_names_the_models_and_the_command_that_builds_them(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tritonclient") is None:
        import pytest

        pytest.skip("tritonclient is not installed (the triton extra)")
    project = make_tiny_project(tmp_path / "project", precisions='["fp32"]')
    code = main(["--config", str(project.config), "triton", "--repo", str(tmp_path / "repo")])
    assert code == 1
    assert capsys.readouterr().err.strip() == (f"navbuild: error: nothing to deploy yet: model mlp (2 targets not "
                                               f"built); build it first: navbuild --config {project.config} mlp")
    assert not (tmp_path / "repo").exists()
