"""A model that fails to export: one clear failure with its log and rebuild command; nothing else hidden."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from navbuild.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_failed_export_keeps_its_log_and_names_the_rebuild_command(project, capsys):
    model = project.root / "text" / "model.py"
    # unpacking a tensor into names is not scriptable: torch.jit.script fails, tracing still works
    model.write_text(model.read_text().replace(".permute(2, 0, 3, 1, 4).unbind(0)", ".permute(2, 0, 3, 1, 4)"))
    text = project.config.read_text().replace(
        '[models.encoder.targets]\nformats = ["torchscript-trace", "onnx"]',
        '[models.encoder.targets]\nformats = ["torchscript-trace", "torchscript-script", "onnx"]')
    project.config.write_text(text)
    code = main(["--config", str(project.config), "encoder"])
    out = capsys.readouterr().out
    assert code == 1
    assert "encoder:torchscript-script failed" in out
    assert "rebuild just it, with full output: navbuild --config" in out and "encoder:torchscript-script --force" in out
    log = project.root / "navbuild-out" / "encoder" / "torchscript-script" / "build.log"
    assert "Traceback" in log.read_text() and "torch.jit.script" in log.read_text()
    records = project.build("encoder", expect=1)
    assert records["encoder:torchscript-script"]["status"] == "failed"
    assert records["encoder:torchscript-script.check"]["status"] == "failed"  # not run: its artifact failed
    # the other targets were built by the first run and are not hidden by the failure
    assert records["encoder:torchscript-trace"]["status"] == "cached"
    assert records["encoder:torchscript-trace.check"]["status"] == "cached"
    assert records["encoder:onnx"]["status"] == "cached"


def test_clean_and_gc(project):
    out_dir = project.root / "navbuild-out"
    assert main(["--config", str(project.config), "clean"]) == 0
    assert not out_dir.exists()
    weights = project.root / "vision" / "weights.pt"
    import torch

    state = torch.load(weights, weights_only=True)
    state["head.bias"] += 1.0
    torch.save(state, weights)
    project.build()
    objects_before = len(list((project.root / ".navbuild" / "objects").glob("*/*")))
    for manifest in (project.root / ".navbuild" / "actions").glob("*/*"):
        manifest.unlink()  # every build forgotten: all objects are unreachable
    assert main(["--config", str(project.config), "gc"]) == 0
    assert objects_before > 0
    assert not list((project.root / ".navbuild" / "objects").glob("*/*"))


def test_plain_doit_lists_the_same_graph():
    result = subprocess.run([sys.executable, "-m", "doit", "list", "-f", str(REPO / "dodo.py")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("cnn:onnx", "cnn:onnx.check", "encoder:torch-export", "all", "fp16"):
        assert name in result.stdout


def test_a_failure_is_replayed_for_the_same_key_until_retried(project, capsys):
    """Issue 9, item 5: a target that failed with the same key fails again at once, from its record."""
    model = project.root / "text" / "model.py"
    model.write_text(model.read_text().replace(".permute(2, 0, 3, 1, 4).unbind(0)", ".permute(2, 0, 3, 1, 4)"))
    project.config.write_text(project.config.read_text().replace(
        '[models.encoder.targets]\nformats = ["torchscript-trace", "onnx"]',
        '[models.encoder.targets]\nformats = ["torchscript-trace", "torchscript-script", "onnx"]'))
    first = project.build("encoder:torchscript-script", expect=1)["encoder:torchscript-script"]
    assert "failed before" not in first["reason"]
    log = project.out("encoder:torchscript-script") / "build.log"
    log.unlink()

    again = project.build("encoder:torchscript-script", expect=1)["encoder:torchscript-script"]
    assert again["reason"].startswith(first["reason"])
    assert "failed before with the same inputs; not run again, --retry-failed" in again["reason"]
    assert "Traceback" in log.read_text()  # the log comes back from the record
    assert again["metadata"]["rebuild"].endswith("encoder:torchscript-script --force --verbose")
    code = main(["--config", str(project.config), "encoder:torchscript-script"])
    assert code == 1 and "--retry-failed, or retry_failed=True from Python, runs it" in capsys.readouterr().out

    retried = project.build("encoder:torchscript-script", "--retry-failed", expect=1)["encoder:torchscript-script"]
    assert "failed before" not in retried["reason"]
    forced = project.build("encoder:torchscript-script", "--force", expect=1)["encoder:torchscript-script"]
    assert "failed before" not in forced["reason"]

    model.write_text(model.read_text().replace(".permute(2, 0, 3, 1, 4)", ".permute(2, 0, 3, 1, 4).unbind(0)"))
    fixed = project.build("encoder:torchscript-script")["encoder:torchscript-script"]
    assert fixed["status"] == "built"  # a new key: the record of the old one does not apply
