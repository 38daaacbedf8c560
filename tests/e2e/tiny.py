"""A tiny project with profiling on: one small MLP, two formats, two precisions, a short budget.

Small enough that a cold build with every profile takes seconds, so the tests can build it from
clean more than once and change one setting at a time.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .conftest import Project

MODEL = '''
import torch
from torch import nn


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 4)).eval()


def make_samples():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 16, generator=generator) for batch in (1, 2)]


def make_other_samples():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 16, generator=generator) for batch in (1, 2)]
'''

CONFIG = '''
[project]
name = "tiny"

[profile]
budget_s = 0.2

[correctness]
atol = 1e-4
rtol = 1e-3

[models.mlp]
framework = "torch"
entry = "model.py:build_model"
samples = "model.py:make_samples"
sources = ["model.py"]
inputs = ["x"]
outputs = ["y"]
max_batch_size = 4

[models.mlp.targets]
formats = ["torchscript-trace", "onnx"]
precisions = ["fp32", "fp16"]
'''

ARTIFACTS = ["mlp:torchscript-trace", "mlp:torchscript-trace-fp16", "mlp:onnx", "mlp:onnx-fp16"]
CHECKS = [f"{name}.check" for name in ARTIFACTS]
PROFILES = [f"{name}.profile" for name in ARTIFACTS]


def make_tiny_project(root: Path, precisions: str = '["fp32", "fp16"]', budget_s: float = 0.2) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.py").write_text(MODEL)
    config = CONFIG.replace('precisions = ["fp32", "fp16"]', f"precisions = {precisions}")
    (root / "navbuild.toml").write_text(config.replace("budget_s = 0.2", f"budget_s = {budget_s}"))
    return Project(root)


def copy_project(source: Project, dest: Path) -> Project:
    shutil.copytree(source.root, dest, symlinks=True)
    return Project(dest)


def built(records: dict[str, dict]) -> set[str]:
    return {name for name, record in records.items() if record["status"] == "built"}
