"""ONNX files as people have them (``tests/e2e/onnx_files.py``), built with the CLI on the CPU:
scikit-learn classifiers with a ZipMap output, an opset-9 CNN whose initializers are graph inputs,
models without a batch dimension (float64 and int64 inputs named "0" and "1"), each checked
against the file itself on ONNX Runtime, profiled and deployed to Triton's ONNX Runtime backend."""
from __future__ import annotations

import numpy as np
import pytest

from tests.e2e.conftest import Project, assert_built_checked_and_profiled
from tests.e2e import onnx_files

pytest.importorskip("onnxruntime", reason="ONNX files run on ONNX Runtime")
pytest.importorskip("skl2onnx", reason="the scikit-learn models are converted by skl2onnx (the test extra)")
pytest.importorskip("onnxconverter_common", reason="fp16 ONNX comes from onnxconverter-common (the onnx extra)")
pytest.importorskip("onnxslim", reason="onnx-slim needs onnxslim (the onnx extra)")

CONFIG = """
[project]
name = "onnx-files"

[profile]
batch_sizes = [1, 2]
min_window_runs = 3
window_s = 0.002
max_trials = 3

[models.lr]
framework = "onnx"
entry = "lr.onnx"
samples = "samples.py:iris"
max_batch_size = 4
[models.lr.targets]
formats = ["onnx"]
precisions = ["fp32", "fp16"]

[models.rf]
framework = "onnx"
entry = "rf.onnx"
samples = "samples.py:iris"
max_batch_size = 4
[models.rf.targets]
formats = ["onnx", "onnx-slim"]
precisions = ["fp32", "fp16"]

[models.squeeze]
framework = "onnx"
entry = "squeeze9.onnx"
samples = "samples.py:images"
max_batch_size = 2
[models.squeeze.targets]
formats = ["onnx", "onnx-slim"]
precisions = ["fp32", "fp16"]

[models.slimonly]  # only onnx-slim: its onnx upstream is implicit (checked, not profiled)
framework = "onnx"
entry = "squeeze9.onnx"
samples = "samples.py:images"
max_batch_size = 2
[models.slimonly.targets]
formats = ["onnx-slim"]

[models.add]
framework = "onnx"
entry = "add.onnx"
samples = "samples.py:add"
inputs = ["0", "1"]
max_batch_size = 0
[models.add.targets]
formats = ["onnx", "onnx-slim"]

[models.expand]
framework = "onnx"
entry = "expand.onnx"
samples = "samples.py:expand"
max_batch_size = 0
[models.expand.targets]
formats = ["onnx"]

[models.ints]
framework = "onnx"
entry = "ints.onnx"
samples = "samples.py:ints"
max_batch_size = 0
[models.ints.targets]
formats = ["onnx", "onnx-slim"]
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Project, dict[str, dict]]:
    root = tmp_path_factory.mktemp("onnx_files") / "project"
    root.mkdir()
    onnx_files.write_files(root)
    (root / "navbuild.toml").write_text(CONFIG)
    project = Project(root)
    return project, project.build("all")


def reference(project: Project, model: str) -> list[dict[str, np.ndarray]]:
    from navbuild import tensors

    return tensors.load(project.out(f"{model}:reference") / "reference.tensors")


def test_every_file_builds_checks_and_profiles(built):
    _, records = built
    assert_built_checked_and_profiled(records, ("lr:onnx", "rf:onnx", "rf:onnx-slim", "squeeze:onnx",
                                                "squeeze:onnx-fp16", "squeeze:onnx-slim"), [1, 2])
    assert_built_checked_and_profiled(records, ("add:onnx", "add:onnx-slim", "expand:onnx", "ints:onnx",
                                                "ints:onnx-slim"), [1])  # no batch: one point, the sample as it is


def test_zipmap_outputs_are_read_as_their_probabilities(built):
    import onnx

    project, _ = built
    for model in ("lr", "rf"):
        first = reference(project, model)[0]
        assert first["output_probability"].dtype == np.float32 and first["output_probability"].shape == (1, 3)
        np.testing.assert_allclose(first["output_probability"].sum(axis=1), 1.0, rtol=1e-5)
        assert first["output_label"].dtype == np.int64
        graph = onnx.load(str(project.out(f"{model}:onnx") / "model.onnx")).graph
        assert "ZipMap" not in {node.op_type for node in graph.node}
        assert "ZipMap removed before output_probability" in (project.out(f"{model}:onnx") / "build.log").read_text()


def test_fp16_that_does_not_apply_is_skipped_with_the_reason(built):
    _, records = built
    for model, ops in (("lr", "LinearClassifier, Normalizer"), ("rf", "TreeEnsembleClassifier")):
        record = records[f"{model}:onnx-fp16"]
        assert record["status"] == "skipped", record
        assert f"float16 does not apply: its operators ({ops}) are ai.onnx.ml ones" in record["reason"]
        assert records[f"{model}:onnx-fp16.check"]["status"] == "skipped"


def test_an_opset9_file_with_initializer_inputs_converts_to_fp16_and_slims(built):
    import onnx

    project, records = built
    for target in ("squeeze:onnx-fp16", "squeeze:onnx-slim"):
        model = onnx.load(str(project.out(target) / "model.onnx"))
        assert [value.name for value in model.graph.input] == ["data"] and model.ir_version >= 4
    fp16 = onnx.load(str(project.out("squeeze:onnx-fp16") / "model.onnx"))
    assert {t.data_type for t in fp16.graph.initializer if t.name.endswith("_w")} == {onnx.TensorProto.FLOAT16}
    assert records["squeeze:onnx-fp16.check"]["correctness"]["outputs"]["prob"]["max_abs"] < 1e-2
    source = onnx.load(str(project.out("squeeze:onnx") / "model.onnx"))
    assert len(source.graph.input) == 12 and source.ir_version == 3  # the fp32 target is the file as it is


def test_models_without_a_batch_dimension_match_onnx_test_data(built):
    project, records = built
    for model, output in (("add", "2"), ("expand", "Y"), ("ints", "3")):
        got = reference(project, model)[0][output]
        want = onnx_files.expected(model)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert reference(project, "add")[0]["2"].dtype == np.float64


def test_triton_serves_no_batch_models_with_their_full_shapes(built):
    project, _ = built
    repo = project.root / "model_repository"
    project.build("triton", "--repo", str(repo), "--model", "add")
    config = (repo / "add" / "config.pbtxt").read_text()
    assert "max_batch_size" not in config  # 0: no batching
    assert 'name: "0"\n  data_type: TYPE_FP64\n  dims: 2\n  dims: 3\n' in config
    assert 'name: "1"\n  data_type: TYPE_FP64\n  dims: 3\n' in config


def test_triton_serves_a_classifier_s_probabilities_as_a_tensor(built):
    project, _ = built
    repo = project.root / "model_repository"
    project.build("triton", "--repo", str(repo), "--model", "rf")
    config = (repo / "rf" / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in config
    assert 'name: "output_probability"\n  data_type: TYPE_FP32\n  dims: 3\n' in config


def test_triton_deploys_a_model_whose_only_format_is_onnx_slim(built):
    project, records = built
    assert records["slimonly:onnx-slim.profile"]["status"] in ("built", "cached")  # squeeze's: the same key
    assert "slimonly:onnx.profile" not in records  # an implicit upstream is checked, not profiled
    repo = project.root / "model_repository"
    project.build("triton", "--repo", str(repo), "--model", "slimonly")
    assert (repo / "slimonly" / "1" / "model.onnx").read_bytes() == (project.out("slimonly:onnx-slim")
                                                                      / "model.onnx").read_bytes()
