"""The torch family with real torch: reference, eager recipe, TorchScript (trace, script), torch.export.

Every build's runner is checked against the reference outputs; every export is checked to give
identical bytes from two checkout folders, after a comment edit, twice in one process and in a
fresh process with another PYTHONHASHSEED.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from navbuild.runner import RunnerError

from tests.rules.conftest import (REPO, assert_matches, build, context, copy_example, digests_in_subprocess,
                                  example_samples, file_bytes, layers_model, out_digest, reference_outputs, run_all,
                                  runner_for, token_samples, tricky_model, tricky_samples, write_model)

torch = pytest.importorskip("torch")
cuda_only = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

PRECISIONS = ("fp32", "fp16", "bf16")
EXPORTS = {"torchscript-trace": "model.pt", "torchscript-script": "model.pt", "torch-export": "model.pt2"}
BUILDS = [(model, rule, precision) for model in ("cnn", "encoder") for rule in ("torch", *EXPORTS)
          for precision in PRECISIONS]


@pytest.fixture(scope="module")
def tricky(module_tmp: Path) -> tuple:
    spec = tricky_model(module_tmp / "tricky")
    samples = tricky_samples()
    return spec, samples, reference_outputs(module_tmp / "tricky-ref", spec, samples)


# -- outputs ------------------------------------------------------------------------------------------
def test_reference_names_outputs_and_covers_every_sample(examples) -> None:
    spec, samples, reference = examples["cnn"]
    assert len(reference) == len(samples)
    for sample, outputs in zip(samples, reference):
        assert list(outputs) == ["logits"]
        assert outputs["logits"].dtype == np.float32
        assert outputs["logits"].shape == (sample["image"].shape[0], 10)


def test_reference_flattens_dict_and_tuple_outputs(tricky) -> None:
    _, samples, reference = tricky
    assert [list(outputs) for outputs in reference] == [["output__0", "output__1", "output__2"]] * len(samples)
    assert reference[1]["output__1"].shape == (3, 3)  # dict value "aux", then the tuple's second item


def test_reference_accepts_a_list_output(tmp_path: Path) -> None:
    source = ("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n        return [x + 1, x * 2]\n\n"
              "def build_model():\n    return M()\n")
    spec = write_model(tmp_path / "src", source, outputs=("plus", "times"))
    outputs = reference_outputs(tmp_path, spec, [{"x": np.ones((2, 3), np.float32)}])
    assert outputs[0]["plus"].tolist() == [[2.0] * 3] * 2 and outputs[0]["times"].tolist() == [[2.0] * 3] * 2


@pytest.mark.parametrize("model,rule,precision", BUILDS)
def test_runner_matches_reference(examples, tmp_path: Path, model: str, rule: str, precision: str) -> None:
    spec, samples, reference = examples[model]
    ctx = context(tmp_path, spec, samples, precision=precision)
    metadata = build(rule, ctx)
    assert metadata["precision_mode"] == "cast"
    assert metadata["dtype"] == {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
    assert_matches(run_all(runner_for(rule, ctx), samples), reference, precision)


@pytest.mark.parametrize("rule", ["torch", *EXPORTS])
def test_dict_and_tuple_outputs_survive_every_format(tricky, tmp_path: Path, rule: str) -> None:
    spec, samples, reference = tricky
    ctx = context(tmp_path, spec, samples)
    build(rule, ctx)
    assert_matches(run_all(runner_for(rule, ctx), samples), reference, "fp32")


def test_export_traced_with_batch_one_samples_runs_every_batch_size(examples, tmp_path: Path) -> None:
    """Only batch-1 samples: the example is tiled to 2 so the batch stays dynamic (0/1 specialisation)."""
    spec, samples, _ = examples["cnn"]
    batch_one = [{"image": samples[0]["image"][:1]}]
    ctx = context(tmp_path, spec, batch_one)
    assert build("torch-export", ctx)["dynamic_batch"] is True
    with runner_for("torch-export", ctx) as runner:
        for batch in (1, 2, spec.max_batch_size):
            image = np.repeat(batch_one[0]["image"], batch, axis=0)
            assert runner.infer({"image": image})["logits"].shape == (batch, 10)


def test_export_with_max_batch_size_one_is_static(examples, tmp_path: Path) -> None:
    spec, samples, reference = examples["cnn"]
    ctx = context(tmp_path, spec, samples[:1], max_batch_size=1)
    assert build("torch-export", ctx)["dynamic_batch"] is False
    assert_matches(run_all(runner_for("torch-export", ctx), samples[:1]), reference[:1], "fp32")


@cuda_only
@pytest.mark.parametrize("model", ["cnn", "encoder"])
@pytest.mark.parametrize("rule", ["torch", *EXPORTS])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_builds_and_runs_on_cuda(examples, tmp_path: Path, model: str, rule: str, precision: str) -> None:
    spec, samples, reference = examples[model]
    ctx = context(tmp_path, spec, samples, precision=precision, device="cuda")
    build(rule, ctx)
    runner = runner_for(rule, ctx)
    assert_matches(run_all(runner, samples), reference, precision)
    with runner:  # profiling's path: inputs placed once, outputs left on the GPU
        outputs = runner.run_prepared(runner.prepare(samples[-1]))
        runner.synchronize()
    assert outputs.device.type == "cuda"


# -- reproducibility ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_checkouts(module_tmp: Path) -> dict:
    """Each example in two folders at different depths, and a third copy with comments added."""
    copies = {}
    for name in ("cnn", "encoder"):
        specs = [copy_example(name, module_tmp / "checkouts" / "one" / name),
                 copy_example(name, module_tmp / "checkouts" / "two" / "deeper" / "folder" / name),
                 copy_example(name, module_tmp / "checkouts" / "three" / name, comment="a comment moves every line")]
        copies[name] = (specs, example_samples(specs[0]))
    return copies


REPRO = [("cnn", rule, "fp32") for rule in EXPORTS] + [("cnn", "torchscript-script", "fp16")] + \
        [("encoder", rule, "fp32") for rule in EXPORTS]


@pytest.mark.parametrize("model,rule,precision", REPRO)
def test_identical_bytes_from_two_folders_and_after_a_comment(three_checkouts, tmp_path: Path, model: str,
                                                             rule: str, precision: str) -> None:
    specs, samples = three_checkouts[model]
    outputs = []
    for index, spec in enumerate(specs):
        ctx = context(tmp_path, spec, samples, precision=precision, name=f"copy{index}")
        build(rule, ctx)
        data = file_bytes(ctx, EXPORTS[rule])
        assert str(spec.root).encode() not in data  # no absolute path left in the archive
        outputs.append(data)
    assert outputs[0] == outputs[1], "two checkout folders gave different bytes"
    assert outputs[0] == outputs[2], "a comment edit changed the bytes"


@pytest.mark.parametrize("rule", list(EXPORTS))
def test_identical_bytes_twice_in_one_process(tricky, examples, tmp_path: Path, rule: str) -> None:
    """TorchScript's name-mangling counters and type caches live in the process: export, export
    another model, export again."""
    spec, samples, _ = tricky
    first = context(tmp_path, spec, samples, name="first")
    build(rule, first)
    other_spec, other_samples, _ = examples["cnn"]
    if rule != "torch-export":
        build(rule, context(tmp_path, other_spec, other_samples, name="other"))
    second = context(tmp_path, spec, samples, name="second")
    build(rule, second)
    assert file_bytes(first, EXPORTS[rule]) == file_bytes(second, EXPORTS[rule])


@pytest.fixture(scope="module")
def layers(module_tmp: Path) -> tuple:
    spec = layers_model(module_tmp / "layers")
    samples = token_samples()
    return spec, samples, reference_outputs(module_tmp / "layers-ref", spec, samples)


@pytest.mark.parametrize("rule", ["torchscript-trace", "torchscript-script"])
def test_many_layers_load_match_and_repeat_after_other_exports(layers, tricky, tmp_path: Path, rule: str) -> None:
    """Scripting torch.nn's own layers compiles long functional code: the normalized archive loads,
    matches eager, and is identical after the process compiled other models."""
    spec, samples, reference = layers
    first = context(tmp_path, spec, samples, name="first")
    build(rule, first)
    assert_matches(run_all(runner_for(rule, first), samples), reference, "fp32")
    build(rule, context(tmp_path, tricky[0], tricky[1], name="other"))
    second = context(tmp_path, spec, samples, name="second")
    build(rule, second)
    assert file_bytes(first, "model.pt") == file_bytes(second, "model.pt")


def test_identical_bytes_in_a_fresh_process_with_another_hash_seed(tricky, layers, tmp_path: Path) -> None:
    """TorchScript prints Final constants in set order, which follows PYTHONHASHSEED; the module
    name of a file imported by path holds a hash; a fresh process has no mangled names yet."""
    jobs = [(tricky[0], tricky[1], [(rule, "fp32", {}) for rule in EXPORTS]),
            (layers[0], layers[1], [("torchscript-script", "fp32", {})])]
    here = []
    for spec, samples, builds in jobs:
        for rule, precision, params in builds:
            ctx = context(tmp_path, spec, samples, precision=precision, params=params, name=f"{spec.name}-{rule}")
            build(rule, ctx)
            here.append(out_digest(ctx))
    assert digests_in_subprocess(tmp_path / "child", jobs) == here


def test_renumbering_keeps_parameters_keywords_attributes_and_strings() -> None:
    from navbuild_rules.torch.torchscript_code import renumber_locals

    block = ("class Layer(Module):\n"
             "  conv1 : __torch__.Conv2d\n"
             "  def forward(self: __torch__.Layer,\n"
             "    x: Tensor,\n"
             "    x1: Tensor) -> Tensor:\n"
             "    conv1 = self.conv1\n"
             "    x4 = torch.add(x, x1, alpha=1)\n"
             "    x7 = f(x4, \"x4\", dim1=2)\n"
             "    return x7\n")
    renamed = renumber_locals(block)
    assert "    x0 = torch.add(x, x1, alpha=1)\n" in renamed  # x1 is a parameter: kept, and skipped
    assert "    x2 = f(x0, \"x4\", dim1=2)\n    return x2\n" in renamed
    assert "conv1 = self.conv1" in renamed and "  conv1 : __torch__.Conv2d" in renamed


def test_eager_recipe_is_deterministic_and_follows_the_weights(three_checkouts, tmp_path: Path) -> None:
    (one, two, _), samples = three_checkouts["cnn"]
    recipes = []
    for index, spec in enumerate((one, two, one)):
        ctx = context(tmp_path, spec, samples, precision="fp16", name=f"recipe{index}")
        build("torch", ctx)
        recipes.append(file_bytes(ctx, "recipe.json"))
    assert recipes[0] == recipes[1] == recipes[2]
    recipe = json.loads(recipes[0])
    assert recipe["precision"] == "fp16" and recipe["precision_mode"] == "cast"
    changed = copy_example("cnn", tmp_path / "changed")
    import torch

    weights = torch.load(changed.root / "weights.pt", weights_only=True)
    weights["head.bias"] += 1
    torch.save(weights, changed.root / "weights.pt")
    ctx = context(tmp_path, changed, samples, precision="fp16", name="changed-recipe")
    build("torch", ctx)
    assert json.loads(file_bytes(ctx, "recipe.json"))["weights_digest"] != recipe["weights_digest"]


@pytest.mark.parametrize("rule", ["torchscript-trace", "torchscript-script"])
def test_normalized_torchscript_drops_debug_info_and_still_runs(examples, tmp_path: Path, rule: str) -> None:
    spec, samples, reference = examples["cnn"]
    ctx = context(tmp_path, spec, samples)
    build(rule, ctx)
    names = zipfile.ZipFile(ctx.out_dir / "model.pt").namelist()
    assert not [name for name in names if name.endswith(".debug_pkl")]
    assert not [name for name in names if "navbuild_entry" in name]
    assert_matches(run_all(runner_for(rule, ctx), samples), reference, "fp32")


@pytest.mark.parametrize("rule", list(EXPORTS))
def test_normalize_false_output_still_loads_and_runs(examples, tmp_path: Path, rule: str) -> None:
    spec, samples, reference = examples["cnn"]
    ctx = context(tmp_path, spec, samples, normalize=False)
    assert build(rule, ctx)["normalized"] is False
    assert_matches(run_all(runner_for(rule, ctx), samples), reference, "fp32")


# -- failures -------------------------------------------------------------------------------------------
def test_script_failure_names_the_cause(tmp_path: Path) -> None:
    source = ("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
              "        a, b = x.reshape(2, -1)\n        return a + b\n\n"
              "def build_model():\n    return M()\n")
    spec = write_model(tmp_path / "src", source, name="unpacking")
    with pytest.raises(RuntimeError) as failure:
        build("torchscript-script", context(tmp_path, spec, [{"x": np.ones((2, 3), np.float32)}]))
    headline = str(failure.value).splitlines()[0]
    assert headline.startswith("model unpacking: torch.jit.script failed: RuntimeError:")
    assert "Tensor cannot be used as a tuple" in str(failure.value)


def test_export_failure_names_the_cause(tmp_path: Path) -> None:
    source = ("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
              "        if x.sum() > 0:\n            return x * 2\n        return x\n\n"
              "def build_model():\n    return M()\n")
    spec = write_model(tmp_path / "src", source, name="branchy")
    with pytest.raises(RuntimeError) as failure:
        build("torch-export", context(tmp_path, spec, [{"x": np.ones((2, 3), np.float32)}]))
    assert str(failure.value).startswith("model branchy: torch.export.export failed:")
    assert "data-dependent" in str(failure.value)


def test_runner_refuses_inputs_that_do_not_match(examples, tmp_path: Path) -> None:
    spec, samples, _ = examples["cnn"]
    ctx = context(tmp_path, spec, samples)
    build("torchscript-trace", ctx)
    with runner_for("torchscript-trace", ctx) as runner:
        with pytest.raises(RunnerError, match="do not match"):
            runner.infer({"pixels": samples[0]["image"]})
        with pytest.raises(RunnerError, match=r"float32\[3, 32, 32\]"):
            runner.infer({"image": samples[0]["image"][0]})


def test_runner_reports_a_missing_artifact(examples, tmp_path: Path) -> None:
    spec, samples, _ = examples["cnn"]
    ctx = context(tmp_path, spec, samples)
    with pytest.raises(RunnerError, match="model.pt is missing"):
        runner_for("torchscript-trace", ctx).activate()


def test_importing_the_rules_imports_no_framework() -> None:
    code = ("import sys, navbuild_rules.torch, navbuild_rules.onnx; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


QUANTIZED_MODEL = '''
import torch


def build_model():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, torch.qint8) if QUANTIZED else model


QUANTIZED = True
'''


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_eager_int8_runs_a_quantized_module_and_refuses_a_float_one(tmp_path):
    """torch-int8: a module quantized beforehand runs as given; a float module is no int8 model."""
    spec = write_model(tmp_path / "quantized", QUANTIZED_MODEL)
    samples = [{"x": np.random.default_rng(0).standard_normal((2, 8)).astype(np.float32)}]
    ctx = context(tmp_path, spec, samples, precision="int8")
    build("torch", ctx)
    assert json.loads((ctx.out_dir / "recipe.json").read_text())["precision"] == "int8"
    expected = spec.load_entry()(torch.from_numpy(samples[0]["x"])).numpy()
    outputs = run_all(runner_for("torch", ctx), samples)
    np.testing.assert_allclose(outputs[0]["output__0"], expected, atol=1e-6)

    plain = write_model(tmp_path / "plain", QUANTIZED_MODEL.replace("QUANTIZED = True", "QUANTIZED = False"))
    with pytest.raises(ValueError, match="holds no quantized module; int8 runs a module quantized beforehand"):
        build("torch", context(tmp_path, plain, samples, precision="int8", name="plain"))
