"""Importing navbuild and reading its public names imports no framework (and not numpy)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.api.conftest import REPO

NAMES = ["OptimizeConfig", "Format", "DeviceKind", "MaxThroughputStrategy", "MinLatencyStrategy",
         "MaxThroughputWithLatencyBudgetStrategy", "ConfigError", "Package", "Module", "optimize",
         "load_optimized", "profile", "torch", "onnx", "tensorflow", "jax", "package", "pytriton", "triton"]


def test_public_names_load_lazily_without_a_framework():
    code = ("import json, sys, navbuild\n"
            f"values = [getattr(navbuild, name) for name in {NAMES!r}]\n"
            "print(json.dumps({'loaded': sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'tensorflow',"
            " 'jax', 'transformers') if m in sys.modules), 'torch': navbuild.torch.__name__}))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found == {"loaded": [], "torch": "navbuild.torch"}
    import navbuild

    assert set(NAMES) <= set(dir(navbuild)) and set(NAMES) == set(navbuild.__all__)
