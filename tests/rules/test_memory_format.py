"""The channels_last option of the torch family and ONNX Runtime, with real torch on the example CNN
(a conv net, where the layout matters) and the encoder (token ids, where it must change nothing)."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from navbuild_rules.torch import memory_format  # noqa: E402
from tests.rules.conftest import assert_matches, build, context, run_all, runner_for  # noqa: E402

FORMATS = ("torch", "torchscript-trace", "torchscript-script", "torch-export")


@pytest.mark.parametrize("fmt", FORMATS)
def test_channels_last_exports_run_nhwc_and_match_the_reference(examples, module_tmp, fmt):
    spec, samples, reference = examples["cnn"]
    ctx = context(module_tmp, spec, samples, params={"channels_last": True}, name=f"cl-{fmt}")
    metadata = build(fmt, ctx)
    assert metadata["memory_format"] == "channels_last" and metadata["cudnn_benchmark"] is False  # a CPU build
    if fmt != "torch":
        assert json.loads((ctx.out_dir / memory_format.RUNTIME_FILE).read_text()) == {"memory_format": "channels_last"}
    runner = runner_for(fmt, ctx)
    assert_matches(run_all(runner, samples), reference, "fp32")
    with runner:
        (image,) = runner.prepare(samples[0])
        assert image.is_contiguous(memory_format=torch.channels_last)
        conv_weights = [p for p in runner._module.parameters() if p.dim() == 4]
        assert conv_weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
        assert runner.runtime_info() == {"memory_format": "channels_last", "cudnn_benchmark": False, "tf32": False}


def test_without_the_option_nothing_changes(examples, module_tmp):
    spec, samples, _ = examples["cnn"]
    ctx = context(module_tmp, spec, samples, name="contiguous-trace")
    assert build("torchscript-trace", ctx)["memory_format"] == "contiguous"
    assert not (ctx.out_dir / memory_format.RUNTIME_FILE).exists()
    with runner_for("torchscript-trace", ctx) as runner:
        (image,) = runner.prepare(samples[0])
        assert not image.is_contiguous(memory_format=torch.channels_last) or image.shape[1] == 1


def test_channels_last_leaves_token_inputs_alone(examples, module_tmp):
    spec, samples, reference = examples["encoder"]
    ctx = context(module_tmp, spec, samples, params={"channels_last": True}, name="cl-encoder")
    build("torch", ctx)
    runner = runner_for("torch", ctx)
    assert_matches(run_all(runner, samples), reference, "fp32")
    with runner:
        (tokens,) = runner.prepare(samples[0])
        assert tokens.dtype == torch.int64 and tokens.is_contiguous()


def test_onnx_records_the_option_for_the_cuda_provider(examples, module_tmp):
    pytest.importorskip("onnxruntime")
    spec, samples, reference = examples["cnn"]
    ctx = context(module_tmp, spec, samples, params={"channels_last": True, "opset": 17, "exporter": "auto"},
                  name="cl-onnx")
    assert build("onnx", ctx)["memory_format"] == "channels_last"
    runner = runner_for("onnx", ctx)
    assert_matches(run_all(runner, samples), reference, "fp32")
    assert runner.runtime_info() == {"provider": "CPUExecutionProvider", "layout": "NCHW",  # no NHWC option on CPU
                                     "tf32": False}


def test_bad_channels_last_values_are_refused():
    from navbuild.engine.registry import default_registry

    for name in (*FORMATS, "onnx", "torch-compile", "aoti"):
        rule = default_registry().rule(name, "torch")  # onnx has a rule per framework
        problem = rule.validate({"channels_last": "yes"}, "fp32")
        assert problem and "channels_last must be true or false" in problem, name
        assert rule.variants["channels_last"] == {False: "", True: "cl"}
