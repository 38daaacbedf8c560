"""In-place optimization of the example pipeline (examples/pipeline): modules recorded, built and
swapped in; outputs match; per-module configuration; a new process builds nothing; Hugging Face
output classes through output_mapping; forward_func; a module the pipeline never calls."""
from __future__ import annotations

import sys

import pytest
import torch

import navbuild
from navbuild.api import inplace
from tests.api.conftest import FAST_PROFILE, copy_example, run_python


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    """The example pipeline optimized in place once: the encoder with the global configuration
    (three formats), the head with its own (TorchScript only); two workers."""
    root = tmp_path_factory.mktemp("pipeline")
    folder = copy_example("pipeline", root)
    sys.path.insert(0, str(folder))
    sys.modules.pop("pipeline", None)
    import pipeline as example

    inplace.forget()
    pipe = example.EmbeddingPipeline()
    batches = [sample[0] for _, sample in example.dataloader()]
    before = [pipe(batch) for batch in batches]
    pipe.encoder = navbuild.Module(pipe.encoder, name="encoder")
    pipe.head = navbuild.Module(pipe.head, name="head")
    pipe.head.optimize_config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_device="cpu")
    config = navbuild.OptimizeConfig(target_formats=("torch", "torchscript-trace", "onnx"), target_device="cpu",
                                     workspace=root, optimization_profile=FAST_PROFILE)
    packages = navbuild.optimize(pipe, example.dataloader(), config, jobs=2, quiet=True)
    yield root, example, pipe, batches, before, packages
    inplace.forget()
    sys.path.remove(str(folder))
    sys.modules.pop("pipeline", None)


def test_each_module_is_recorded_and_built_with_its_own_configuration(optimized):
    _, _, pipe, _, _, packages = optimized
    assert set(packages) == {"encoder", "head"}
    assert set(packages["encoder"].targets) == {"torch", "torchscript-trace", "onnx"}
    assert set(packages["head"].targets) == {"torchscript-trace"}  # its optimize_config wins
    for package in packages.values():
        for name, target in package.targets.items():
            assert target.status == "built" and target.correct, (package.name, name, target.reason)
    status = packages["encoder"].status
    # recorded from the pipeline's keyword arguments; the sequence axis varies and is shared
    assert [i["name"] for i in status["inputs"]] == ["input_ids", "attention_mask"]
    assert [o["name"] for o in status["outputs"]] == ["output__0", "output__1"]
    model = pipe.encoder.package.status
    assert model["max_batch_size"] == 4  # the largest batch the pipeline passed


def test_modules_forward_unchanged_until_loaded_then_run_their_best_target(optimized, capsys):
    _, example, pipe, batches, before, _ = optimized
    assert not pipe.encoder.is_optimized and isinstance(pipe.encoder, torch.nn.Module)
    chosen = navbuild.load_optimized(quiet=True)
    assert chosen["head"] == "torchscript-trace" and pipe.head.optimized_target == "torchscript-trace"
    assert chosen["encoder"] in (None, "torchscript-trace", "onnx")  # None: eager was fastest
    after = [pipe(batch) for batch in batches]
    for a, b in zip(after, before):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)
    assert pipe.head.fallbacks == 0
    capsys.readouterr()
    pipe(example.TEXTS)  # a batch of 6, larger than any recorded: the original code serves it
    assert pipe.head.fallbacks == 1
    pipe(example.TEXTS)
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("navbuild: head")]
    assert len(said) == 1 and "runs its original code" in said[0] and "has batch 6, outside the recorded range" \
        in said[0], said  # once, with the reason
    assert "batch 6" in pipe.head.fallback_reason


def test_the_encoder_returns_its_named_tuple_when_optimized(optimized):
    _, example, pipe, _, _, _ = optimized
    assert pipe.encoder.load_optimized(target="onnx") == "onnx"
    tokens = pipe.tokenizer(example.TEXTS[:2])
    output = pipe.encoder(**tokens)
    assert isinstance(output, example.EncoderOutput)
    assert pipe.encoder.fallbacks == 0
    assert pipe.encoder.load_optimized(target="nope") is None and "no target 'nope'" in pipe.encoder.optimized_reason


NEW_PROCESS = """
    import json, sys, time
    sys.path.insert(0, "pipeline")
    import navbuild
    from optimize import build_pipeline, config
    from pipeline import dataloader
    from pathlib import Path

    def main():
        pipe = build_pipeline()
        pipe.head.optimize_config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_device="cpu")
        cfg = config(Path(".")).clone(target_formats=("torch", "torchscript-trace", "onnx"),
                                      optimization_profile=FAST_PROFILE)
        started = time.perf_counter()
        packages = navbuild.optimize(pipe, dataloader(), cfg)
        optimize_s = time.perf_counter() - started
        started = time.perf_counter()
        navbuild.load_optimized()
        load_s = time.perf_counter() - started
        statuses = {name: record.status for p in packages.values() for name, record in p.records.items()}
        print(json.dumps({"statuses": statuses, "optimize_s": optimize_s, "load_s": load_s}))

    if __name__ == "__main__":
        main()
"""


def test_a_second_optimize_in_a_new_process_builds_nothing(optimized):
    root = optimized[0]
    result = run_python(NEW_PROCESS.replace("FAST_PROFILE", repr(FAST_PROFILE)), root, root / "pipeline")
    assert set(result["statuses"].values()) == {"cached"}, result["statuses"]
    assert len(result["statuses"]) > 10
    print(f"second optimize: {result['optimize_s']:.2f} s, load_optimized: {result['load_s']:.2f} s")


HF_MODULES = '''
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling


class TinyEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(50, 8)

    def forward(self, input_ids, return_dict=True):
        hidden = self.embed(input_ids)
        return BaseModelOutputWithPooling(last_hidden_state=hidden, pooler_output=hidden.mean(1))


class SentenceModel(nn.Module):
    """Its own encode() calls self.forward(...), not self(...): it needs forward_func."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 4)

    def forward(self, x):
        return self.linear(x)

    def encode(self, x):
        return self.forward(x + 1.0)


class Unused(nn.Module):
    def forward(self, x):
        return x
'''


def test_output_mapping_forward_func_and_a_module_never_called(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "hf_modules.py").write_text(HF_MODULES)
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("hf_modules", None)
    inplace.forget()
    try:
        import hf_modules
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        encoder = navbuild.Module(hf_modules.TinyEncoder().eval(), name="clip",
                                  output_mapping=lambda output: BaseModelOutputWithPooling(**output))
        sentence = navbuild.Module(hf_modules.SentenceModel().eval(), name="sentence", forward_func="forward")
        unused = navbuild.Module(hf_modules.Unused(), name="unused")

        def pipeline(ids):
            pooled = encoder(ids, return_dict=True).pooler_output
            return sentence.encode(pooled)

        samples = [(1, torch.randint(0, 50, (1, 5))), (2, torch.randint(0, 50, (2, 7)))]
        expected = [pipeline(ids) for _, ids in samples]
        config = navbuild.OptimizeConfig(target_formats=("onnx",), target_device="cpu", profiling=False,
                                         workspace=tmp_path)
        packages = navbuild.optimize(pipeline, samples, config, quiet=True)
        assert packages["unused"] is None and "never called" in unused.optimized_reason
        assert packages["clip"].targets["onnx"].correct and packages["sentence"].targets["onnx"].correct
        navbuild.load_optimized(quiet=True)
        assert encoder.optimized_target == "onnx" and sentence.optimized_target == "onnx"
        output = encoder(samples[1][1], return_dict=True)
        assert isinstance(output, BaseModelOutputWithPooling)  # through output_mapping
        for (_, ids), want in zip(samples, expected):
            assert torch.allclose(pipeline(ids), want, atol=1e-4, rtol=1e-3)
        assert encoder.fallbacks == 0 and sentence.fallbacks == 0
    finally:
        inplace.forget()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("hf_modules", None)


class Scale(torch.nn.Module):
    def forward(self, x, options=None):
        return x * 2.0


def test_a_bad_module_config_names_the_module_and_an_unrecordable_call_keeps_the_original(tmp_path):
    inplace.forget()
    try:
        good = navbuild.Module(Scale(), name="good")
        odd = navbuild.Module(Scale(), name="odd")
        good.optimize_config = navbuild.OptimizeConfig(target_formats=("onix",))

        def pipeline(x):
            return odd(good(x), options=object())  # an argument navbuild cannot record

        config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_device="cpu",
                                         profiling=False, workspace=tmp_path)
        with pytest.raises(navbuild.ConfigError, match="OptimizeConfig of 'good': target_formats: unknown format"):
            navbuild.optimize(pipeline, [torch.ones(1, 2)], config, quiet=True)
        assert not list((tmp_path / ".navbuild" / "actions").glob("*/*"))  # nothing was built

        good.optimize_config = None
        packages = navbuild.optimize(pipeline, [torch.ones(1, 2)], config, quiet=True)
        assert packages["odd"] is None and "cannot be recorded" in odd.optimized_reason
        assert packages["good"].targets["torchscript-trace"].correct
        navbuild.load_optimized(quiet=True)
        assert torch.equal(pipeline(torch.ones(1, 2)), torch.full((1, 2), 4.0))
    finally:
        inplace.forget()
