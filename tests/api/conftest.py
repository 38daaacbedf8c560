"""Shared helpers of the Python API tests: example projects copied into temp folders, a short
profile, and a way to run a script in a fresh Python process (a "new process" in the tests)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.example_cnn import copy_vision

REPO = Path(__file__).resolve().parents[2]
# a few runs per batch size: these tests are about what gets built, not about the figures
FAST_PROFILE = {"batch_sizes": [1], "warmup_runs": 1, "warmup_s": 0.0, "min_window_runs": 3, "window_s": 0.0,
                "min_trials": 3, "max_trials": 3, "stabilization_windows": 3}


def copy_example(name: str, dest: Path) -> Path:
    shutil.copytree(REPO / "examples" / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "workspace"))
    return dest / name


def run_python(code: str, cwd: Path, *extra_path: Path, env: dict[str, str] | None = None,
               timeout: int = 600) -> dict:
    """Run ``code`` in a new interpreter (cwd ``cwd``); it prints one JSON line last, returned here."""
    script = cwd / "_script.py"
    script.write_text(textwrap.dedent(code))
    paths = [str(REPO), *map(str, extra_path), os.environ.get("PYTHONPATH", "")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **(env or {})}
    result = subprocess.run([sys.executable, str(script)], cwd=cwd, env=environment, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def vision(tmp_path: Path) -> Path:
    """A project root holding a copy of examples/vision (the CNN), as tests/example_cnn.py declares it."""
    return copy_vision(tmp_path)
