"""Inputs and outputs bind by name (issue 9, item 2): a dict result by key, inputs by forward's
parameter names whatever their declared order, and mismatches as clear errors."""
from __future__ import annotations

import textwrap

import numpy as np
import pytest

from tests.rules.conftest import build, context, reference_outputs, run_all, runner_for, write_model

# Returns a dict whose key order is not the declared order; takes two inputs whose declared order is
# not forward's. A mask fed as ids (or one output named as the other) gives other numbers.
TWO_HEADS = textwrap.dedent('''
    import torch
    from torch import nn


    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(50, 8)
            self.text = nn.Linear(8, 3)
            self.joint = nn.Linear(8, 2)

        def forward(self, input_ids, attention_mask):
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            pooled = (self.embed(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            return {"joint": self.joint(pooled), "text": self.text(pooled)}


    def build_model():
        torch.manual_seed(0)
        return TwoHeads().eval()
''')

FORMATS = ["torch", "torchscript-trace", "torchscript-script", "torch-export", "onnx"]


def _samples() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    samples = []
    for batch in (1, 3):
        ids = rng.integers(2, 50, (batch, 6)).astype(np.int64)
        mask = (rng.random((batch, 6)) > 0.3).astype(np.int64)
        mask[:, 0] = 1
        samples.append({"attention_mask": mask, "input_ids": ids})  # not forward's order
    return samples


def _expected(spec, samples) -> list[dict[str, np.ndarray]]:
    import torch

    model = spec.load_entry()
    with torch.no_grad():
        results = [model(input_ids=torch.from_numpy(s["input_ids"]), attention_mask=torch.from_numpy(s["attention_mask"]))
                   for s in samples]
    return [{name: result[name].numpy() for name in ("text", "joint")} for result in results]


@pytest.fixture(scope="module")
def two_heads(module_tmp):
    spec = write_model(module_tmp / "two_heads", TWO_HEADS, name="two_heads", inputs=("attention_mask", "input_ids"),
                       outputs=("text", "joint"))
    samples = _samples()
    return spec, samples, _expected(spec, samples)


def test_the_reference_binds_inputs_by_name_and_outputs_by_key(two_heads, tmp_path):
    spec, samples, expected = two_heads
    reference = reference_outputs(tmp_path, spec, samples)
    for got, want in zip(reference, expected):
        assert list(got) == ["text", "joint"]
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_keeps_the_names(two_heads, tmp_path, fmt):
    spec, samples, expected = two_heads
    ctx = context(tmp_path, spec, samples)
    build(fmt, ctx)
    for got, want in zip(run_all(runner_for(fmt, ctx), samples), expected):
        assert sorted(got) == ["joint", "text"]
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=f"{fmt}: {name}")
    if fmt == "onnx":
        import onnx

        graph = onnx.load(str(ctx.out_dir / "model.onnx")).graph
        assert [i.name for i in graph.input] == ["attention_mask", "input_ids"]
        assert [o.name for o in graph.output] == ["text", "joint"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torch-compile", "aoti"])
def test_compiled_buckets_keep_the_names(two_heads, tmp_path, fmt):
    """Inputs by name and a dict result through batch buckets: batches 1 and 3 run padded to 4 and
    come back sliced under their own names (a padded result bound by position swaps the two heads)."""
    spec, samples, expected = two_heads
    ctx = context(tmp_path, spec, samples, params={"buckets": [4]})
    build(fmt, ctx)
    runner = runner_for(fmt, ctx)
    assert runner.served_batch_sizes() == [4]
    for got, want in zip(run_all(runner, samples), expected):
        assert sorted(got) == ["joint", "text"]
        for name in want:
            assert got[name].shape == want[name].shape, f"{fmt}: {name}"
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5, err_msg=f"{fmt}: {name}")


def test_a_declared_output_that_is_not_a_key_is_a_clear_error(module_tmp, tmp_path):
    from navbuild_rules.torch.model_io import BindingError

    spec = write_model(module_tmp / "two_heads_bad_output", TWO_HEADS, name="heads",
                       inputs=("input_ids", "attention_mask"), outputs=("text", "image"))
    with pytest.raises(BindingError) as raised:
        build("reference", context(tmp_path, spec, _samples(), name="reference"))
    message = str(raised.value)
    assert "model heads" in message and "image" in message and "['joint', 'text']" in message


def test_inputs_that_are_not_forwards_parameters_are_a_clear_error(module_tmp, tmp_path):
    from navbuild_rules.torch.model_io import BindingError

    spec = write_model(module_tmp / "two_heads_bad_input", TWO_HEADS, name="heads", inputs=("ids", "attention_mask"))
    samples = [{"ids": s["input_ids"], "attention_mask": s["attention_mask"]} for s in _samples()]
    with pytest.raises(BindingError) as raised:
        build("reference", context(tmp_path, spec, samples, name="reference"))
    message = str(raised.value)
    assert "model heads" in message and "['ids', 'attention_mask']" in message
    assert "['input_ids', 'attention_mask']" in message and "ids is not among them" in message


def test_positional_inputs_still_bind_by_position(module_tmp, tmp_path):
    """Names that are none of forward's parameters (``input__0`` style) go by position, as before."""
    spec = write_model(module_tmp / "two_heads_positional", TWO_HEADS, name="heads", inputs=("ids", "mask"),
                       outputs=("text", "joint"))
    samples = [{"ids": s["input_ids"], "mask": s["attention_mask"]} for s in _samples()]
    reference = reference_outputs(tmp_path, spec, samples)
    for got, want in zip(reference, _expected(spec, _samples())):
        np.testing.assert_allclose(got["text"], want["text"], rtol=1e-6, atol=1e-6)


def test_binding_rules_against_forwards_signature():
    import torch

    from navbuild.rule import ModelSpec
    from navbuild_rules.torch.model_io import BY_NAME, POSITIONAL, BindingError, input_binding

    class Model(torch.nn.Module):
        def __init__(self, forward):
            super().__init__()
            self.forward = forward

    spec = ModelSpec(name="m", framework="torch", entry="m.py:f", root=".")

    def binding(forward, names):
        return input_binding(spec, Model(forward), names)

    assert binding(lambda input_ids, attention_mask=None, **kw: 0, ["input_ids", "attention_mask"]) == POSITIONAL
    assert binding(lambda input_ids, attention_mask=None, **kw: 0, ["attention_mask", "input_ids"]) == BY_NAME
    assert binding(lambda input_ids=None, attention_mask=None, token_type_ids=None: 0,
                   ["input_ids", "token_type_ids"]) == BY_NAME  # skips attention_mask: not positional
    assert binding(lambda x: 0, ["image"]) == POSITIONAL
    assert binding(lambda **inputs: 0, ["a", "b"]) == BY_NAME
    with pytest.raises(BindingError, match="input_idz is not among them"):  # not swallowed by **kwargs
        binding(lambda input_ids=None, attention_mask=None, **kw: 0, ["input_idz", "attention_mask"])
    with pytest.raises(BindingError, match="forward requires mask, which is not an input"):
        binding(lambda x, mask: 0, ["x"])
    with pytest.raises(BindingError, match="forward takes 1 to 1 inputs by position, the model declares 2"):
        binding(lambda x: 0, ["a", "b"])
