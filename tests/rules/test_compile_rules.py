"""torch-compile and aoti: real torch on the CPU, one tiny model, few compiles (marked slow)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from navbuild.runner import RunnerError  # noqa: E402
from navbuild_rules.torch_compile import AOTI, TORCH_COMPILE, batching, build, options, torch_io  # noqa: E402
from navbuild_rules.torch_compile.aoti_child import (  # noqa: E402
    AotiChild, AotiChildError, describe_exit, stderr_summary)
from navbuild_rules.torch_compile.runner import AotiRunner, TorchCompileRunner  # noqa: E402
from tests.rules._ctx import eager_outputs, image_samples, make_ctx, tiny_model  # noqa: E402


# -- torch-compile --------------------------------------------------------------------------------
BUCKETS = [1, 4]  # the samples have batches 1 and 2: bucket 4 is reached by padding


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """One inductor build of the tiny model on the CPU (fp32, buckets 1 and 4), shared below."""
    tmp = tmp_path_factory.mktemp("torch-compile")
    model = tiny_model(tmp)
    ctx = make_ctx(tmp, model, "torch-compile", params={"buckets": BUCKETS})
    metadata = TORCH_COMPILE.build(ctx)
    return model, ctx, metadata


@pytest.mark.slow
def test_torch_compile_runner_pads_into_buckets_slices_and_refuses_larger_batches(compiled):
    model, ctx, metadata = compiled
    assert metadata["precision_method"] == "cast" and metadata["mode"] == "default"
    assert metadata["batching"] == "buckets" and metadata["buckets"] == BUCKETS
    assert metadata["graphs_compiled"] == 2  # one specialization per bucket
    runner = TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32")
    assert runner.served_batch_sizes() == BUCKETS  # read without activating
    with runner:
        assert runner.cache_info, "the stored compile cache was not loaded"
        for sample in image_samples((1, 2, 3, 4)):  # 2 and 3 are padded into bucket 4
            out = runner.infer(sample)
            assert list(out) == ["logits"] and out["logits"].dtype == np.float32
            assert out["logits"].shape == (batching.batch_of(sample), 5)
            np.testing.assert_allclose(out["logits"], eager_outputs(model, sample), rtol=1e-4, atol=1e-5)
        prepared = runner.prepare(image_samples((3,))[0])
        assert prepared[0][0].shape[0] == 4 and prepared[1:] == (3, 4)
        assert [tuple(o.shape) for o in runner.run_prepared(prepared)] == [(3, 5)]
        runner.synchronize()
        with pytest.raises(batching.BucketError, match=r"model tiny \(torch-compile fp32\): batch 5 is above the "
                                                       r"largest compiled bucket 4 \(buckets 1, 4\)"):
            runner.infer(image_samples((5,))[0])


@pytest.mark.slow
def test_check_profile_and_a_second_build_reuse_the_compiled_graphs(compiled, tmp_path):
    """Compile once: with the build's cache folder, a fresh compile (dynamo's in-process cache reset,
    as in another process) loads every graph from disk and compiles none."""
    model, ctx, _ = compiled
    torch._dynamo.reset()
    runner = TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32")
    runner.cache_dir = ctx.cache_dir
    with runner:
        info = runner.runtime_info()
    assert info["graphs_compiled"] == 0 and info["graphs_loaded"] == 2, info
    torch._dynamo.reset()
    again = make_ctx(tmp_path, model, "torch-compile", params={"buckets": BUCKETS})
    again.cache_dir = ctx.cache_dir
    metadata = TORCH_COMPILE.build(again)
    assert metadata["graphs_compiled"] == 0 and metadata["graphs_loaded"] == 2, metadata
    assert build.recipe_digest(again.out_dir) == build.recipe_digest(ctx.out_dir)


@pytest.mark.slow
def test_torch_compile_writes_recipe_and_a_cache_a_fresh_process_loads(compiled):
    model, ctx, metadata = compiled
    recipe = json.loads((ctx.out_dir / options.RECIPE_FILE).read_text())
    assert {k: recipe[k] for k in ("mode", "backend", "dynamic", "memory_format", "batching", "precision",
                                   "device", "cache", "cudnn_benchmark")} == {
        "mode": "default", "backend": "inductor", "dynamic": "false", "memory_format": "contiguous",
        "batching": {"mode": "buckets", "buckets": BUCKETS}, "precision": "fp32", "device": "cpu",
        "cache": options.CACHE_FILE, "cudnn_benchmark": False}
    assert [[s["shape"] for s in specs] for specs in recipe["warmup"]] == [[[1, 3, 8, 8]], [[4, 3, 8, 8]]]
    cache = ctx.out_dir / options.CACHE_FILE
    assert cache.stat().st_size == metadata["cache_bytes"] > 0
    assert metadata["cache_artifacts"].get("inductor", 0) >= 1
    code = textwrap.dedent(f"""
        import torch
        info = torch.compiler.load_cache_artifacts(open({str(cache)!r}, "rb").read())
        print(len(info.inductor_artifacts) if info is not None else -1)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) == metadata["cache_artifacts"]["inductor"]
    assert TORCH_COMPILE.canonical_digest(ctx.out_dir) == build.recipe_digest(ctx.out_dir)


def test_torch_compile_bf16_recipe_casts_and_runs(tmp_path):
    """Precision plumbing end to end, cheaply: the eager backend traces with dynamo but compiles nothing."""
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", precision="bf16", params={"backend": "eager"})
    metadata = TORCH_COMPILE.build(ctx)
    assert metadata["precision_method"] == "cast" and metadata["backend"] == "eager"
    assert metadata["buckets"] == [1, 2, 4]  # "auto": powers of two up to the model's max_batch_size 4
    assert json.loads((ctx.out_dir / options.RECIPE_FILE).read_text())["precision"] == "bf16"
    with TorchCompileRunner(ctx.out_dir, model, "cpu", "bf16") as runner:
        sample = image_samples((3,))[0]
        out = runner.infer(sample)["logits"]
    assert out.dtype == np.float32 and out.shape == (3, 5)
    np.testing.assert_allclose(out, eager_outputs(model, sample), rtol=5e-2, atol=5e-2)
    with pytest.raises(RunnerError, match="recipe is for bf16"):
        TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32").activate()


def test_torch_compile_channels_last_converts_model_and_inputs(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params={"backend": "eager", "channels_last": True,
                                                               "buckets": [2]})
    metadata = TORCH_COMPILE.build(ctx)
    assert metadata["memory_format"] == "channels_last" and metadata["channels_last"] is True
    assert json.loads((ctx.out_dir / options.RECIPE_FILE).read_text())["memory_format"] == "channels_last"
    with TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32") as runner:
        tensors, batch, bucket = runner.prepare(image_samples((1,))[0])
        assert tensors[0].is_contiguous(memory_format=torch.channels_last) and (batch, bucket) == (1, 2)
        for sample in image_samples((1, 2)):
            np.testing.assert_allclose(runner.infer(sample)["logits"], eager_outputs(model, sample),
                                       rtol=1e-4, atol=1e-5)
        assert runner.runtime_info()["memory_format"] == "channels_last"


def test_torch_compile_dynamic_batch_serves_any_batch(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params={"backend": "eager", "dynamic": True})
    metadata = TORCH_COMPILE.build(ctx)
    assert metadata["batching"] == "dynamic" and metadata["buckets"] is None
    recipe = json.loads((ctx.out_dir / options.RECIPE_FILE).read_text())
    assert recipe["batching"] == {"mode": "dynamic", "max_batch_size": 4}
    with TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32") as runner:
        assert runner.served_batch_sizes() is None
        sample = image_samples((5,))[0]
        np.testing.assert_allclose(runner.infer(sample)["logits"], eager_outputs(model, sample), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("params, match", [
    ({"mode": "fastest"}, "mode 'fastest' is not accepted; use one of default, reduce-overhead, max-autotune"),
    ({"dynamic": "sometimes"}, "dynamic 'sometimes' is not accepted"),
    ({"backend": ""}, "backend must be a backend name"),
    ({"channels_last": "yes"}, "channels_last must be true or false"),
])
def test_torch_compile_bad_parameters_are_clear_errors(tmp_path, params, match):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params=params)
    with pytest.raises(options.CompileConfigError, match=match) as caught:
        TORCH_COMPILE.build(ctx)
    assert str(caught.value).startswith("tiny:torch-compile: ")
    assert TORCH_COMPILE.validate(params, "fp32") is not None
    assert not list(ctx.out_dir.iterdir())


def test_a_bucket_above_max_batch_size_is_a_clear_error(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params={"buckets": [1, 8], "backend": "eager"})
    with pytest.raises(options.CompileConfigError, match="tiny:torch-compile: bucket 8 is above the model's "
                                                         "max_batch_size 4"):
        TORCH_COMPILE.build(ctx)
    assert TORCH_COMPILE.validate({"buckets": [0]}, "fp32").startswith("buckets must be")
    assert TORCH_COMPILE.validate({"buckets": [1, 8]}, "fp32") is None
    no_batch = TORCH_COMPILE.validate({}, "fp32", {"max_batch_size": 0})  # refused when navbuild.toml is read
    assert no_batch is not None and "the model has no batch dimension" in no_batch


def test_torch_compile_accepts_every_documented_mode():
    for mode in ("default", "max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs"):
        assert TORCH_COMPILE.validate({"mode": mode}, "fp32") is None
    assert options.compile_options({"dynamic": True})["dynamic"] == "true"


def test_unknown_backend_is_a_config_error(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params={"backend": "no-such-backend"})
    with pytest.raises(options.CompileConfigError, match="backend 'no-such-backend' is not a torch.compile backend"):
        TORCH_COMPILE.build(ctx)


def test_resolve_makes_auto_buckets_explicit():
    resolve = TORCH_COMPILE.resolve
    params = dict(TORCH_COMPILE.params)
    values = {"max_batch_size": 64, "normalize": True, "profile_batch_sizes": [1, 24, 128]}
    assert resolve(params, values)["buckets"] == [1, 2, 4, 8, 16, 24, 32, 64]
    assert set(resolve(params, values)) == set(params)  # the engine values reach the key through the buckets
    assert resolve({**params, "buckets": [64, 1, 8]}, values)["buckets"] == [1, 8, 64]
    assert resolve({**params, "dynamic": True}, values)["buckets"] is None
    assert resolve(params, {**values, "max_batch_size": 6, "profile_batch_sizes": []})["buckets"] == [1, 2, 4, 6]


# -- aoti -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """AOTInductor packages of the tiny model on the CPU (fp32, buckets 1 and 4, channels-last)."""
    tmp = tmp_path_factory.mktemp("aoti")
    model = tiny_model(tmp, max_batch_size=4)
    ctx = make_ctx(tmp, model, "aoti", params={"buckets": BUCKETS, "channels_last": True})
    metadata = AOTI.build(ctx)
    return model, ctx, metadata


@pytest.mark.slow
def test_aoti_builds_a_package_per_bucket_validates_in_a_child_and_matches_eager(aoti_package):
    model, ctx, metadata = aoti_package
    assert sorted(p.name for p in ctx.out_dir.iterdir()) == ["aoti.json", "model-b1.pt2", "model-b4.pt2"]
    assert metadata["validated_in_child"] and metadata["batching"] == "buckets" and not metadata["dynamic_batch"]
    assert metadata["output_shapes"] == [[1, 5], [4, 5]] and metadata["memory_format"] == "channels_last"
    info = json.loads((ctx.out_dir / build.AOTI_INFO_FILE).read_text())
    assert info["precision"] == "fp32" and info["batching"] == {"mode": "buckets", "buckets": BUCKETS}
    assert info["inputs"] == ["image"] and info["packages"] == ["model-b1.pt2", "model-b4.pt2"]
    runner = AotiRunner(ctx.out_dir, model, "cpu", "fp32")
    assert runner.served_batch_sizes() == BUCKETS
    with runner:
        assert runner.worker_pid not in (None, os.getpid())
        for sample in image_samples((1, 2, 3, 4)):
            out = runner.infer(sample)
            assert list(out) == ["logits"] and out["logits"].shape == (batching.batch_of(sample), 5)
            np.testing.assert_allclose(out["logits"], eager_outputs(model, sample), rtol=1e-4, atol=1e-5)
        handle = runner.prepare(image_samples((2,))[0])
        assert runner.run_prepared(handle) is None
        runner.synchronize()
        with pytest.raises(batching.BucketError, match=r"model tiny \(aoti fp32\): batch 5 is above"):
            runner.infer(image_samples((5,))[0])
        with pytest.raises(AotiChildError, match="run failed: KeyError"):  # a Python error in the worker
            runner.run_prepared(12345)
        runner.infer(image_samples((1,))[0])  # which survives it


@pytest.mark.slow
def test_aoti_dynamic_batch_is_one_package(tmp_path):
    model = tiny_model(tmp_path, max_batch_size=4)
    ctx = make_ctx(tmp_path, model, "aoti", params={"dynamic": True})
    metadata = AOTI.build(ctx)
    assert metadata["dynamic_batch"] and metadata["buckets"] is None and metadata["output_shapes"] == [[2, 5]]
    assert sorted(p.name for p in ctx.out_dir.iterdir()) == ["aoti.json", "model.pt2"]
    with AotiRunner(ctx.out_dir, model, "cpu", "fp32") as runner:
        assert runner.served_batch_sizes() is None
        for sample in image_samples((1, 3)):
            np.testing.assert_allclose(runner.infer(sample)["logits"], eager_outputs(model, sample),
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_aoti_worker_killed_by_a_signal_is_a_clear_error(aoti_package):
    model, ctx, _ = aoti_package
    runner = AotiRunner(ctx.out_dir, model, "cpu", "fp32").activate()
    try:
        os.kill(runner.worker_pid, signal.SIGKILL)
        with pytest.raises(RunnerError, match=r"killed by SIGKILL \(signal 9\) while serving infer") as caught:
            runner.infer(image_samples((1,))[0])
        assert isinstance(caught.value, AotiChildError)
        with pytest.raises(AotiChildError, match="not running"):
            runner.infer(image_samples((1,))[0])
    finally:
        runner.deactivate()


@pytest.mark.slow
def test_aoti_corrupt_package_is_a_clear_error(tmp_path):
    (tmp_path / "model.pt2").write_bytes(b"this is not a zip archive" * 64)
    (tmp_path / build.AOTI_INFO_FILE).write_text(json.dumps({
        "format": build.AOTI_INFO_FORMAT, "batching": {"mode": "dynamic", "max_batch_size": 4},
        "packages": ["model.pt2"], "device": "cpu", "precision": "fp32"}))
    model = tiny_model(tmp_path)
    runner = AotiRunner(tmp_path, model, "cpu", "fp32")
    with pytest.raises(AotiChildError, match="load of model.pt2") as caught:
        runner.activate()
    assert "failed:" in str(caught.value) or "killed by" in str(caught.value)
    assert not runner.active


def test_a_worker_that_segfaults_becomes_an_error_with_signal_and_stderr():
    crash = "import faulthandler, sys; sys.stdin.buffer.read(4); faulthandler._sigsegv()"
    child = AotiChild(argv=[sys.executable, "-c", crash]).start()
    try:
        with pytest.raises(AotiChildError) as caught:
            child.request({"op": "load", "path": "x.pt2", "device": "cpu", "precision": "fp32"}, what="load of x.pt2")
    finally:
        child.close()
    first_line, _, rest = str(caught.value).partition("\n")
    assert "killed by SIGSEGV (signal 11) while serving load of x.pt2; stderr: Fatal Python error: " \
           "Segmentation fault in <string>:1 (<module>)" in first_line
    assert "Current thread" in rest  # the whole stderr tail follows the first line


def test_a_worker_that_aborts_on_a_cxx_error_keeps_its_message_and_last_frames():
    """A C++ exception prints its message, then hundreds of stack frames: the error names the message,
    and what is kept of stderr holds its head (the message) and its tail (the last frames)."""
    crash = ("import os, sys; sys.stdin.buffer.read(4); os.write(2, (\"terminate called after throwing an instance "
             "of 'c10::Error'\\n  what():  shape '[2, 8, 16]' is invalid for input of size 416\\n\" + "
             "''.join(f'frame #{i}: at::native::view(at::Tensor const&)\\n' for i in range(400))).encode()); "
             "os.abort()")
    child = AotiChild(argv=[sys.executable, "-c", crash]).start()
    try:
        with pytest.raises(AotiChildError) as caught:
            child.request({"op": "infer"}, what="infer")
    finally:
        child.close()
    first_line, _, rest = str(caught.value).partition("\n")
    assert "killed by SIGABRT (signal 6) while serving infer; stderr: c10::Error: shape '[2, 8, 16]' is invalid " \
           "for input of size 416" in first_line
    assert rest.index("terminate called after") < rest.index("bytes left out") < rest.index("frame #399")


def test_stderr_summary_picks_the_fatal_error_and_the_innermost_frame():
    # the worker's stderr when aoti_load_package segfaulted (torch 2.11+cu130, H200)
    seen = textwrap.dedent("""\
        Fatal Python error: Segmentation fault

        Current thread 0x00007f9f0067b140 (most recent call first):
          File "/opt/torch/.venv/lib/python3.12/site-packages/torch/export/pt2_archive/_package.py", line 1045 in _load_aoti
          File "/opt/torch/.venv/lib/python3.12/site-packages/torch/export/pt2_archive/_package.py", line 1173 in load_pt2

        Extension modules: msgpack._cmsgpack, xxhash._xxhash, torch._C (total: 38)
    """)
    assert stderr_summary(seen) == "Fatal Python error: Segmentation fault in export/pt2_archive/_package.py:1045 " \
                                   "(_load_aoti)"
    assert stderr_summary("warning\nRuntimeError: boom\n") == "RuntimeError: boom"
    assert stderr_summary("") == "(stderr is empty)"


def test_a_worker_that_hangs_is_killed_after_its_timeout():
    child = AotiChild(argv=[sys.executable, "-c", "import time; time.sleep(120)"]).start()
    try:
        with pytest.raises(AotiChildError, match="gave no answer to sync within 1 s and was killed"):
            child.request({"op": "sync"}, timeout=1)
        assert child.proc.poll() is not None
    finally:
        child.close()


def test_describe_exit():
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV (signal 11)"
    assert describe_exit(3) == "exited with status 3"


def test_aoti_bad_options_are_config_errors(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "aoti", max_batch_size=-1)
    with pytest.raises(options.CompileConfigError, match="max_batch_size must be an integer >= 1"):
        AOTI.build(ctx)
    no_batch = make_ctx(tmp_path, model, "aoti", name="no-batch", max_batch_size=0)
    with pytest.raises(options.CompileConfigError, match="the model has no batch dimension"):
        AOTI.build(no_batch)
    assert AOTI.validate({}, "fp32", {"max_batch_size": 0}) is not None
    assert AOTI.validate({}, "bf16", {"max_batch_size": 8}) is None
    assert "dynamic must be true or false" in AOTI.validate({"dynamic": "auto"}, "fp32")
    assert "buckets must be" in AOTI.validate({"buckets": "all"}, "fp32")


def test_export_digest_ignores_paths_but_not_weights(tmp_path):
    """aoti's canonical digest: the same export twice gives one digest; other weights another."""
    model = tiny_model(tmp_path)
    sample = image_samples((2,))[0]
    args = torch_io.to_tensors(model, sample, "cpu", "fp32")
    shapes = ({0: torch.export.Dim("batch", min=1, max=4)},)

    def digest(module):
        return build.export_digest(torch.export.export(module, args, dynamic_shapes=shapes, strict=False))

    first, second = model.load_entry(), model.load_entry()
    assert digest(first) == digest(second)
    with torch.no_grad():
        second.head.bias.add_(1.0)
    assert digest(first) != digest(second)


# -- shared torch helpers -------------------------------------------------------------------------
def test_cast_applies_to_weights_and_float_inputs_only(tmp_path):
    model = tiny_model(tmp_path)
    live = torch_io.prepare_model(model.load_entry(), "cpu", "fp16")
    assert {p.dtype for p in live.parameters()} == {torch.float16}
    tensors = torch_io.to_tensors(model, {"image": np.ones((1, 3, 8, 8), np.float32)}, "cpu", "bf16")
    assert tensors[0].dtype == torch.bfloat16
    ids = torch_io.to_tensors(model, {"image": np.ones((1, 4), np.int64)}, "cpu", "bf16")
    assert ids[0].dtype == torch.int64
    out = torch_io.named_outputs(model, (torch.ones(2, 5, dtype=torch.bfloat16),))
    assert out["logits"].dtype == np.float32
    tiled = torch_io.export_sample(model, image_samples((1,)), 4)
    assert tiled["image"].shape == (2, 3, 8, 8)


def test_rules_are_device_bound_and_cast():
    for rule in (TORCH_COMPILE, AOTI):
        assert rule.device_bound and rule.precisions == ("fp32", "fp16", "bf16", "tf32")
        assert not rule.normalized and rule.canonical_digest is not None
        assert set(rule.variants) >= {"channels_last", "dynamic"}
    assert TORCH_COMPILE.params == {"mode": "default", "backend": "inductor", "dynamic": False, "buckets": "auto",
                                    "channels_last": False}
    assert TORCH_COMPILE.uses == AOTI.uses == ("max_batch_size",)
    assert list(TORCH_COMPILE.variants) == ["channels_last", "mode", "dynamic"]
    assert TORCH_COMPILE.target_suffix("bf16") == "torch-compile-bf16" and AOTI.target_suffix("fp32") == "aoti"
