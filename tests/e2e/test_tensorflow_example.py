"""examples/tensorflow (a Keras model and a tf.Module) built with the CLI on the CPU.

With TensorFlow and tf2onnx installed (the ``tensorflow`` extra): every target built, checked
against the model run eagerly and profiled; TF-TRT and TensorRT skipped with the reason. Without
them: every target of the example skipped with the reason, and the run succeeds.
"""
from __future__ import annotations

import importlib.util

import pytest

from tests.e2e.conftest import assert_built_checked_and_profiled, copy_example

HAVE_TF = all(importlib.util.find_spec(name) for name in ("tensorflow", "tf2onnx", "onnxruntime"))
needs_tf = pytest.mark.skipif(not HAVE_TF, reason="tensorflow, tf2onnx or onnxruntime is not installed")
BUILT = ("classifier:savedmodel", "classifier:onnx", "classifier:onnx-fp16", "scorer:savedmodel", "scorer:onnx")
GPU_ONLY = ("classifier:tf-trt-fp32", "classifier:tf-trt-fp16", "classifier:trt-fp32", "classifier:trt-fp16")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    project = copy_example("tensorflow", tmp_path_factory.mktemp("tensorflow") / "example", "model_repository")
    return project, project.build("all")


@needs_tf
def test_every_target_builds_checks_and_profiles(example):
    _, records = example
    assert_built_checked_and_profiled(records, BUILT, [1, 2, 4])
    for name in GPU_ONLY:
        assert records[name]["status"] == "skipped" and records[name]["reason"], records[name]


@needs_tf
def test_a_second_run_builds_nothing(example):
    project, _ = example
    again = project.build("all")
    assert {again[name]["status"] for name in again if name.split(".")[0] not in GPU_ONLY} == {"cached"}


@needs_tf
def test_savedmodel_and_onnx_bytes_depend_on_the_model_alone(example, tmp_path):
    """Built again in another folder, with another store, after other models in the same process:
    the same SavedModel and ONNX bytes (built in a fresh process each)."""
    _, first = example
    records = copy_example("tensorflow", tmp_path / "again", "model_repository").build("classifier:onnx")
    for name in ("classifier:savedmodel", "classifier:onnx"):
        assert records[name]["status"] == "built" and records[name]["digest"] == first[name]["digest"]


@needs_tf
def test_savedmodel_deploys_to_the_tensorflow_backend(example):
    project, _ = example
    repo = project.root / "model_repository"
    project.build("triton", "--repo", str(repo), "--model", "scorer", "--target", "savedmodel")
    folder = repo / "scorer"
    config = (folder / "config.pbtxt").read_text()
    assert 'backend: "tensorflow"' in config and 'platform: "tensorflow_savedmodel"' in config
    for name in ("features", "scale", "score", "probs"):
        assert f'name: "{name}"' in config  # the signature's names, which Triton serves
    assert config.count("TYPE_FP32") == 4
    assert (folder / "1" / "model.savedmodel" / "saved_model.pb").is_file()
    assert (folder / "1" / "model.savedmodel" / "variables" / "variables.index").is_file()


@pytest.mark.skipif(HAVE_TF, reason="TensorFlow is installed: the example builds")
def test_without_tensorflow_every_target_is_skipped_with_the_reason(example):
    _, records = example
    assert {record["status"] for name, record in records.items() if name.endswith(":samples")} == {"built"}
    targets = {name: record for name, record in records.items() if ":" in name and not name.endswith(":samples")}
    assert targets and {record["status"] for record in targets.values()} == {"skipped"}  # and the run succeeded
    assert "tensorflow is not installed" in records["classifier:reference"]["reason"]
    assert "tensorflow is not installed" in records["classifier:savedmodel"]["reason"]

