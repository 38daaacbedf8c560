"""examples/onnx_file (an ONNX file as the model) built with the CLI on the CPU: every target built,
checked against the file itself on ONNX Runtime and profiled; TensorRT skipped with the reason."""
from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.e2e.conftest import REPO, Project, assert_built_checked_and_profiled, copy_example

pytest.importorskip("onnxruntime", reason="the onnx_file example runs on ONNX Runtime")
EXAMPLE = REPO / "examples" / "onnx_file"
SLIM = importlib.util.find_spec("onnxslim") is not None  # the onnx-file extra
BUILT = ("classifier:onnx", "classifier:onnx-fp16") + (("classifier:onnx-slim",) if SLIM else ())


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    project = copy_example("onnx_file", tmp_path_factory.mktemp("onnx_file") / "example")
    return project, project.build("all")


def test_every_target_builds_checks_and_profiles(example):
    _, records = example
    assert_built_checked_and_profiled(records, BUILT, [1, 2, 4])
    if SLIM:
        slim = records["classifier:onnx-slim"]["metadata"]
        assert slim["nodes_after"] < slim["nodes_before"]  # the identity and the constant product are gone
    else:
        assert records["classifier:onnx-slim"]["reason"] == "onnxslim is not installed"
    for precision in ("fp32", "fp16"):
        skipped = records[f"classifier:trt-{precision}"]
        assert skipped["status"] == "skipped" and ("tensorrt" in skipped["reason"] or "GPU" in skipped["reason"])


def test_a_second_run_builds_nothing(example):
    project, _ = example
    again = project.build("all")
    assert {r["status"] for name, r in again.items() if not name.startswith("classifier:trt")} == {"cached"}


def test_the_simplified_model_deploys_to_onnx_runtime(example):
    project, records = example
    if not SLIM:
        pytest.skip("onnxslim is not installed")
    repo = project.root / "model_repository"
    project.build("triton", "--repo", str(repo), "--model", "classifier", "--target", "onnx-slim")
    config = (repo / "classifier" / "config.pbtxt").read_text()
    assert 'backend: "onnxruntime"' in config and 'platform: "onnxruntime_onnx"' in config
    assert (repo / "classifier" / "1" / "model.onnx").read_bytes() == (project.out("classifier:onnx-slim")
                                                                       / "model.onnx").read_bytes()


def test_declared_names_that_the_file_lacks_are_refused(example, tmp_path):
    project, _ = example
    root = tmp_path / "renamed"
    shutil.copytree(project.root, root, ignore=shutil.ignore_patterns("navbuild-out", ".navbuild", "model_repository"))
    (root / "navbuild.toml").write_text((root / "navbuild.toml").read_text().replace('["logits"]', '["scores"]'))
    records = Project(root).build("classifier:onnx", expect=1)
    reason = records["classifier:reference"]["reason"]
    assert "the ONNX file's outputs are ['logits'], but navbuild.toml declares ['scores']" in reason


def test_onnx_slim_serves_any_framework():
    from navbuild.engine.registry import default_registry

    registry = default_registry()
    assert "onnx-slim" in registry.formats("torch") and "onnx-slim" in registry.formats("onnx")
    assert registry.rule("onnx", "onnx").build.__module__ == "navbuild_rules.onnx_file.build"
    assert registry.rule("onnx", "torch").build.__module__ == "navbuild_rules.torch.onnx_export"


def test_the_example_file_is_what_its_script_writes():
    """model.onnx is generated; its bytes are fixed (the example's keys do not drift)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_onnx_example", EXAMPLE / "make_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build().SerializeToString() == (EXAMPLE / "model.onnx").read_bytes()
