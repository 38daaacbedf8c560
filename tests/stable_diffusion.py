"""examples/stable_diffusion as the tests run it: the example script in a new process, and one build
of it per test session (``tests/conftest.py``'s ``stable_diffusion_build``) that the example's test
and the reference page's snippet test share, so that the tiny pipeline's default build, the costly
part, runs once."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "stable_diffusion"
TOLERANCE = 1e-3  # the example's: largest pixel difference from the original pipeline's images


def run_example(workspace: Path, *args: str) -> dict:
    """``optimize.py --workspace workspace ...`` in a new interpreter; its last line, a JSON summary."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(EXAMPLE)])}
    result = subprocess.run([sys.executable, str(EXAMPLE / "optimize.py"), "--workspace", str(workspace), *args],
                            cwd=workspace.parent, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])
