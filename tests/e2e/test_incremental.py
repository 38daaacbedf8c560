"""Issue 3's build guarantees, end to end with real torch and onnxruntime."""
from __future__ import annotations

import os
import shutil

import pytest

from .conftest import make_project, statuses

ARTIFACTS = ["cnn:torchscript-trace", "cnn:onnx", "encoder:torchscript-trace", "encoder:onnx"]
PORTABLE = ARTIFACTS + ["cnn:samples", "cnn:reference", "encoder:samples", "encoder:reference"]


def test_cold_build_builds_and_checks_every_target(warm_project):
    _, records = warm_project
    for name in ARTIFACTS:
        assert records[name]["status"] == "built", records[name]
        check = records[f"{name}.check"]
        assert check["status"] == "built", check
        assert check["correctness"]["passed"] is True
        assert check["correctness"]["outputs"]["logits"]["max_abs"] < 1e-4


def test_second_build_builds_nothing(project):
    records = project.build()
    assert set(statuses(records).values()) == {"cached"}, statuses(records)


def test_weight_edit_rebuilds_only_that_model(project, warm_project):
    import torch

    _, cold = warm_project
    weights = project.root / "vision" / "weights.pt"
    state = torch.load(weights, weights_only=True)
    state["head.bias"] += 0.5
    torch.save(state, weights)
    full = project.build()
    records = statuses(full)
    for name, status in records.items():
        if name.startswith("encoder:"):
            assert status == "cached", (name, status)
    for name in ("cnn:reference", "cnn:torchscript-trace", "cnn:onnx", "cnn:onnx.check"):
        assert records[name] == "built", (name, records[name])
    # the samples function lives in the same file set: re-run, same digest, so nothing else follows from it
    assert full["cnn:samples"]["digest"] == cold["cnn:samples"]["digest"]
    assert full["cnn:onnx"]["digest"] != cold["cnn:onnx"]["digest"]


def test_comment_edit_rebuilds_exports_with_same_digest_and_nothing_downstream(project, warm_project):
    _, cold = warm_project
    model_file = project.root / "vision" / "model.py"
    model_file.write_text("# a comment that moves every line down\n" + model_file.read_text())
    records = project.build()
    for name in ("cnn:torchscript-trace", "cnn:onnx", "cnn:reference"):
        assert records[name]["status"] == "built", (name, records[name])
        assert records[name]["digest"] == cold[name]["digest"], f"{name} digest changed after a comment edit"
    for name in ("cnn:torchscript-trace.check", "cnn:onnx.check"):
        assert records[name]["status"] == "cached", (name, records[name])  # early cutoff


def test_tolerance_change_reruns_only_correctness(project):
    config = project.config.read_text().replace("atol = 1e-4", "atol = 2e-4", 1)
    project.config.write_text(config)
    records = statuses(project.build())
    for name, status in records.items():
        expected = "built" if name.endswith(".check") else "cached"
        assert status == expected, (name, status)


def test_max_batch_size_change_rebuilds_the_exports(project):
    config = project.config.read_text().replace("max_batch_size = 16", "max_batch_size = 32")
    project.config.write_text(config)
    records = statuses(project.build())
    assert records["cnn:torchscript-trace"] == "built"
    assert records["cnn:onnx"] == "built"
    assert records["encoder:onnx"] == "cached"


def test_second_clone_with_a_copy_of_the_store_builds_nothing(project, tmp_path):
    clone = tmp_path / "elsewhere" / "clone"
    shutil.copytree(project.root, clone, ignore=shutil.ignore_patterns("navbuild-out"))
    from .conftest import Project

    records = Project(clone).build()
    assert set(statuses(records).values()) == {"cached"}, statuses(records)
    assert (clone / "navbuild-out" / "cnn" / "onnx" / "model.onnx").is_file()


def test_cold_build_in_another_folder_gives_the_same_portable_digests(warm_project, tmp_path):
    _, cold = warm_project
    other = make_project(tmp_path / "a" / "different" / "checkout")
    records = other.build()
    for name in PORTABLE:
        assert records[name]["status"] == "built"
        assert records[name]["digest"] == cold[name]["digest"], f"{name} differs between checkouts"


def test_deleting_outputs_restores_them_without_rebuilding(project):
    model = project.out("cnn:onnx") / "model.onnx"
    original = model.read_bytes()
    shutil.rmtree(project.root / "navbuild-out")
    records = statuses(project.build())
    assert set(records.values()) == {"cached"}, records
    assert model.read_bytes() == original
    assert (project.out("cnn:onnx") / "correctness.json").is_file()


def test_edited_output_is_restored_from_the_store(project):
    model = project.out("cnn:onnx") / "model.onnx"
    original = model.read_bytes()
    model.write_bytes(b"garbage")
    project.build()
    assert model.read_bytes() == original


def test_corrupted_store_object_is_detected_and_rebuilt(project):
    store = project.root / ".navbuild"
    model = project.out("cnn:onnx") / "model.onnx"
    from navbuild.hashing import digest_file

    digest = digest_file(model)
    obj = store / "objects" / digest[:2] / digest[2:]
    os.chmod(obj, 0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))
    shutil.rmtree(project.root / "navbuild-out")
    records = statuses(project.build())
    assert records["cnn:onnx"] == "built", records
    assert digest_file(model) == digest
    assert digest_file(obj) == digest


def test_two_concurrent_builds_share_the_store_and_build_each_target_once(tmp_path):
    project = make_project(tmp_path / "project")
    first, first_report = project.build_subprocess()
    second, second_report = project.build_subprocess()
    outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    import json

    one, two = json.loads(first_report.read_text()), json.loads(second_report.read_text())
    for name in one:
        built = [r[name]["status"] for r in (one, two)].count("built")
        assert built == 1, (name, one[name]["status"], two[name]["status"])
        assert one[name]["digest"] == two[name]["digest"]


def test_parallel_jobs_build_the_same_digests(warm_project, tmp_path):
    """-j forks worker processes: run from a fresh process, as the CLI is (this one imported torch)."""
    import json

    _, cold = warm_project
    project = make_project(tmp_path / "project")
    process, report = project.build_subprocess("-j", "2")
    output = process.communicate(timeout=900)[0]
    assert process.returncode == 0, output
    records = json.loads(report.read_text())
    for name in PORTABLE:
        assert records[name]["digest"] == cold[name]["digest"]


def test_status_and_explain_name_the_changed_input(project, capsys):
    from navbuild.cli import main

    weights = project.root / "text" / "weights.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")  # still loads? no: only explain is run
    assert main(["--config", str(project.config), "explain", "encoder:onnx"]) == 0
    out = capsys.readouterr().out
    assert "sources.text/weights.pt" in out
    assert main(["--config", str(project.config), "status"]) == 0
    out = capsys.readouterr().out
    assert "encoder:reference" in out and "stale" in out


def test_no_op_check_imports_no_framework(project):
    import subprocess
    import sys

    code = ("import sys; from navbuild.cli import main; rc = main(['--config', %r, '-q']); "
            "bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') if m in sys.modules]; "
            "print('imported', bad); sys.exit(rc or (3 if bad else 0))") % str(project.config)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", [["list"], ["status"]])
def test_info_commands_run(project, command, capsys):
    from navbuild.cli import main

    assert main(["--config", str(project.config), *command]) == 0
    assert "cnn:onnx" in capsys.readouterr().out
