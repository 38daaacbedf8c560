"""`clean` and `gc` delete only what navbuild wrote (issue 21, item 4): the folders it made under out
(each carries a marker), the files it names there, store objects named by their digest and its own
temp folders; `--dry-run` says what they would remove and removes nothing."""
from __future__ import annotations

import os
from pathlib import Path

from navbuild.cli import main
from navbuild.engine.owned import MARKER

from .conftest import Project


def navbuild(project: Project, *words: str) -> int:
    return main(["--config", str(project.config), *words])


def test_clean_dry_run_removes_nothing_then_clean_removes_what_navbuild_made(project, capsys):
    out = project.root / "navbuild-out"
    assert (out / MARKER).is_file() and (out / "cnn" / "onnx" / MARKER).is_file()
    before = sorted(out.rglob("*"))
    assert navbuild(project, "clean", "--dry-run") == 0
    assert f"clean: would remove {out}" in capsys.readouterr().out
    assert sorted(out.rglob("*")) == before
    assert navbuild(project, "clean", "cnn:onnx", "--dry-run") == 0
    assert (out / "cnn" / "onnx" / "model.onnx").is_file()
    assert navbuild(project, "clean", "cnn:onnx") == 0
    assert not (out / "cnn" / "onnx").exists() and (out / "cnn" / "torchscript-trace").is_dir()
    assert navbuild(project, "clean") == 0
    assert not out.exists()


def test_an_out_folder_navbuild_did_not_make_keeps_what_it_held(project, capsys):
    """out = "build", a folder of the user's: clean removes navbuild's folders and files in it, no more."""
    build = project.root / "build"
    (build / "cnn").mkdir(parents=True)
    (build / "notes.txt").write_text("mine")
    (build / "cnn" / "plan.txt").write_text("mine too")  # a folder navbuild writes into but did not make
    project.config.write_text(project.config.read_text().replace('name = "e2e"', 'name = "e2e"\nout = "build"'))
    project.build()
    assert not (build / MARKER).exists() and (build / "cnn" / "onnx" / MARKER).is_file()
    assert (build / "e2e.nav").is_file() and (build / "encoder" / MARKER).is_file()
    assert navbuild(project, "clean") == 0
    output = capsys.readouterr().out
    assert f"{build} itself is kept" in output
    assert sorted(p.relative_to(build).as_posix() for p in build.rglob("*")) == ["cnn", "cnn/plan.txt", "notes.txt"]


def test_gc_dry_run_counts_and_gc_removes_only_what_it_names(project, capsys):
    store = project.root / ".navbuild"
    for manifest in (store / "actions").glob("*/*"):
        manifest.unlink()  # every build forgotten: every object is unreachable
    objects = sorted((store / "objects").glob("*/*"))
    stray = store / "objects" / "zz" / "notes.txt"  # not named by a digest: not navbuild's
    stray.parent.mkdir()
    stray.write_text("mine")
    mine = store / "tmp" / "my-data"  # tmp/ holds only <pid>-<hex> folders of navbuild's processes
    mine.mkdir(parents=True)
    os.utime(mine, (1, 1))
    assert navbuild(project, "gc", "--dry-run") == 0
    assert f"gc: would remove {len(objects)} objects" in capsys.readouterr().out
    assert sorted((store / "objects").glob("*/*")) == sorted([*objects, stray])
    assert navbuild(project, "gc") == 0
    assert sorted((store / "objects").glob("*/*")) == [stray] and mine.is_dir()


def test_a_build_prunes_undeclared_targets_but_not_a_folder_it_did_not_make(project):
    out = project.root / "navbuild-out"
    mine = out / "cnn" / "my-notes"
    mine.mkdir()
    (mine / "n.txt").write_text("mine")
    project.config.write_text(project.config.read_text().replace(
        '[models.cnn.targets]\nformats = ["torchscript-trace", "onnx"]', '[models.cnn.targets]\nformats = ["onnx"]'))
    project.build()
    assert not (out / "cnn" / "torchscript-trace").exists()  # navbuild's, no longer declared
    assert (mine / "n.txt").read_text() == "mine"
