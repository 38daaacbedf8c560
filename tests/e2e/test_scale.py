"""Scale (issue 10, item 5): 200 models x 10 targets of a cheap plug-in rule family. `list`, `status`
and a no-op `all` work on 2,000 targets (their times are measured by benchmarks/scale.py, not here)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.plugins import install, synthetic_project

ROOT = Path(__file__).resolve().parents[2]
MODELS = 200


def navbuild(config: Path, env: dict, *words: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), *words],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_two_thousand_targets(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(install(tmp_path / "plugin"))])}
    config = synthetic_project(tmp_path / "project", MODELS)
    listed = navbuild(config, env, "list").stdout
    assert "m199:toy-d" in listed and "toy-a v1" in listed
    cold = tmp_path / "cold.json"
    navbuild(config, env, "-j", "2", "-q", "--json", str(cold))
    records = json.loads(cold.read_text())
    assert len(records) == MODELS * 10
    assert {r["status"] for r in records.values()} == {"built"}
    assert all(r["correctness"]["passed"] for n, r in records.items() if n.endswith(".check"))
    again = tmp_path / "again.json"
    summary = navbuild(config, env, "--json", str(again)).stdout
    assert {r["status"] for r in json.loads(again.read_text()).values()} == {"cached"}
    assert summary == f"{MODELS * 10} targets up to date\n"  # a no-op says so in one line
    table = navbuild(config, env, "--table").stdout
    assert "1200 cached targets not listed" in table  # asked for the table: a large one renders no cached rows
    status = navbuild(config, env, "status").stdout
    assert status.count("built") >= MODELS * 10 and "stale" not in status and "missing" not in status
