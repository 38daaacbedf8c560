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
from rules.torch_compile import AOTI, TORCH_COMPILE, build, options, torch_io  # noqa: E402
from rules.torch_compile.aoti_child import (  # noqa: E402
    AotiChild, AotiChildError, describe_exit, stderr_summary)
from rules.torch_compile.runner import AotiRunner, TorchCompileRunner  # noqa: E402
from tests.rules._ctx import eager_outputs, image_samples, make_ctx, tiny_model  # noqa: E402


# -- torch-compile --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """One inductor build of the tiny model on the CPU (fp32), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("torch-compile")
    model = tiny_model(tmp)
    ctx = make_ctx(tmp, model, "torch-compile")
    metadata = TORCH_COMPILE.build(ctx)
    return model, ctx, metadata


@pytest.mark.slow
def test_torch_compile_runner_matches_eager(compiled):
    model, ctx, metadata = compiled
    assert metadata["precision_method"] == "cast" and metadata["mode"] == "default"
    runner = TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32")
    with runner:
        assert runner.cache_info, "the stored compile cache was not loaded"
        for sample in image_samples((1, 2, 3)):  # batch 3 was never seen at build time
            out = runner.infer(sample)
            assert list(out) == ["logits"] and out["logits"].dtype == np.float32
            np.testing.assert_allclose(out["logits"], eager_outputs(model, sample), rtol=1e-4, atol=1e-5)
        prepared = runner.prepare(image_samples((2,))[0])
        runner.run_prepared(prepared)
        runner.synchronize()


@pytest.mark.slow
def test_torch_compile_writes_recipe_and_a_cache_a_fresh_process_loads(compiled):
    model, ctx, metadata = compiled
    recipe = json.loads((ctx.out_dir / options.RECIPE_FILE).read_text())
    assert {k: recipe[k] for k in ("mode", "backend", "dynamic", "precision", "device", "cache")} == {
        "mode": "default", "backend": "inductor", "dynamic": "auto", "precision": "fp32", "device": "cpu",
        "cache": options.CACHE_FILE}
    assert [[s["shape"] for s in specs] for specs in recipe["warmup"]] == [[[1, 3, 8, 8]], [[2, 3, 8, 8]]]
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
    assert json.loads((ctx.out_dir / options.RECIPE_FILE).read_text())["precision"] == "bf16"
    with TorchCompileRunner(ctx.out_dir, model, "cpu", "bf16") as runner:
        sample = image_samples((2,))[0]
        out = runner.infer(sample)["logits"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, eager_outputs(model, sample), rtol=5e-2, atol=5e-2)
    with pytest.raises(RunnerError, match="recipe is for bf16"):
        TorchCompileRunner(ctx.out_dir, model, "cpu", "fp32").activate()


@pytest.mark.parametrize("params, match", [
    ({"mode": "fastest"}, "mode 'fastest' is not accepted; use one of default, reduce-overhead, max-autotune"),
    ({"dynamic": "sometimes"}, "dynamic 'sometimes' is not accepted"),
    ({"backend": ""}, "backend must be a backend name"),
])
def test_torch_compile_bad_parameters_are_clear_errors(tmp_path, params, match):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params=params)
    with pytest.raises(options.CompileConfigError, match=match) as caught:
        TORCH_COMPILE.build(ctx)
    assert str(caught.value).startswith("tiny:torch-compile: ")
    assert TORCH_COMPILE.validate(params, "fp32") is not None
    assert not list(ctx.out_dir.iterdir())


def test_torch_compile_accepts_every_documented_mode():
    for mode in ("default", "max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs"):
        assert TORCH_COMPILE.validate({"mode": mode}, "fp32") is None
    assert options.compile_options({"dynamic": True})["dynamic"] == "true"


def test_unknown_backend_is_a_config_error(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "torch-compile", params={"backend": "no-such-backend"})
    with pytest.raises(options.CompileConfigError, match="backend 'no-such-backend' is not a torch.compile backend"):
        TORCH_COMPILE.build(ctx)


# -- aoti -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aoti_package(tmp_path_factory):
    """One AOTInductor build of the tiny model on the CPU (fp32, dynamic batch 1..4)."""
    tmp = tmp_path_factory.mktemp("aoti")
    model = tiny_model(tmp, max_batch_size=4)
    ctx = make_ctx(tmp, model, "aoti", params={"max_batch_size": 4})
    metadata = AOTI.build(ctx)
    return model, ctx, metadata


@pytest.mark.slow
def test_aoti_builds_validates_in_a_child_and_matches_eager(aoti_package):
    model, ctx, metadata = aoti_package
    assert (ctx.out_dir / build.AOTI_FILE).stat().st_size > 0
    assert metadata["validated_in_child"] and metadata["dynamic_batch"] and metadata["output_shapes"] == [[2, 5]]
    info = json.loads((ctx.out_dir / build.AOTI_INFO_FILE).read_text())
    assert info["precision"] == "fp32" and info["max_batch_size"] == 4 and info["inputs"] == ["image"]
    runner = AotiRunner(ctx.out_dir, model, "cpu", "fp32")
    with runner:
        assert runner.worker_pid not in (None, os.getpid())
        for sample in image_samples((1, 3, 4)):
            out = runner.infer(sample)
            assert list(out) == ["logits"]
            np.testing.assert_allclose(out["logits"], eager_outputs(model, sample), rtol=1e-4, atol=1e-5)
        handle = runner.prepare(image_samples((2,))[0])
        assert runner.run_prepared(handle) is None
        runner.synchronize()
        with pytest.raises(AotiChildError, match="run failed: KeyError"):  # a Python error in the worker
            runner.run_prepared(12345)
        runner.infer(image_samples((1,))[0])  # which survives it


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
    model = tiny_model(tmp_path)
    runner = AotiRunner(tmp_path, model, "cpu", "fp32")
    with pytest.raises(AotiChildError, match="load of .*model.pt2") as caught:
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


def test_aoti_bad_max_batch_size_is_a_config_error(tmp_path):
    model = tiny_model(tmp_path)
    ctx = make_ctx(tmp_path, model, "aoti", params={"max_batch_size": 0})
    with pytest.raises(options.CompileConfigError, match="max_batch_size must be an integer >= 1"):
        AOTI.build(ctx)
    assert AOTI.validate({"max_batch_size": 0}, "fp32") is not None
    assert AOTI.validate({"max_batch_size": 8}, "bf16") is None


def test_export_digest_ignores_paths_but_not_weights(tmp_path):
    """aoti's canonical digest: the same export twice gives one digest; other weights another."""
    model = tiny_model(tmp_path)
    sample = image_samples((2,))[0]
    args = torch_io.to_tensors(model, sample, "cpu", "fp32")
    shapes = build.batch_dynamic_shapes(1, 0, 4)

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
        assert rule.device_bound and rule.precisions == ("fp32", "fp16", "bf16")
        assert not rule.normalized and rule.canonical_digest is not None
    assert TORCH_COMPILE.params == {"mode": "default", "backend": "inductor", "dynamic": "auto"}
    assert TORCH_COMPILE.target_suffix("bf16") == "torch-compile-bf16" and AOTI.target_suffix("fp32") == "aoti"
