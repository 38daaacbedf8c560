"""trt, ort-trt, ort-cuda, torch-trt: the pure-Python parts (profiles, batch range, parameters, int8
calibration) everywhere; the builds only as far as this machine allows (Skip with the reason).
Nothing here fakes TensorRT: where it is installed, the skip tests step aside."""
from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import pytest

from navbuild.engine.fingerprint import MachineInfo
from navbuild.rule import Skip
from navbuild_rules.tensorrt import ORT_CUDA, ORT_TRT, TRT, build, config, loader
from navbuild_rules.tensorrt.config import ShapeRange, TensorRTConfigError
from navbuild_rules.tensorrt.runner import TensorRTRunner, torch_dtype_for
from navbuild_rules.torch_tensorrt import TORCH_TRT
from tests.rules._ctx import image_samples, make_ctx, tiny_model

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_TORCH_TENSORRT = importlib.util.find_spec("torch_tensorrt") is not None


def ort_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return onnxruntime.get_available_providers()


def token_samples(shapes):
    return [{"tokens": np.zeros(shape, np.int64)} for shape in shapes]


# -- optimization profile -------------------------------------------------------------------------
def test_profile_from_samples_spans_the_batch_range():
    profile = config.profile_shapes(image_samples((1, 2, 4)), batch_dim=0, max_batch_size=16)
    assert profile == {"image": ShapeRange(min=(1, 3, 8, 8), opt=(16, 3, 8, 8), max=(16, 3, 8, 8))}
    profile = config.profile_shapes(image_samples((1, 2, 4)), batch_dim=0, max_batch_size=16, opt_batch_size=4)
    assert profile["image"].opt == (4, 3, 8, 8)


def test_profile_makes_other_varying_dimensions_dynamic():
    profile = config.profile_shapes(token_samples([(1, 16), (3, 12), (2, 16)]), 0, 8)
    assert profile["tokens"] == ShapeRange(min=(1, 12), opt=(8, 16), max=(8, 16))


def test_profile_spans_the_declared_bounds_of_a_dynamic_axis():
    """A sequence axis declared { name = "seq", min = 1, max = 128 } spans 1..128 in every input that
    has it, optimized for the longest sample; the short form spans 1 to the longest sample."""
    from navbuild.rule import ModelSpec

    samples = [{"ids": np.zeros((1, 8), np.int64), "mask": np.zeros((1, 8), np.int64)},
               {"ids": np.zeros((2, 13), np.int64), "mask": np.zeros((2, 13), np.int64)}]
    model = ModelSpec(name="bert", framework="torch", entry="m.py:f", root=Path("."), inputs=("ids", "mask"),
                      max_batch_size=4, dynamic_axes={"ids": {1: "seq"}, "mask": {1: "seq"}},
                      axis_bounds={"seq": {"min": 1, "max": 128}})
    profile = config.profile_shapes(samples, 0, 4, axes=config.axis_ranges(model, samples))
    assert profile == {name: ShapeRange(min=(1, 1), opt=(4, 13), max=(4, 128)) for name in ("ids", "mask")}
    model.axis_bounds = {}
    profile = config.profile_shapes(samples, 0, 4, axes=config.axis_ranges(model, samples))
    assert profile["ids"] == ShapeRange(min=(1, 1), opt=(4, 13), max=(4, 13))
    assert config.ort_profile_options(profile)["trt_profile_max_shapes"] == "ids:4x13,mask:4x13"


def test_profile_of_several_inputs_and_ort_option_strings():
    samples = [{"image": np.zeros((2, 3, 4, 4), np.float32), "mask": np.zeros((2, 5), np.int64)}]
    profile = config.profile_shapes(samples, 0, 4, opt_batch_size=2)
    assert config.ort_profile_options(profile) == {
        "trt_profile_min_shapes": "image:1x3x4x4,mask:1x5",
        "trt_profile_opt_shapes": "image:2x3x4x4,mask:2x5",
        "trt_profile_max_shapes": "image:4x3x4x4,mask:4x5",
    }


def test_batch_range():
    assert config.batch_range(image_samples((1, 2)), 0, 8) == (1, 8, 8)
    assert config.batch_range(image_samples((1, 2)), 0, 8, opt_batch_size=2) == (1, 2, 8)
    assert config.batch_range(image_samples((1,)), 0, 1) == (1, 1, 1)


@pytest.mark.parametrize("samples, max_batch, match", [
    (image_samples((1, 4)), 2, "a sample has batch 4, more than max_batch_size 2"),
    ([], 4, "no samples"),
    ([{"a": np.zeros((2, 3)), "b": np.zeros((1, 3))}], 4, "different batch sizes per input"),
    ([{"a": np.zeros((1, 3))}, {"b": np.zeros((1, 3))}], 4, "sample 1 has inputs"),
    ([{"a": np.zeros((1, 3))}, {"a": np.zeros((1, 3, 2))}], 4, "different ranks"),
])
def test_samples_that_contradict_the_config_are_errors(samples, max_batch, match):
    with pytest.raises(TensorRTConfigError, match=match):
        config.profile_shapes(samples, 0, max_batch)


# -- parameters -----------------------------------------------------------------------------------
def test_defaults_and_checked_parameters():
    params = config.check_params({}, "fp16", max_batch_size=16)
    assert (params.precision, params.max_batch_size, params.opt_batch_size) == ("fp16", 16, 16)
    assert params.workspace == 1 << 30
    assert TRT.params == {"opt_batch_size": 0, "workspace": 1 << 30, "calibration": ""}
    assert TRT.uses == ("max_batch_size",)  # the model's, an engine value


@pytest.mark.parametrize("params, precision, match", [
    ({"workspace": 0}, "fp32", "workspace must be an integer >= 1"),
    ({"workspace": "1G"}, "fp32", "workspace must be an integer >= 1"),
    ({"opt_batch_size": 8}, "fp32", "opt_batch_size 8 is larger than max_batch_size 4"),
    ({}, "fp8", "precision 'fp8' is not one of"),
    ({"calibration": 3}, "fp32", "calibration must be"),
])
def test_bad_parameters_are_config_errors(params, precision, match):
    with pytest.raises(TensorRTConfigError, match=match):
        config.check_params(params, precision, max_batch_size=4)
    assert config.validate(params, precision, {"max_batch_size": 4}) is not None


def test_opt_batch_size_is_checked_against_the_models_max_batch_size():
    # the engine value, not a parameter default of 1: a model of 16 may optimize for 8
    assert config.validate({"opt_batch_size": 8}, "fp16", {"max_batch_size": 16}) is None
    assert "larger than max_batch_size 2" in config.validate({"opt_batch_size": 8}, "fp16", {"max_batch_size": 2})


def test_a_model_without_a_batch_dimension_fails_its_trt_build_naming_it():
    # max_batch_size = 0: the build says why; the configuration stands (trt is an API default format)
    with pytest.raises(TensorRTConfigError, match=r"trt-fp32: .*the model has no batch dimension \(max_batch_size = 0\)"):
        config.check_params({}, "fp32", where="trt-fp32", max_batch_size=0)
    assert config.validate({}, "fp32", {"max_batch_size": 0}) is None


def test_int8_without_calibration_is_a_config_error(tmp_path):
    with pytest.raises(TensorRTConfigError, match="int8 needs calibration data; set calibration = \"samples\""):
        config.check_params({}, "int8")
    assert "int8 needs calibration data" in TRT.validate({}, "int8")
    assert TRT.validate({"calibration": "samples"}, "int8") is None
    assert TRT.validate({}, "fp16") is None  # only int8 needs it
    with pytest.raises(TensorRTConfigError, match="neither \"samples\" nor of the form"):
        config.check_params({"calibration": "calib"}, "int8")
    # the build says so before it looks for TensorRT: a bad config is bad on every machine
    ctx = make_ctx(tmp_path, tiny_model(tmp_path), "trt", precision="int8")
    with pytest.raises(TensorRTConfigError, match="tiny:trt: int8 needs calibration data"):
        TRT.build(ctx)


# -- int8 calibration data ------------------------------------------------------------------------
def test_calibration_from_the_samples_or_an_entry_function(tmp_path):
    samples = image_samples((1, 2))
    assert config.load_calibration("samples", samples, tmp_path, ["image"]) == samples
    (tmp_path / "calib.py").write_text(textwrap.dedent("""
        import numpy as np
        def make():
            return [np.full((2, 3, 8, 8), i, np.float32) for i in range(3)]
    """))
    found = config.load_calibration("calib.py:make", samples, tmp_path, ["image"])
    assert [sorted(s) for s in found] == [["image"]] * 3 and found[2]["image"][0, 0, 0, 0] == 2
    (tmp_path / "empty.py").write_text("def make():\n    return []\n")
    with pytest.raises(TensorRTConfigError, match="gave no sample"):
        config.load_calibration("empty.py:make", samples, tmp_path, ["image"])


def test_calibration_batches_have_one_fixed_shape():
    batches = config.calibration_batches(image_samples((1, 2, 4)), 0, 2)  # 7 rows -> 3 batches of 2
    assert [b["image"].shape for b in batches] == [(2, 3, 8, 8)] * 3
    joined = np.concatenate([s["image"] for s in image_samples((1, 2, 4))])
    np.testing.assert_array_equal(batches[1]["image"], joined[2:4])
    assert [b["image"].shape for b in config.calibration_batches(image_samples((1, 2)), 0, 16)] == [(3, 3, 8, 8)]
    with pytest.raises(TensorRTConfigError, match="one shape"):
        config.calibration_batches(token_samples([(1, 4), (1, 5)]), 0, 2)


# -- what this machine cannot build: skipped, with the reason --------------------------------------
@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_needs_report_tensorrt_is_not_installed():
    expected = "tensorrt is not installed" + ("" if MachineInfo().has_cuda() else "; no CUDA GPU on this machine")
    assert TRT.needs.unmet("cuda", MachineInfo()) == expected
    assert TensorRTRunner.needs.unmet("cuda", MachineInfo()) == expected


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_trt_build_raises_skip_without_tensorrt(tmp_path):
    ctx = make_ctx(tmp_path, tiny_model(tmp_path), "trt", device="cuda")
    with pytest.raises(Skip, match="^tensorrt is not installed$"):
        TRT.build(ctx)
    assert not list(ctx.out_dir.iterdir())


@pytest.mark.skipif(HAS_TORCH_TENSORRT, reason="torch_tensorrt is installed here")
def test_torch_trt_is_skipped_without_torch_tensorrt(tmp_path):
    assert TORCH_TRT.needs.unmet("cuda", MachineInfo()).startswith("torch_tensorrt is not installed")
    ctx = make_ctx(tmp_path, tiny_model(tmp_path), "torch-trt", device="cuda")
    with pytest.raises(Skip, match="(torch_tensorrt|tensorrt) is not installed"):
        TORCH_TRT.build(ctx)


@pytest.mark.skipif("TensorrtExecutionProvider" in ort_providers(), reason="onnxruntime has the TensorRT provider")
def test_ort_trt_is_skipped_when_onnxruntime_lacks_the_provider(tmp_path):
    ctx = make_ctx(tmp_path, tiny_model(tmp_path), "ort-trt", device="cuda")
    with pytest.raises(Skip, match="has no TensorrtExecutionProvider"):
        ORT_TRT.build(ctx)


@pytest.mark.skipif("CUDAExecutionProvider" in ort_providers(), reason="onnxruntime has the CUDA provider")
def test_ort_cuda_is_skipped_when_onnxruntime_lacks_the_provider(tmp_path):
    ctx = make_ctx(tmp_path, tiny_model(tmp_path), "ort-cuda", device="cuda")
    with pytest.raises(Skip, match="has no CUDAExecutionProvider"):
        ORT_CUDA.build(ctx)


# -- declarations ---------------------------------------------------------------------------------
def test_rule_declarations():
    assert [TRT.target_suffix(p) for p in TRT.precisions] == ["trt-fp32", "trt-fp16", "trt-bf16", "trt-int8",
                                                              "trt-tf32"]
    assert TORCH_TRT.target_suffix("fp32") == "torch-trt-fp32"
    assert (TRT.consumes, ORT_TRT.consumes, ORT_CUDA.consumes, TORCH_TRT.consumes) == (
        "onnx", "onnx", "onnx", "torch-export")
    for rule in (TRT, ORT_TRT, TORCH_TRT):
        assert rule.device_bound and rule.devices == ("cuda",) and rule.needs.gpu
        assert not rule.normalized and rule.canonical_digest is not None
    assert not ORT_CUDA.device_bound and ORT_CUDA.normalized
    assert torch_dtype_for("HALF") == "float16" and torch_dtype_for("INT64") == "int64"
    options = loader.ort_trt_options(Path("/engines"), None, "fp16", 1024, {"x": ShapeRange((1, 2), (4, 2), (4, 2))})
    assert options["trt_engine_cache_path"] == "/engines" and options["trt_fp16_enable"] is True
    assert options["trt_profile_max_shapes"] == "x:4x2" and "trt_timing_cache_path" not in options
