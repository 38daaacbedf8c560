"""Device-bound keys, aliases, profiling through the engine, the package written by `all`, and
`build --from` a package."""
from __future__ import annotations

import json

import pytest

from navbuild.engine.graph import ARTIFACT
from navbuild.engine.keys import Pending
from navbuild.engine.project import open_project

from .conftest import make_project, statuses

ALL_FORMATS = '["torchscript-trace", "onnx", "torch-compile", "aoti", "trt", "ort-trt", "torch-trt"]'


def _keys(config, monkeypatch, fingerprint: str) -> dict[str, str]:
    monkeypatch.setenv("NAVBUILD_DEVICE_FINGERPRINT", fingerprint)
    session = open_project(config)
    keys = {}
    for name, target in session.graph.targets.items():
        if target.kind == ARTIFACT:
            try:
                keys[name] = session.key(name)[0]
            except Pending:  # its upstream (torch-export for torch-trt) is not built in this project
                pass
    session.close()
    return keys


def test_only_device_bound_targets_change_key_with_the_device_fingerprint(project, monkeypatch):
    text = project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]', f"formats = {ALL_FORMATS}")
    project.config.write_text(text)
    first = _keys(project.config, monkeypatch, "gpu-A")
    second = _keys(project.config, monkeypatch, "gpu-B")
    session = open_project(project.config)
    changed = {name for name in first if first[name] != second[name]}
    device_bound = {name for name, t in session.graph.targets.items()
                    if t.kind == ARTIFACT and t.rule.device_bound and name in first}
    assert {n.split(":", 1)[1].split("-fp")[0] for n in device_bound} >= {"torch-compile", "aoti", "trt", "ort-trt"}
    assert changed == device_bound
    # portable targets keep their key, so a second machine reuses them from a shared store
    assert first["cnn:onnx"] == second["cnn:onnx"]


def test_aliases_select_across_models(project):
    text = project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]', f"formats = {ALL_FORMATS}")
    text = text.replace("[models.cnn.targets]\n", '[models.cnn.targets]\nprecisions = ["fp32", "fp16"]\n')
    project.config.write_text(text)
    graph = open_project(project.config).graph
    assert graph.aliases["trt-fp16"] == ["cnn:trt-fp16"]
    assert set(graph.aliases["trt"]) == {"cnn:trt-fp32", "cnn:trt-fp16", "encoder:trt-fp32"}
    assert "cnn:onnx-fp16" in graph.aliases["fp16"] and "encoder:onnx" not in graph.aliases["fp16"]
    assert set(graph.aliases["onnx"]) == {"cnn:onnx", "cnn:onnx-fp16", "encoder:onnx"}  # every precision, like trt
    assert all(name.startswith("cnn:") for name in graph.aliases["cnn"])
    selected = graph.resolve(["trt-fp16"])
    assert selected == ["cnn:trt-fp16", "cnn:trt-fp16.check"]


def test_missing_tools_are_skipped_with_the_reason_and_hide_nothing(project):
    text = project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]',
                                              'formats = ["torchscript-trace", "onnx", "trt", "torch-trt"]')
    project.config.write_text(text)
    records = project.build("cnn")
    assert records["cnn:trt-fp32"]["status"] == "skipped"
    assert records["cnn:trt-fp32"]["reason"] in ("tensorrt is not installed", "no CUDA GPU on this machine",
                                                 "tensorrt is not installed; no CUDA GPU on this machine")
    assert records["cnn:torch-trt-fp32"]["status"] == "skipped"
    assert records["cnn:onnx"]["status"] == "cached"
    assert records["cnn:trt-fp32.check"]["status"] == "skipped"


def test_profile_through_the_engine_is_cached_and_forced(project):
    text = project.config.read_text().replace(
        "[profile]\nenabled = false", "[profile]\nbatch_sizes = [1, 2]\nbudget_s = 0.5\n"
        "max_trials = 4\nstrategies = [\"max-throughput\", \"min-latency\"]")
    project.config.write_text(text)
    first = project.build("cnn:onnx")
    profile = first["cnn:onnx.profile"]
    assert profile["status"] == "built"
    assert [p["batch_size"] for p in profile["metadata"]["points"]] == [1, 2]
    assert first["cnn:onnx"]["status"] == "cached"
    again = project.build("cnn:onnx")
    assert again["cnn:onnx.profile"]["status"] == "cached"
    forced = project.build("profile", "cnn:onnx", "--force")
    assert forced["cnn:onnx.profile"]["status"] == "built"
    assert forced["cnn:onnx"]["status"] == "cached"  # --force on a profile never rebuilds the artifact
    report = project.root / "navbuild-out" / "cnn" / "report"
    assert (report / "report.json").is_file() and (report / "profile.png").is_file()
    assert json.loads((project.out("cnn:onnx") / "profile.json").read_text())["points"]


def test_incorrect_artifact_is_never_profiled(project):
    text = project.config.read_text().replace("[profile]\nenabled = false", "[profile]\nbatch_sizes = [1]")
    text += "\n[models.cnn.correctness.outputs.logits]\natol = 0.0\nrtol = 0.0\n"
    project.config.write_text(text)
    records = project.build("cnn:onnx", expect=1)
    assert records["cnn:onnx.check"]["status"] == "failed"
    assert "exceeds atol" in records["cnn:onnx.check"]["reason"]
    assert records["cnn:onnx.profile"]["status"] == "skipped"


def test_all_writes_a_reproducible_package_and_build_from_reuses_it(project, tmp_path, monkeypatch):
    from navbuild.cli import main
    from navbuild.hashing import digest_file

    project.build()
    package = project.root / "navbuild-out" / "e2e.nav"
    assert package.is_file()
    first = digest_file(package)
    assert main(["--config", str(project.config), "package", "-o", str(tmp_path / "again.nav")]) == 0
    assert digest_file(tmp_path / "again.nav") == first

    # another checkout of the same project, with an empty store, imports the package
    other = make_project(tmp_path / "other" / "checkout")
    report = tmp_path / "from.json"
    code = main(["--config", str(other.config), "--json", str(report), "-q", "build", "--from", str(package)])
    assert code == 0
    records = statuses(json.loads(report.read_text()))
    for name in ("cnn:onnx", "cnn:torchscript-trace"):
        assert records[name] == "cached", (name, records[name])
    # samples, reference outputs and checks are never imported: computed here, they check the imports
    for name in ("cnn:samples", "cnn:reference", "cnn:onnx.check"):
        assert records[name] == "built", (name, records[name])


@pytest.mark.parametrize("bad", ["missing.nav"])
def test_build_from_a_missing_package_is_a_clear_error(project, bad, capsys):
    from navbuild.cli import main

    code = main(["--config", str(project.config), "build", "--from", str(project.root / bad)])
    assert code == 2
    assert bad in capsys.readouterr().err
