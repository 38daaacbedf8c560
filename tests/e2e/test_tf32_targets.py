"""``tf32`` targets on a machine without an Ampere-or-newer GPU: skipped with the reason, never built
as a fake, and hiding nothing: the fp32 targets beside them build, check and profile."""
from __future__ import annotations

import pytest

from navbuild.engine.fingerprint import gpu_present
from tests.e2e.tiny import make_tiny_project

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(gpu_present(), reason="on a GPU tf32 targets build: benchmarks/tf32.py")

NEED = "TF32 needs an Ampere-or-newer CUDA GPU (compute capability 8.0+)"


def test_tf32_beside_fp32_on_the_cpu(tmp_path):
    project = make_tiny_project(tmp_path / "tiny", precisions='["fp32", "tf32"]')
    records = project.build("all")
    for fmt in ("torchscript-trace", "onnx"):
        assert records[f"mlp:{fmt}"]["status"] == "built"
        assert records[f"mlp:{fmt}.check"]["correctness"]["passed"]
        assert records[f"mlp:{fmt}.profile"]["status"] == "built"
        for name in (f"mlp:{fmt}-tf32", f"mlp:{fmt}-tf32.check", f"mlp:{fmt}-tf32.profile"):
            assert records[name]["status"] == "skipped", records[name]
            assert records[name]["reason"] == f"{NEED}; this target's device is cpu"
    assert not (project.out("mlp:onnx-tf32") / "model.onnx").exists()
    alias = project.build("tf32")  # the precision's alias: its targets, skipped, and what they need
    assert {name for name, record in alias.items() if record["status"] == "skipped"} == {
        name for name in records if "tf32" in name}


def test_tf32_on_a_cuda_device_without_a_gpu(tmp_path):
    project = make_tiny_project(tmp_path / "tiny", precisions='["tf32"]')
    config = project.config.read_text().replace('name = "tiny"', 'name = "tiny"\ndevice = "cuda"')
    project.config.write_text(config)
    records = project.build("all")
    assert records["mlp:onnx-tf32"]["reason"] == f"{NEED}; this machine has none"
    assert records["mlp:torchscript-trace-tf32"]["reason"] == "no CUDA GPU on this machine"
    assert {records[name]["status"] for name in records if "tf32" in name} == {"skipped"}
