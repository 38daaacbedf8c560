"""Writes that fail (issue 10, item 4): a file-size limit stands for a full disk here (both make a
write fail with an OSError); the package, and an exporter's C++ writer, meet it without a traceback
or an abort taking the build down."""
from __future__ import annotations

import json
import resource
import subprocess
import sys

from .conftest import make_project


def run_limited(project, limit: int, *words: str) -> subprocess.CompletedProcess:
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), *words],
                          capture_output=True, text=True, timeout=600, preexec_fn=limit_files)


def test_a_package_that_cannot_be_written_leaves_the_build_standing(project, tmp_path):
    package = project.root / "navbuild-out" / "e2e.nav"
    package.unlink(missing_ok=True)
    largest = max(p.stat().st_size for p in (project.root / "navbuild-out").rglob("*") if p.is_file())
    result = run_limited(project, largest + 4096)
    assert result.returncode == 0, result.stdout + result.stderr  # every target is still cached
    assert "package not written: File too large" in result.stderr and "Traceback" not in result.stderr
    assert not package.exists()
    result = run_limited(project, largest + 4096, "package", "-o", str(tmp_path / "x.nav"))
    assert result.returncode == 1 and "navbuild: error: File too large" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "x.nav").exists()


def test_torchscript_save_over_a_file_size_limit_fails_its_target_only(tmp_path):
    project = make_project(tmp_path / "project")
    report = project.root / "records.json"
    result = run_limited(project, 200_000, "--json", str(report), "cnn:torchscript-trace", "cnn:onnx")
    assert result.returncode == 1, result.stdout + result.stderr  # not 134: the abort stayed in the worker
    records = json.loads(report.read_text())
    for name in ("cnn:torchscript-trace", "cnn:onnx"):
        assert records[name]["status"] == "failed", records[name]
    reason = records["cnn:torchscript-trace"]["reason"]
    assert "SIGABRT" in reason or "File too large" in reason or "file" in reason.lower(), reason
    assert records["cnn:samples"]["status"] == "built" and records["cnn:reference"]["status"] == "built"
    assert "Traceback" not in result.stderr


def test_a_full_disk_while_writing_the_package_is_a_message(project):
    """A real full disk: navbuild-out on a tmpfs just larger than the outputs (needs mount rights)."""
    import shutil

    out = project.root / "navbuild-out"
    (out / "e2e.nav").unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) + 256 * 1024
    saved = project.root / "saved-out"
    shutil.move(out, saved)
    out.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(out)], capture_output=True)
    if mounted.returncode != 0:
        shutil.rmtree(out)
        shutil.move(saved, out)
        import pytest

        pytest.skip("no right to mount a small file system here")
    try:
        subprocess.run(["cp", "-a", f"{saved}/.", str(out)], check=True)
        result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(project.config)],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr  # every target cached: the build stands
        assert "package not written: No space left on device" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (out / "e2e.nav").exists()
        assert not [p for p in out.iterdir() if p.name.startswith(".e2e.nav")]  # no temp file left
    finally:
        subprocess.run(["umount", str(out)], check=False)
