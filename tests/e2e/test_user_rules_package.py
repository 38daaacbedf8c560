"""A project may have a ``rules`` package of its own: navbuild's families live in ``navbuild_rules``,
so neither shadows the other in the CLI's process or in the workers that import the model's code
from the project root (issue 23: a package name for the families that cannot clash)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MODEL = '''
import torch
from torch import nn

from rules.layers import Scaled


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), Scaled(nn.Linear(16, 4))).eval()
'''
LAYERS = '''
from torch import nn

SCALE = 0.5


class Scaled(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * SCALE
'''
SAMPLES = '''
import torch


def make_samples():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 8, generator=generator) for batch in (1, 2)]
'''
CONFIG = '''
[project]
name = "own-rules"

[profile]
enabled = false

[models.mlp]
framework = "torch"
entry = "model.py:build_model"
samples = "samples.py:make_samples"
inputs = ["x"]
outputs = ["y"]
max_batch_size = 2

[models.mlp.targets]
formats = ["torchscript-trace", "onnx"]
'''


def test_a_project_with_its_own_rules_package_builds(tmp_path: Path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "__init__.py").write_text('"""The user\'s own rules: business rules, nothing of navbuild."""\n')
    (tmp_path / "rules" / "layers.py").write_text(LAYERS)
    for name, text in (("model.py", MODEL), ("samples.py", SAMPLES), ("navbuild.toml", CONFIG)):
        (tmp_path / name).write_text(text)
    report = tmp_path / "run.json"
    # from the project root, as a user runs it: the project's `rules` comes first on sys.path
    done = subprocess.run([sys.executable, "-m", "navbuild.cli", "all", "--json", str(report), "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads(report.read_text())
    for target in ("mlp:torchscript-trace", "mlp:onnx"):
        assert records[target]["status"] == "built", records[target]
        assert records[f"{target}.check"]["metadata"]["passed"] is True, records[f"{target}.check"]
