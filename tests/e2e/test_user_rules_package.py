"""A project may have a ``rules`` package of its own: navbuild's families live in ``navbuild_rules``,
so neither shadows the other in the CLI's process or in the workers that import the model's code
from the project root (issue 23: a package name for the families that cannot clash). The project
is issue 22's, its helper package named ``rules``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .test_discovery import EXPORTS, make_project


def test_a_project_with_its_own_rules_package_builds(tmp_path: Path):
    project = make_project(tmp_path, package="rules")
    assert "from rules.layers import Scaled" in (tmp_path / "model.py").read_text()
    report = tmp_path / "run.json"
    # from the project root, as a user runs it: the project's `rules` comes first on sys.path
    done = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), "mlp",
                           "--json", str(report), "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads(report.read_text())
    for target in EXPORTS:
        assert records[target]["status"] == "built", records[target]
        assert records[f"{target}.check"]["metadata"]["passed"] is True, records[f"{target}.check"]
