"""The onnx family with real torch, onnx and onnxruntime: export, fp16 conversion, reproducibility,
the ONNX Runtime runner and its errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from navbuild.rule import Skip
from navbuild.runner import RunnerError

from tests.rules.conftest import (assert_matches, build, context, copy_example, digests_in_subprocess,
                                  example_samples, file_bytes, out_digest, reference_outputs, run_all, runner_for,
                                  tricky_model, tricky_samples, write_model)

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("model", ["cnn", "encoder"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_onnx_matches_reference_on_cpu(examples, tmp_path: Path, model: str, precision: str) -> None:
    spec, samples, reference = examples[model]
    ctx = context(tmp_path, spec, samples, precision=precision)
    metadata = build("onnx", ctx)
    assert metadata["exporter"] == "torchscript" and metadata["opset"] == 17
    assert metadata["input_types"] == {spec.inputs[0]: "float32" if model == "cnn" else "int64"}
    assert metadata["output_types"] == {"logits": "float32"}  # fp16 keeps float32 I/O
    runner = runner_for("onnx", ctx)
    assert_matches(run_all(runner, samples), reference, precision)
    assert runner.provider == "CPUExecutionProvider"


def test_onnx_has_a_dynamic_batch_axis_and_declared_names(examples, tmp_path: Path) -> None:
    spec, samples, _ = examples["cnn"]
    ctx = context(tmp_path, spec, samples)
    build("onnx", ctx)
    graph = onnx.load(str(ctx.out_dir / "model.onnx")).graph
    assert [value.name for value in graph.input] == ["image"]
    assert [value.name for value in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    with runner_for("onnx", ctx) as runner:
        image = np.repeat(samples[0]["image"], spec.max_batch_size, axis=0)
        assert runner.infer({"image": image})["logits"].shape == (spec.max_batch_size, 10)


def test_fp16_graph_holds_float16_weights(examples, tmp_path: Path) -> None:
    spec, samples, _ = examples["encoder"]
    ctx = context(tmp_path, spec, samples, precision="fp16")
    build("onnx", ctx)
    model = onnx.load(str(ctx.out_dir / "model.onnx"))
    floats = {t.data_type for t in model.graph.initializer} - {onnx.TensorProto.INT64}
    assert floats == {onnx.TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_dict_and_tuple_outputs_are_flattened(tmp_path: Path) -> None:
    spec = tricky_model(tmp_path / "src")
    samples = tricky_samples()
    reference = reference_outputs(tmp_path, spec, samples)
    ctx = context(tmp_path, spec, samples)
    build("onnx", ctx)
    assert_matches(run_all(runner_for("onnx", ctx), samples), reference, "fp32")


# -- reproducibility ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkouts(module_tmp: Path) -> tuple:
    specs = [copy_example("cnn", module_tmp / "one" / "cnn"),
             copy_example("cnn", module_tmp / "two" / "much" / "deeper" / "cnn"),
             copy_example("cnn", module_tmp / "three" / "cnn", comment="a comment moves every line")]
    return specs, example_samples(specs[0])


@pytest.mark.parametrize("precision,exporter", [("fp32", "auto"), ("fp16", "auto"), ("fp32", "dynamo")])
def test_identical_bytes_from_two_folders_and_after_a_comment(checkouts, tmp_path: Path, precision: str,
                                                             exporter: str) -> None:
    specs, samples = checkouts
    if exporter == "dynamo":  # slow: one copy in a deeper folder with the comment covers both
        specs = [specs[0], copy_example("cnn", tmp_path / "deeper" / "cnn", comment="a comment")]
    outputs = []
    for index, spec in enumerate(specs):
        ctx = context(tmp_path, spec, samples, precision=precision, params={"exporter": exporter}, name=f"copy{index}")
        assert build("onnx", ctx)["exporter"] == ("torchscript" if exporter == "auto" else exporter)
        data = file_bytes(ctx, "model.onnx")
        assert str(spec.root).encode() not in data
        outputs.append(data)
    assert outputs[0] == outputs[1], "two checkout folders gave different bytes"
    assert outputs[0] == outputs[-1], "a comment edit changed the bytes"


def test_identical_bytes_in_a_fresh_process_with_another_hash_seed(tmp_path: Path) -> None:
    spec = tricky_model(tmp_path / "src")
    samples = tricky_samples()
    builds = [("onnx", "fp32", {}), ("onnx", "fp16", {}), ("onnx", "fp32", {"exporter": "dynamo"})]
    here = []
    for index, (rule, precision, params) in enumerate(builds):
        ctx = context(tmp_path, spec, samples, precision=precision, params=params, name=f"build{index}")
        build(rule, ctx)
        here.append(out_digest(ctx))
    assert digests_in_subprocess(tmp_path / "child", [(spec, samples, builds)]) == here


def test_dynamo_export_matches_reference_and_loads_without_normalization(examples, tmp_path: Path) -> None:
    spec, samples, reference = examples["encoder"]
    ctx = context(tmp_path, spec, samples, params={"exporter": "dynamo"}, normalize=False)
    metadata = build("onnx", ctx)
    assert metadata["exporter"] == "dynamo" and metadata["normalized"] is False and metadata["opset"] >= 18
    assert_matches(run_all(runner_for("onnx", ctx), samples), reference, "fp32")


# -- the fp16 conversion on a hand-made graph ----------------------------------------------------------------
def test_fp16_conversion_keeps_float32_ops_between_casts(tmp_path: Path) -> None:
    """Resize is on onnxconverter-common's block list: it runs in float32 between casts, its scales
    stay float32; the rest (the weight, the Constant's value_float) is float16."""
    from onnx import TensorProto, helper, numpy_helper

    from navbuild_rules.onnx.fp16 import convert_to_fp16

    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    weight = numpy_helper.from_array(np.full((1, 2, 1, 1), 0.5, np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "weight"], ["scaled"]),
         helper.make_node("Resize", ["scaled", "", "scales"], ["resized"], mode="nearest"),
         helper.make_node("Constant", [], ["bias"], value_float=0.25),
         helper.make_node("Add", ["resized", "bias"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 4, 4])], [scales, weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)  # ORT >= 1.14
    converted = convert_to_fp16(model)
    onnx.checker.check_model(converted, full_check=True)
    assert converted.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {t.name: t.data_type for t in converted.graph.initializer} == {"scales": TensorProto.FLOAT,
                                                                         "weight": TensorProto.FLOAT16}
    types = {value.name: value.type.tensor_type.elem_type for value in converted.graph.value_info}
    resize = next(node for node in converted.graph.node if node.op_type == "Resize")
    assert types[resize.input[0]] == TensorProto.FLOAT and types[resize.output[0]] == TensorProto.FLOAT
    assert types["bias"] == TensorProto.FLOAT16
    assert convert_to_fp16(model).SerializeToString() == converted.SerializeToString()
    x = np.random.default_rng(0).standard_normal((2, 2, 2, 2)).astype(np.float32)
    want, = onnxruntime.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    got, = onnxruntime.InferenceSession(converted.SerializeToString()).run(None, {"x": x})
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-2, rtol=1e-2)


def test_fp16_graph_that_onnx_runtime_refuses_fails_the_build(tmp_path: Path) -> None:
    """skl2onnx's LogisticRegression whose probabilities pass through an Identity at the output:
    onnxconverter-common declares the Identity float16 behind a float32-only op, which ONNX Runtime
    refuses to load. The build fails with ONNX Runtime's reason and writes nothing."""
    pytest.importorskip("skl2onnx")
    pytest.importorskip("onnxconverter_common")
    from onnx import helper

    from navbuild.rule import ModelSpec
    from navbuild_rules.onnx.build import write_onnx
    from tests.e2e.onnx_files import sklearn_classifier

    model = sklearn_classifier("lr")
    zipmap = next(node for node in model.graph.node if node.op_type == "ZipMap")
    zipmap.CopyFrom(helper.make_node("Identity", [zipmap.input[0]], [zipmap.output[0]], name="copy"))
    model.graph.output[1].CopyFrom(helper.make_tensor_value_info(zipmap.output[0], onnx.TensorProto.FLOAT, [None, 3]))
    spec = ModelSpec(name="lr", framework="onnx", entry="lr.onnx", root=tmp_path)
    ctx = context(tmp_path, spec, [{"X": np.ones((1, 4), np.float32)}], precision="fp16")
    with pytest.raises(RuntimeError, match="model lr: ONNX Runtime refuses the float16 graph: .*Type Error"):
        write_onnx(ctx, model)
    assert not any(ctx.out_dir.iterdir())


def test_an_output_that_is_a_sequence_is_refused_by_name(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    from navbuild.rule import ModelSpec

    graph = helper.make_graph([helper.make_node("SequenceConstruct", ["x", "x"], ["pair"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
                              [helper.make_value_info("pair", helper.make_sequence_type_proto(
                                  helper.make_tensor_type_proto(TensorProto.FLOAT, ["batch", 2])))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "pair.onnx"))
    spec = ModelSpec(name="pair", framework="onnx", entry="pair.onnx", root=tmp_path, max_batch_size=2)
    ctx = context(tmp_path, spec, [{"x": np.ones((1, 2), np.float32)}], name="reference")
    with pytest.raises(ValueError, match=r"model pair: output pair \(seq\(tensor\(float\)\)\) of the ONNX file is "
                                         r"not a tensor; navbuild checks and deploys tensor outputs only"):
        build("reference", ctx)


def test_cuda_provider_runs_tf32_only_for_tf32() -> None:
    from navbuild_rules.onnx.loader import cuda_provider_options

    assert cuda_provider_options("fp32") == {"use_tf32": "0"}  # the provider's default is 1
    assert cuda_provider_options("fp16") == {"use_tf32": "0"}
    assert cuda_provider_options("tf32") == {"use_tf32": "1"}


def test_runner_on_the_cpu_says_tf32_is_off(cnn_onnx) -> None:
    with runner_for("onnx", cnn_onnx) as runner:
        assert runner.runtime_info()["tf32"] is False


# -- runner errors --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn_onnx(examples, module_tmp: Path):
    spec, samples, _ = examples["cnn"]
    ctx = context(module_tmp, spec, samples, name="cnn-onnx")
    build("onnx", ctx)
    return ctx


@pytest.mark.parametrize("feed,message", [
    (lambda image: {"pixels": image}, "do not match"),
    (lambda image: {"image": image[0]}, "rank 4"),
    (lambda image: {"image": image.astype(np.int64)}, "expects float32"),
    # wrong channel count: refused by the base class from the graph's static shape, before ONNX Runtime
    (lambda image: {"image": image[:, :2]}, r"shape \[1, 2, 32, 32\], the artifact expects \[\?, 3, 32, 32\]"),
])
def test_runner_refuses_inputs_that_do_not_match(cnn_onnx, feed, message: str) -> None:
    image = cnn_onnx.samples[0]["image"]
    with runner_for("onnx", cnn_onnx) as runner:
        with pytest.raises(RunnerError, match=message):
            runner.infer(feed(image))


def test_runner_on_cuda_uses_the_cuda_provider_or_skips(cnn_onnx) -> None:
    """No CUDA provider is a fact about the machine: the check is skipped, not failed."""
    runner = runner_for("onnx", cnn_onnx)
    runner.device = "cuda"
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(Skip, match="CUDAExecutionProvider is not available"):
            runner.activate()
        return
    with runner:
        outputs = [runner.infer(sample) for sample in cnn_onnx.samples]
        runner.synchronize()
    assert runner.provider == "CUDAExecutionProvider"
    assert outputs[0]["logits"].shape == (cnn_onnx.samples[0]["image"].shape[0], 10)


# -- export failures -----------------------------------------------------------------------------------------
def test_export_failure_names_each_exporter_and_the_cause(tmp_path: Path) -> None:
    source = ("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
              "        return torch.linalg.eigvals(x @ x.transpose(1, 2)).real\n\n"
              "def build_model():\n    return M()\n")
    spec = write_model(tmp_path / "src", source, name="eig")
    with pytest.raises(RuntimeError) as failure:
        build("onnx", context(tmp_path, spec, [{"x": np.ones((2, 3, 3), np.float32)}]))
    headline = str(failure.value).splitlines()[0]
    assert "model eig: the torchscript ONNX exporter failed" in headline
    assert "model eig: the dynamo ONNX exporter failed" in headline
    assert "linalg_eigvals" in headline


def test_unknown_exporter_is_refused(examples, tmp_path: Path) -> None:
    spec, samples, _ = examples["cnn"]
    with pytest.raises(ValueError, match="exporter 'tensorflow' is not one of"):
        build("onnx", context(tmp_path, spec, samples, params={"exporter": "tensorflow"}))


@pytest.mark.parametrize("params,problem", [
    ({}, None),
    ({"exporter": "dynamo", "opset": 18}, None),
    ({"opset": 3}, "opset 3 is not an integer from 7 to 23"),
    ({"opset": "17"}, "opset '17' is not an integer"),
])
def test_params_are_validated_before_building(params: dict, problem: str | None) -> None:
    from navbuild_rules.torch.onnx_export import validate_params

    found = validate_params(params, "fp32")
    assert found == problem if problem is None else found.startswith(problem)
