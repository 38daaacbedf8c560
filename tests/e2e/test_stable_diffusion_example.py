"""examples/stable_diffusion: diffusers' own Stable Diffusion pipeline (tiny configurations, random
weights, no download) optimized in place as Model Navigator's page does it. The images equal the
original pipeline's within the example's tolerance; a second run builds nothing; a new process
that only calls load_optimized() finds every module's targets in the store."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "stable_diffusion"

pytest.importorskip("diffusers", reason="the diffusers extra is not installed")


def run_example(workspace: Path, *args: str) -> dict:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(EXAMPLE)])}
    result = subprocess.run([sys.executable, str(EXAMPLE / "optimize.py"), "--workspace", str(workspace), *args],
                            cwd=workspace.parent, env=environment, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_stable_diffusion_pipeline_optimizes_in_place(tmp_path):
    workspace = tmp_path / "workspace"
    first = run_example(workspace)
    assert set(first["loaded"]) == {"clip", "unet", "vae"}
    assert all(target in ("torchscript-trace", "onnx") for target in first["loaded"].values()), first["loaded"]
    assert {"unet:onnx", "unet:onnx.check", "vae:torchscript-trace", "clip:onnx"} <= set(first["built"])
    assert first["difference"] <= 1e-3 and first["fallbacks"] == {"clip": 0, "unet": 0, "vae": 0}

    second = run_example(workspace)
    assert second["built"] == [] and second["loaded"] == first["loaded"]

    loaded = run_example(workspace, "--load-only")  # a new process, no optimize in it
    assert loaded["loaded"] == first["loaded"] and loaded["difference"] <= 1e-3
