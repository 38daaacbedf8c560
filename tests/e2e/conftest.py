"""A small real project (the example CNN and encoder, two exports each) built with the real CLI.

The cold build runs once per test session; every test gets its own copy of the project and of the
warm store, so each edit-and-rebuild test starts from the same, already built state.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from navbuild.cli import main
from tests.example_cnn import cnn_config, copy_vision

REPO = Path(__file__).resolve().parents[2]
FORMATS = '["torchscript-trace", "onnx"]'

ENCODER = f"""
[models.encoder]
framework = "torch"
entry = "text/model.py:build_model"
samples = "text/model.py:make_samples"
sources = ["text/model.py", "text/weights.pt"]
inputs = ["tokens"]
outputs = ["logits"]
max_batch_size = 8

[models.encoder.targets]
formats = {FORMATS}
"""
# profiling has its own tests; these are about what gets rebuilt
CONFIG = cnn_config("e2e", before="[correctness]\natol = 1e-4\nrtol = 1e-3", after=ENCODER, formats=FORMATS)


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "navbuild.toml"
        self.runs = 0

    def build(self, *words: str, expect: int = 0) -> dict[str, dict]:
        """Run ``navbuild`` in this process; returns the records by target."""
        report = self.root / "last-run.json"
        report.unlink(missing_ok=True)
        code = main(["--config", str(self.config), "--json", str(report), "-q", *words])
        assert code == expect, f"navbuild {' '.join(words)} exited {code}, expected {expect}"
        return json.loads(report.read_text()) if report.exists() else {}

    def build_subprocess(self, *words: str) -> subprocess.Popen:
        self.runs += 1
        report = self.root / f"run-{self.runs}.json"
        return subprocess.Popen([sys.executable, "-m", "navbuild.cli", "--config", str(self.config), "--json",
                                 str(report), "-q", *words], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True), report

    def out(self, target: str) -> Path:
        model, short = target.split(":", 1)
        return self.root / "navbuild-out" / model / short


def statuses(records: dict[str, dict]) -> dict[str, str]:
    return {name: record["status"] for name, record in records.items()}


def make_project(root: Path) -> Project:
    copy_vision(root)
    shutil.copytree(REPO / "examples" / "text", root / "text", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "navbuild.toml").write_text(CONFIG)
    return Project(root)


@pytest.fixture(scope="session")
def warm_project(tmp_path_factory) -> tuple[Project, dict[str, dict]]:
    project = make_project(tmp_path_factory.mktemp("warm") / "project")
    records = project.build()
    return project, records


@pytest.fixture
def project(warm_project, tmp_path) -> Project:
    """A copy of the warm project (files and store) in a folder of its own."""
    source, _ = warm_project
    dest = tmp_path / "project"
    shutil.copytree(source.root, dest, symlinks=True)
    return Project(dest)


def copy_example(name: str, root: Path, *also_ignored: str) -> Project:
    """``examples/<name>`` copied to ``root`` without what an earlier build there left."""
    shutil.copytree(REPO / "examples" / name, root,
                    ignore=shutil.ignore_patterns("navbuild-out", ".navbuild", "__pycache__", *also_ignored))
    return Project(root)


def assert_built_checked_and_profiled(records: dict[str, dict], names: tuple[str, ...],
                                      batch_sizes: list[int]) -> None:
    for name in names:
        assert records[name]["status"] == "built", records[name]
        check = records[f"{name}.check"]
        assert check["status"] == "built" and check["correctness"]["passed"], check
        points = records[f"{name}.profile"]["metadata"]["points"]
        assert records[f"{name}.profile"]["status"] == "built"
        # every batch size, whatever was profiled before: no profile reads another's figures
        assert [p["batch_size"] for p in points] == batch_sizes, points
