"""navbuild.lock (written by every build) and ``navbuild verify`` (rebuild in a scratch store, compare).

The non-deterministic rule is a real plug-in: a module registered through the ``navbuild.rules``
entry point of a distribution on the child process's path, as a third-party rule family would be.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from navbuild.cli import main
from navbuild.engine import lockfile
from tests.example_cnn import cnn_project

REPO = Path(__file__).resolve().parents[2]

NOISY_RULES = '''"""A rule that is not deterministic on purpose: TorchScript plus a stamp of fresh random bytes."""
import os

from navbuild.rule import Rule


def build(ctx):
    ctx.copy_input("model.pt")
    (ctx.out_dir / "stamp.bin").write_bytes(os.urandom(16))


RULES = [Rule(name="noisy-trace", version="1", build=build, consumes="torchscript-trace", runner="torchscript")]
'''



def _plugin(folder: Path) -> Path:
    """A distribution on disk whose entry point registers ``noisy_rules``."""
    folder.mkdir()
    (folder / "noisy_rules.py").write_text(NOISY_RULES)
    info = folder / "navbuild_noisy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: navbuild-noisy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[navbuild.rules]\nnoisy = noisy_rules\n")
    return folder


def _cli(root: Path, *words: str, pythonpath: list[Path]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAVBUILD_")}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    return subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(root / "navbuild.toml"), *words],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600)


def test_verify_names_a_rule_that_is_not_deterministic(tmp_path):
    plugin = _plugin(tmp_path / "plugin")
    root = tmp_path / "project"
    root.mkdir()
    cnn_project(root, "noisy", formats=("torchscript-trace", "noisy-trace"))
    built = _cli(root, "all", "-q", pythonpath=[REPO, plugin])
    assert built.returncode == 0, built.stdout + built.stderr
    assert "cnn:noisy-trace" in lockfile.read(root / "navbuild.lock")

    verified = _cli(root, "verify", pythonpath=[REPO, plugin])
    assert verified.returncode == 1, verified.stdout + verified.stderr
    out = verified.stdout
    assert "not deterministic: rule noisy-trace (cnn:noisy-trace)" in " ".join(out.split())
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") >= 4}
    assert "NOT reproducible" in rows["cnn:noisy-trace"]
    assert "input differs" in rows["cnn:noisy-trace.check"]  # its key holds the noisy digest
    for name in ("cnn:samples", "cnn:reference", "cnn:torchscript-trace", "cnn:torchscript-trace.check"):
        assert "reproducible" in rows[name] and "NOT" not in rows[name], rows[name]


def test_every_build_writes_a_sorted_lock_without_times(project, capsys):
    path = project.root / "navbuild.lock"
    text = path.read_text()  # the warm build wrote it
    data = tomllib.loads(text)
    targets = [name for name in data if name != "version"]
    assert targets == sorted(targets)
    expected = {f"{m}:{t}" for m in ("cnn", "encoder")
                for t in ("samples", "reference", "torchscript-trace", "onnx", "torchscript-trace.check",
                          "onnx.check")}
    assert set(targets) == expected  # artifacts and checks; no profile
    assert set(data["cnn:onnx"]) == {"rule", "key", "digest"}
    assert str(project.root) not in text and "time" not in text.replace("# ", "")

    mtime = path.stat().st_mtime_ns
    project.build()  # a no-op: the lock is not rewritten
    assert path.read_text() == text and path.stat().st_mtime_ns == mtime

    path.unlink()
    project.build("cnn:onnx")  # a partial build locks what it reached
    assert set(lockfile.read(path)) == {"cnn:samples", "cnn:reference", "cnn:onnx", "cnn:onnx.check"}
    project.build()
    assert path.read_text() == text

    config = project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]', 'formats = ["onnx"]')
    project.config.write_text(config)
    project.build()
    assert not any("torchscript-trace" in name for name in lockfile.read(path))  # gone from the graph


def test_verify_sample_rebuilds_and_finds_the_project_reproducible(project, capsys):
    code = main(["--config", str(project.config), "verify", "encoder", "--sample", "1", "--seed", "7"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sample of 1 chosen with --seed 7" in out
    assert "reproducible" in out and "NOT" not in out
    assert not list((project.root / ".navbuild" / "tmp").glob("verify-*"))  # the scratch store is gone


def test_verify_says_what_changed_when_the_lock_is_stale(project, capsys):
    model = project.root / "vision" / "model.py"
    model.write_text(model.read_text() + "\n# an edit since the lock was written\n")
    code = main(["--config", str(project.config), "verify", "cnn:samples"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 1
    assert "key differs" in out and "sources.vision/model.py" in out


def test_verify_without_a_lock_exits_2(project, capsys):
    (project.root / "navbuild.lock").unlink()
    assert main(["--config", str(project.config), "verify"]) == 2
    assert "run `navbuild all` first" in capsys.readouterr().err
