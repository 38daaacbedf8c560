"""Model code as users write it (issue 9, item 3): an entry that imports its neighbour module, a
Hugging Face model whose result is a ModelOutput, and exporters' noise kept out of the console."""
from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import numpy as np
import pytest

from navbuild.rule import ModelSpec
from tests.rules._ctx import make_ctx
from tests.rules.conftest import build, context, reference_outputs, run_all, runner_for, write_model

LAYERS = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x))
''')

NET = textwrap.dedent('''
    import torch
    from torch import nn

    from models.layers import Block  # the project root is on sys.path, as under `python -m`


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.head = nn.Linear(4, 2)

        def forward(self, image):
            return self.head(self.block(image).mean(dim=(2, 3)))


    def build_model():
        torch.manual_seed(0)
        return Net().eval()
''')


def test_an_entry_imports_a_module_beside_it_from_the_project_root(tmp_path):
    import sys

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "layers.py").write_text(LAYERS)
    (tmp_path / "models" / "net.py").write_text(NET)
    spec = ModelSpec(name="net", framework="torch", entry="models/net.py:build_model", root=tmp_path,
                     inputs=("image",), outputs=("logits",), max_batch_size=2)
    samples = [{"image": np.ones((2, 3, 8, 8), np.float32)}]
    reference = reference_outputs(tmp_path / "ref", spec, samples)
    assert reference[0]["logits"].shape == (2, 2)
    assert str(tmp_path) not in sys.path  # only while the entry is loaded
    ctx = context(tmp_path / "builds", spec, samples)
    build("torchscript-trace", ctx)
    np.testing.assert_allclose(run_all(runner_for("torchscript-trace", ctx), samples)[0]["logits"],
                               reference[0]["logits"], rtol=1e-5, atol=1e-6)


def test_the_torchscript_onnx_exporters_ir_dump_goes_to_the_log_not_the_console(tmp_path, capfd):
    source = ("import torch\n\nclass M(torch.nn.Module):\n    def forward(self, x):\n"
              "        return torch.linalg.eigvals(x @ x.transpose(1, 2)).real\n\n"
              "def build_model():\n    return M()\n")
    spec = write_model(tmp_path / "src", source, name="eig")
    ctx = make_ctx(tmp_path, spec, "onnx", params={"exporter": "torchscript"},
                   samples=[{"x": np.ones((2, 3, 3), np.float32)}])
    with pytest.raises(RuntimeError):
        build("onnx", ctx)
    captured = capfd.readouterr()
    assert "Torch IR graph" not in captured.out + captured.err
    log = "\n".join(ctx.log.__self__)
    assert "the torchscript exporter printed" in log and "Torch IR graph at exception" in log


# -- Hugging Face -------------------------------------------------------------------------------------
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="transformers is not installed (pip install navbuild[hf])")

BERT = textwrap.dedent('''
    import torch
    from transformers import BertConfig, BertModel


    def build_model():
        torch.manual_seed(0)
        config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=32)
        return BertModel(config).eval()
''')


@pytest.fixture(scope="module")
def bert(module_tmp: Path):
    spec = write_model(module_tmp / "bert", BERT, name="bert", inputs=("attention_mask", "input_ids"),
                       max_batch_size=4)
    rng = np.random.default_rng(0)
    samples = []
    for batch in (1, 2):
        mask = np.ones((batch, 8), np.int64)
        mask[:, 6:] = 0
        samples.append({"attention_mask": mask, "input_ids": rng.integers(1, 64, (batch, 8)).astype(np.int64)})
    return spec, samples, reference_outputs(module_tmp / "bert-ref", spec, samples)


@needs_transformers
def test_a_model_output_is_flattened_to_its_keys(bert):
    _, _, reference = bert
    assert list(reference[0]) == ["last_hidden_state", "pooler_output"]


@needs_transformers
@pytest.mark.parametrize("fmt", ["torchscript-trace", "torch-export", "onnx"])
def test_hugging_face_exports_see_plain_tensors(bert, tmp_path, fmt):
    spec, samples, reference = bert
    named = ModelSpec(**{**spec.__dict__, "outputs": tuple(reference[0])})  # the engine names them so
    ctx = context(tmp_path, named, samples)
    build(fmt, ctx)
    for got, want in zip(run_all(runner_for(fmt, ctx), samples), reference):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4, err_msg=f"{fmt}: {name}")


@needs_transformers
def test_scripting_a_hugging_face_model_fails_with_a_hint(bert, tmp_path):
    spec, samples, _ = bert
    with pytest.raises(RuntimeError) as failure:
        build("torchscript-script", context(tmp_path, spec, samples))
    message = str(failure.value)
    assert message.startswith("model bert: torch.jit.script failed")
    assert "torch.jit.script is not expected to work for Hugging Face models" in message
    assert "torchscript-trace" in message and "torch-export" in message


@needs_transformers
@pytest.mark.slow
def test_aoti_of_a_hugging_face_model_runs_in_its_worker(bert, tmp_path):
    """The worker process imports no transformers: the package must hold plain tensors, not a ModelOutput."""
    spec, samples, reference = bert
    named = ModelSpec(**{**spec.__dict__, "outputs": tuple(reference[0])})
    ctx = make_ctx(tmp_path, named, "aoti", samples=samples)
    build("aoti", ctx)
    for got, want in zip(run_all(runner_for("aoti", ctx), samples), reference):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4, err_msg=name)
