"""The fast paths on a CUDA GPU (skipped without one): torch.compile fp16 with buckets, channels-last
and CUDA graphs, cuDNN's autotuner, compile-once, ONNX Runtime's NHWC preference, and TF32: off for
fp32 (which then passes the default fp32 tolerances), on for tf32.
``benchmarks/gpu_issue15.sh`` runs these on the lent GPU."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

from navbuild_rules.torch_compile import TORCH_COMPILE  # noqa: E402
from navbuild_rules.torch_compile.runner import TorchCompileRunner  # noqa: E402
from tests.rules._ctx import eager_outputs, image_samples, make_ctx, tiny_model  # noqa: E402
from tests.rules.conftest import assert_matches, build, context, run_all, runner_for  # noqa: E402


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_fp16_channels_last_buckets_on_cuda(tmp_path, mode):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", precision="fp16", device="cuda",
                   params={"mode": mode, "channels_last": True, "buckets": [1, 4]})
    metadata = TORCH_COMPILE.build(ctx)
    assert metadata["cudnn_benchmark"] and metadata["graphs_compiled"] == 2
    torch._dynamo.reset()  # as in another process: the runner must load, not compile
    runner = TorchCompileRunner(ctx.out_dir, model, "cuda", "fp16")
    runner.cache_dir = ctx.cache_dir
    with runner:
        info = runner.runtime_info()
        assert info["graphs_compiled"] == 0 and info["cudnn_benchmark"], info
        first = runner.infer(image_samples((3,))[0])["logits"]
        for sample in image_samples((1, 2, 3, 4)):
            out = runner.infer(sample)["logits"]
            np.testing.assert_allclose(out, eager_outputs(model, sample), rtol=5e-2, atol=5e-2)
        # CUDA graphs replay into the same buffers: an earlier result must have been copied out
        np.testing.assert_allclose(first, eager_outputs(model, image_samples((3,))[0]), rtol=5e-2, atol=5e-2)
        prepared = runner.prepare(image_samples((4,))[0])
        for _ in range(5):
            runner.run_prepared(prepared)
        runner.synchronize()


@pytest.mark.parametrize("rule", ["torch", "torchscript-trace", "torch-export"])
def test_channels_last_fp16_exports_on_cuda_turn_cudnn_benchmark_on(examples, tmp_path, rule):
    spec, samples, reference = examples["cnn"]
    ctx = context(tmp_path, spec, samples, precision="fp16", device="cuda", params={"channels_last": True})
    assert build(rule, ctx)["cudnn_benchmark"] is True
    runner = runner_for(rule, ctx)
    assert_matches(run_all(runner, samples), reference, "fp16")
    assert runner.runtime_info() == {"memory_format": "channels_last", "cudnn_benchmark": True, "tf32": False}


def test_onnx_channels_last_prefers_nhwc_on_the_cuda_provider(examples, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    spec, samples, reference = examples["cnn"]
    ctx = context(tmp_path, spec, samples, device="cuda", params={"channels_last": True})
    build("onnx", ctx)
    runner = runner_for("onnx", ctx)
    assert_matches(run_all(runner, samples), reference, "fp32")
    assert runner.runtime_info() == {"provider": "CUDAExecutionProvider", "layout": "NHWC", "tf32": False}


@pytest.mark.parametrize("rule", ["torch", "torchscript-trace", "torch-export"])
def test_fp32_on_cuda_runs_without_tf32_and_passes_fp32_tolerances(examples, tmp_path, rule):
    """The example CNN on the GPU against its CPU reference at the default fp32 tolerances; cuDNN's
    TF32 (PyTorch's default for convolutions) is off while it runs, and on for the tf32 target."""
    spec, samples, reference = examples["cnn"]
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default, whatever an earlier test set
    ctx = context(tmp_path, spec, samples, device="cuda")
    build(rule, ctx)
    with runner_for(rule, ctx) as runner:
        assert runner.runtime_info()["tf32"] is False and not torch.backends.cudnn.allow_tf32
        assert_matches([runner.infer(sample) for sample in samples], reference, "fp32")
    if torch.cuda.get_device_capability() >= (8, 0):
        ctx = context(tmp_path, spec, samples, precision="tf32", device="cuda", name="tf32")
        build(rule, ctx)
        with runner_for(rule, ctx) as tf32_runner:
            assert tf32_runner.runtime_info()["tf32"] is True and torch.backends.cudnn.allow_tf32
            assert_matches([tf32_runner.infer(sample) for sample in samples], reference, "tf32")
