"""Every GPU of a machine builds (issue 25), on fake cards: ``NAVBUILD_FAKE_GPUS`` (tests only) makes
navbuild and its workers believe in cards this machine does not have. The toy plug-in family
(tests/plugins) builds on ``cuda`` and reports the ``CUDA_VISIBLE_DEVICES`` its worker was given.

- each GPU target runs in a worker pinned to its card through the environment it was started
  with, and a worker keeps its card; CPU targets' workers see no card; the cards are used at once;
- keys hold the card type: another card of the type finds everything current (a profile made on
  one card holds for the other); a card of another type builds its own keys, kept apart.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.plugins import install

ROOT = Path(__file__).resolve().parents[2]
H100, H200 = {"name": "NVIDIA H100 80GB HBM3", "capability": "9.0"}, {"name": "NVIDIA H200", "capability": "9.0"}

TOY = '''import numpy as np


def model():
    return {{"factor": {factor}, "sleep": {sleep}}}


def samples():
    return [np.ones((1, 4), dtype=np.float32)]
'''
PROFILE = ("[profile]\nbatch_sizes = [1]\nbudget_s = 0.2\nwarmup_runs = 1\nwarmup_s = 0.0\nmax_warmup_s = 0.05\n"
           "min_trials = 1\nmax_trials = 1\nstabilization_windows = 1\n")


def toy_project(root: Path, models: int, sleep: float, profile: bool = False) -> Path:
    (root / "models").mkdir(parents=True)
    lines = ['[project]\nname = "cards"\n', PROFILE if profile else "[profile]\nenabled = false\n"]
    for index in range(models):
        (root / "models" / f"m{index}.py").write_text(TOY.format(factor=1.0 + index, sleep=sleep))
        lines.append(f'[models.m{index}]\nframework = "toy"\nentry = "models/m{index}.py:model"\n'
                     f'samples = "models/m{index}.py:samples"\ninputs = ["x"]\noutputs = ["y"]\n'
                     f'max_batch_size = 1\n[models.m{index}.targets]\ndevice = "cuda"\n'
                     f'formats = ["toy-a", "toy-plan"]\n')
    (root / "navbuild.toml").write_text("\n".join(lines))
    return root / "navbuild.toml"


def navbuild(config: Path, cards: list[dict], *words: str, visible: str | None = None, expect: int = 0):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(install(config.parent.parent / "plugin"))]),
           "NAVBUILD_FAKE_GPUS": json.dumps(cards)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    env.pop("NAVBUILD_DEVICE_FINGERPRINT", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    report = config.parent / "records.json"
    report.unlink(missing_ok=True)
    result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), "--json", str(report),
                             *words], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == expect, result.stdout[-3000:] + result.stderr[-3000:]
    said = " ".join((result.stdout + result.stderr).split())  # as one line, whatever the console folded
    return json.loads(report.read_text()) if report.exists() else {}, said


def test_each_gpu_target_runs_in_a_worker_pinned_to_its_card(tmp_path):
    config = toy_project(tmp_path / "project", models=3, sleep=1.0)
    records, output = navbuild(config, [H100, H100, H100], "all", "-j", "2")
    on_gpu = {name: r for name, r in records.items() if not name.endswith((":samples", ":reference"))}
    assert len(on_gpu) == 12 and all(r["status"] == "built" for r in records.values()), records
    for name, record in on_gpu.items():
        given = (record["metadata"] if record["correctness"] is None else record["correctness"]["runner_info"])
        assert given["cuda_visible_devices"] == str(record["gpu"]), (name, record)
    assert {r["gpu"] for r in on_gpu.values()} == {0, 1, 2}  # three GPU targets at once, one per card
    builders = {}  # a worker keeps the card it was started with
    for record in on_gpu.values():
        if "pid" in record["metadata"]:
            builders.setdefault(record["metadata"]["pid"], set()).add(record["gpu"])
    assert builders and all(len(cards) == 1 for cards in builders.values()), builders
    assert records["m0:samples"]["gpu"] is None  # CPU targets hold no card, and their workers see none
    # -j 2 beside 3 GPU slots: five processes at once, which a machine of fewer cores is warned of
    assert ("-j 2 and 3 GPU slots run up to 5 targets" in output) == (len(os.sched_getaffinity(0)) < 5), output
    assert records["m0:reference"]["gpu"] is None and records["m0:reference"]["metadata"]["cuda_visible_devices"] == ""
    assert "GPU b/c/p" in output and "on GPU" not in output.split("GPU b/c/p")[0]


def test_keys_hold_the_card_type_not_the_card(tmp_path):
    config = toy_project(tmp_path / "project", models=1, sleep=0.0, profile=True)
    mixed = [H100, H100, H200]
    first, output = navbuild(config, mixed, "all")
    assert "GPU 2 (NVIDIA H200) stay idle" in output  # one type per run, said once
    assert {r["gpu"] for r in first.values()} <= {None, 0, 1}  # the H100s
    assert first["m0:toy-plan.profile"]["status"] == "built"

    again, _ = navbuild(config, mixed, "all", visible="1")  # the other H100: everything is current
    assert {r["status"] for r in again.values()} == {"cached"}, again
    assert again["m0:toy-plan"]["key"] == first["m0:toy-plan"]["key"]

    h200, _ = navbuild(config, mixed, "all", "--gpu-type", "H200")
    assert h200["m0:toy-plan"]["status"] == "built" and h200["m0:toy-plan"]["gpu"] == 2
    assert h200["m0:toy-plan"]["key"] != first["m0:toy-plan"]["key"]  # its own key
    assert h200["m0:toy-plan.profile"]["status"] == "built"  # figures belong to the card type
    assert h200["m0:toy-a"]["status"] == "cached"  # a portable build is any card's
    assert h200["m0:toy-a"]["digest"] == first["m0:toy-a"]["digest"]

    back, _ = navbuild(config, mixed, "all")  # the H100 builds were kept apart
    assert {r["status"] for r in back.values()} == {"cached"}, back
    _, output = navbuild(config, mixed, "all", "--gpu-type", "A100", expect=2)
    assert "no visible GPU of that type" in output and "2: NVIDIA H200" in output


DOIT = '''import json, sys
from doit.cmd_base import ModuleTaskLoader
from doit.doit_cmd import DoitMain
from navbuild.engine import doit_glue
from navbuild.engine.project import open_project

session = open_project(sys.argv[1])
namespace = {"task_navbuild": lambda: doit_glue.task_dicts(session),
             "DOIT_CONFIG": {"backend": "navbuild-null", "dep_file": sys.argv[2], "verbosity": 0}}
extra = {"BACKEND": {"navbuild-null": "navbuild.engine.doit_glue:NullBackend"}}
code = DoitMain(ModuleTaskLoader(namespace), config_filenames=(), extra_config=extra).run(
    ["-n", "4", "-P", "thread", "all"])
print(json.dumps({"code": code, "records": {n: r.to_dict() for n, r in session.records.by_target.items()}}))
'''


def test_plain_doit_threads_share_the_cards(tmp_path):
    """doit -n 4 -P thread: several build loops at once on one executor, each its own lanes."""
    config = toy_project(tmp_path / "project", models=2, sleep=0.5)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(install(tmp_path / "plugin"))]),
           "NAVBUILD_FAKE_GPUS": json.dumps([H100, H100])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    script = tmp_path / "run_doit.py"  # a file: doit reads its task creators' source
    script.write_text(DOIT)
    result = subprocess.run([sys.executable, str(script), str(config), str(tmp_path / "doit-null")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    built = {n: r for n, r in report["records"].items() if not n.endswith((":samples", ":reference"))}
    # a task's build finds its dependencies current (cached), built by the tasks before it
    assert len(built) == 8 and {r["status"] for r in built.values()} <= {"built", "cached"}
    for record in built.values():
        if record["status"] == "built":
            given = record["metadata"] if record["correctness"] is None else record["correctness"]["runner_info"]
            assert record["gpu"] in (0, 1) and given["cuda_visible_devices"] == str(record["gpu"]), record


def test_a_worker_pinned_to_a_card_says_what_it_does_and_the_summary_keeps_cards_and_waits(tmp_path, monkeypatch):
    """The progress frames of a worker pinned to a card reach the log ("still compiling ... on GPU
    n"), and the summary shows both the seconds waited and the cards (issues 24 and 25 together)."""
    config = toy_project(tmp_path / "project", models=1, sleep=0.0)
    config.write_text(config.read_text().replace('formats = ["toy-a", "toy-plan"]', 'formats = ["toy-slow"]')
                      + "[models.m0.targets.toy-slow]\nseconds = 2.5\n")
    monkeypatch.setenv("NAVBUILD_PROGRESS_EVERY", "0.5")
    records, output = navbuild(config, [H100, H100], "all")
    slow = records["m0:toy-slow"]
    assert slow["status"] == "built" and slow["gpu"] in (0, 1), slow
    assert slow["metadata"]["cuda_visible_devices"] == str(slow["gpu"])  # the card it was pinned to
    assert f"still compiling m0:toy-slow on GPU {slow['gpu']} (step " in output, output
    assert set(slow["waits"]) == {"dependencies", "executor", "slots"} and slow["waits"]["dependencies"] > 0
    assert "waited s" in output and "GPU b/c/p" in output, output
