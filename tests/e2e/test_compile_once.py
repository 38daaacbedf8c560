"""A torch-compile target through the real CLI, each run in a fresh process: the build compiles each
bucket once, the check and the profile load those graphs from the rule's cache folder, and a
second (forced) build on the same machine compiles nothing. The check covers the bucket no sample
reaches and the profile measures it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.rules._ctx import TINY_CNN

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]

# the rule tests' one-conv CNN, with samples for the CLI
MODEL = TINY_CNN + textwrap.dedent('''

    def make_samples():
        return [torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))]
''')

CONFIG = """
[project]
name = "once"

[profile]
batch_sizes = [1]
warmup_runs = 1
warmup_s = 0.0
min_window_runs = 3
window_s = 0.0
stabilization_windows = 1
min_trials = 1
max_trials = 2

[models.tiny]
framework = "torch"
entry = "model.py:build_model"
samples = "model.py:make_samples"
inputs = ["image"]
outputs = ["logits"]
max_batch_size = 4

[models.tiny.targets]
formats = ["torch-compile"]

[models.tiny.targets.torch-compile]
buckets = [1, 4]
"""


def build(root: Path, *words: str) -> dict:
    report = root / "run.json"
    done = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(root / "navbuild.toml"),
                           "--json", str(report), "-q", *words], capture_output=True, text=True, cwd=REPO,
                          timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(report.read_text())


@pytest.mark.slow
def test_build_check_and_profile_compile_once_and_a_second_build_compiles_nothing(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "navbuild.toml").write_text(CONFIG)
    profile_file = tmp_path / "navbuild-out" / "tiny" / "torch-compile" / "profile.json"

    first = build(tmp_path, "tiny:torch-compile")
    assert first["tiny:torch-compile"]["status"] == "built"
    assert first["tiny:torch-compile"]["metadata"]["graphs_compiled"] == 2  # buckets 1 and 4
    check = first["tiny:torch-compile.check"]["correctness"]
    assert check["passed"] and check["bucket_cases"] == [4]  # the sample (batch 1) never reaches bucket 4
    assert check["runner_info"]["graphs_compiled"] == 0, check["runner_info"]
    profile = json.loads(profile_file.read_text())
    assert [p["batch_size"] for p in profile["points"]] == [1, 4]  # the profile's 1, and bucket 4
    assert profile["runner_info"]["graphs_compiled"] == 0, profile["runner_info"]

    # a new process, the same store and device; the check and the profile run again too (issue 22:
    # --force alone forces the named target only)
    second = build(tmp_path, "tiny:torch-compile", "--force-downstream")
    assert second["tiny:torch-compile.check"]["status"] == "built"
    assert second["tiny:torch-compile"]["status"] == "built"
    assert second["tiny:torch-compile"]["metadata"]["graphs_compiled"] == 0
    assert second["tiny:torch-compile"]["metadata"]["graphs_loaded"] == 2
    assert second["tiny:torch-compile.check"]["correctness"]["runner_info"]["graphs_compiled"] == 0
    assert json.loads(profile_file.read_text())["runner_info"]["graphs_compiled"] == 0
    # the check's output is the same bytes whether its runner compiled or loaded: a reproducible digest
    third = build(tmp_path, "tiny:torch-compile.check", "--force")
    assert third["tiny:torch-compile.check"]["status"] == "built"
    assert third["tiny:torch-compile.check"]["digest"] == first["tiny:torch-compile.check"]["digest"]

    third = build(tmp_path, "tiny:torch-compile")
    assert {record["status"] for record in third.values()} == {"cached"}
