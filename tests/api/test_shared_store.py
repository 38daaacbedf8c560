"""The API and the CLI share the store: a model built through one is found by the other."""
from __future__ import annotations

import json

import navbuild
from navbuild.cli import main
from navbuild.engine import lockfile
from tests.example_cnn import cnn_config

TOML = cnn_config("shared", project='device = "cpu"')


def api_build(root):
    """The same model through the Python API: the entry, samples and settings the toml declares."""
    config = navbuild.OptimizeConfig(
        target_formats=("torchscript-trace", "onnx"), target_device="cpu", max_batch_size=16,
        input_names=("image",), output_names=("logits",), sources=["vision/model.py", "vision/weights.pt"],
        profiling=False, workspace=root)
    package = navbuild.torch.optimize("vision/model.py:build_model", "vision/model.py:make_samples", config,
                                      name="cnn", quiet=True)
    return {name: record.status for name, record in package.records.items()}


def cli_build(root):
    (root / "navbuild.toml").write_text(TOML)
    report = root / "records.json"
    assert main(["--config", str(root / "navbuild.toml"), "--json", str(report), "-q", "cnn"]) == 0
    return {name: record["status"] for name, record in json.loads(report.read_text()).items()}


def test_built_through_the_api_then_declared_in_navbuild_toml(vision):
    first = api_build(vision)
    assert first["cnn:onnx"] == "built" and first["cnn:torchscript-trace.check"] == "built"
    second = cli_build(vision)
    assert set(second.values()) == {"cached"}, second
    assert set(second) == set(first)
    # one scheduler under both faces: the same lock entries (the API's beside its own models)
    api_lock = lockfile.read(vision / ".navbuild-api" / lockfile.LOCK_NAME)
    assert "cnn:onnx" in api_lock and api_lock == lockfile.read(vision / lockfile.LOCK_NAME)


def test_built_by_the_cli_then_asked_for_through_the_api(vision):
    first = cli_build(vision)
    assert first["cnn:onnx"] == "built"
    second = api_build(vision)
    assert set(second.values()) == {"cached"}, second
