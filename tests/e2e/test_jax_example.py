"""examples/jax (a function plus its parameters) built with the CLI on the CPU.

With JAX, TensorFlow and tf2onnx installed (the ``jax`` and ``tensorflow`` extras): jax-jit, the
jax2tf SavedModel and its ONNX built, checked against ``jax.jit``'s outputs and profiled; TF-TRT
and TensorRT skipped with the reason. Without them: every target skipped with the reason.
"""
from __future__ import annotations

import importlib.util

import pytest

from tests.e2e.conftest import assert_built_checked_and_profiled, copy_example

HAVE_JAX = all(importlib.util.find_spec(name) for name in ("jax", "tensorflow", "tf2onnx", "onnxruntime"))
needs_jax = pytest.mark.skipif(not HAVE_JAX, reason="jax, tensorflow, tf2onnx or onnxruntime is not installed")
BUILT = ("classifier:jax-jit", "classifier:savedmodel", "classifier:onnx")
GPU_ONLY = ("classifier:tf-trt-fp32", "classifier:trt-fp32")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    project = copy_example("jax", tmp_path_factory.mktemp("jax") / "example")
    return project, project.build("all")


@needs_jax
def test_every_target_builds_checks_and_profiles(example):
    _, records = example
    assert_built_checked_and_profiled(records, BUILT, [1, 2, 4])
    for name in GPU_ONLY:
        assert records[name]["status"] == "skipped" and records[name]["reason"], records[name]
    assert records["classifier:savedmodel"]["metadata"]["serialization"] == "graph"


@needs_jax
def test_a_second_run_builds_nothing(example):
    project, _ = example
    again = project.build("all")
    assert {again[name]["status"] for name in again if name.split(".")[0] not in GPU_ONLY} == {"cached"}


@needs_jax
def test_native_serialization_runs_in_tensorflow_but_does_not_convert_to_onnx(example, tmp_path):
    project = copy_example("jax", tmp_path / "native")
    text = project.config.read_text().replace('formats = ["jax-jit", "savedmodel", "onnx", "tf-trt", "trt"]',
                                              'formats = ["savedmodel", "onnx"]')
    project.config.write_text(text + '\n[models.classifier.targets.savedmodel]\nserialization = "native"\n')
    records = project.build("all", expect=1)
    assert records["classifier:savedmodel"]["status"] == "built"
    assert records["classifier:savedmodel.check"]["correctness"]["passed"]
    assert records["classifier:onnx"]["status"] == "failed"
    assert "XlaCallModule" in records["classifier:onnx"]["reason"]
    assert 'serialization = "graph"' in records["classifier:onnx"]["reason"]


@needs_jax
def test_an_entry_that_is_not_a_function_and_params_is_refused(tmp_path):
    from navbuild.rule import BuildContext, ModelSpec
    from navbuild_rules.jax import build

    (tmp_path / "m.py").write_text("def build_model():\n    return lambda x: x\n")
    spec = ModelSpec(name="m", framework="jax", entry="m.py:build_model", root=tmp_path, inputs=("x",))
    ctx = BuildContext(model=spec, target="m:reference", precision="fp32", device="cpu", params={},
                       out_dir=tmp_path, input_dir=None, samples=[], log=print, workdir=tmp_path)
    with pytest.raises(ValueError, match=r"must return \(apply, params\)"):
        build.build_reference(ctx)


def test_a_bad_serialization_is_a_config_error(tmp_path, capsys):
    from navbuild.cli import main

    project = copy_example("jax", tmp_path / "bad")
    project.config.write_text(project.config.read_text() + '\n[models.classifier.targets.savedmodel]\n'
                              'serialization = "stablehlo"\n')
    assert main(["--config", str(project.config), "all"]) == 2
    assert "serialization 'stablehlo' is not one of graph, native" in capsys.readouterr().err


@pytest.mark.skipif(HAVE_JAX, reason="JAX and TensorFlow are installed: the example builds")
def test_without_jax_every_target_is_skipped_with_the_reason(example):
    _, records = example
    assert {record["status"] for name, record in records.items() if name.endswith(":samples")} == {"built"}
    targets = {name: record for name, record in records.items() if ":" in name and not name.endswith(":samples")}
    assert targets and {record["status"] for record in targets.values()} == {"skipped"}  # and the run succeeded
    assert "is not installed" in records["classifier:reference"]["reason"]
