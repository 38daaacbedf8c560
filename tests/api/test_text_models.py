"""navbuild.torch.optimize on Hugging Face text models called with keyword inputs (issue 19): the
sequence axis found in the samples stays dynamic in every export, which then serves lengths no
sample had; a model called with keywords exports with torch.export even at one fixed length; bounds
given in OptimizeConfig reach the exports."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import navbuild
from tests.api.conftest import copy_example

pytest.importorskip("transformers")

FORMATS = ("torchscript-trace", "torch-export", "onnx")
MODELS = ("bert", "distilbert", "clip_text", "gpt2")


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    """examples/hf_text's models module, importable while the tests run (workers unpickle from it)."""
    root = tmp_path_factory.mktemp("text")
    folder = copy_example("hf_text", root)
    sys.path.insert(0, str(folder))
    sys.modules.pop("model", None)
    import model as text_model

    yield root, text_model
    sys.path.remove(str(folder))
    sys.modules.pop("model", None)


def tokens(batch: int, length: int, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(1, 90, (batch, length), generator=generator),
            "attention_mask": torch.ones(batch, length, dtype=torch.long)}


def first_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else next(iter(output.values()))


@pytest.mark.parametrize("name", MODELS)
def test_keyword_inputs_keep_a_dynamic_sequence_in_every_export(text, name):
    root, text_model = text
    model = getattr(text_model, name)()
    config = navbuild.OptimizeConfig(target_formats=FORMATS, target_device="cpu", workspace=root, profiling=False)
    package = navbuild.torch.optimize(model, text_model.make_samples(), config, name=name, quiet=True)
    for fmt in FORMATS:
        target = package.targets[fmt]
        assert target.status == "built" and target.correct, (name, fmt, target.reason)
    # the two lengths of the samples make the sequence axis dynamic, shared by both inputs
    assert [i["shape"] for i in package.status["inputs"]] == [[-1, -1], [-1, -1]]
    assert package.status["dynamic_axes"] == {"input_ids": {"1": "dim0"}, "attention_mask": {"1": "dim0"}}
    unseen = tokens(2, 10)  # samples have 8 and 13
    with torch.inference_mode():
        expected = first_tensor(model(**unseen))
    for fmt in FORMATS:
        optimized = package.get_model(target=fmt)
        try:
            got = first_tensor(optimized(**unseen))
        finally:
            optimized.close()
        assert got.shape == expected.shape, (fmt, got.shape)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-4, rtol=1e-3, err_msg=fmt)


def test_keyword_inputs_of_one_length_export_with_torch_export(text):
    """Fixed shapes, keyword inputs: torch.export got one dynamic_shapes entry per input for a forward
    that takes them as one *tensors (``inputs has 1 elements, but dynamic_shapes has 2``)."""
    root, text_model = text
    samples = [tokens(1, 8, seed=1), tokens(2, 8, seed=2)]
    config = navbuild.OptimizeConfig(target_formats=("torch-export",), target_device="cpu", workspace=root,
                                     profiling=False)
    package = navbuild.torch.optimize(text_model.bert(), samples, config, name="bert_fixed", quiet=True)
    target = package.targets["torch-export"]
    assert target.status == "built" and target.correct, target.reason
    assert [i["shape"] for i in package.status["inputs"]] == [[-1, 8], [-1, 8]]


def test_bounds_given_to_the_api_reach_the_export(text):
    root, text_model = text
    axes = {"input_ids": {1: {"name": "seq", "min": 2, "max": 24}}, "attention_mask": {1: "seq"}}
    config = navbuild.OptimizeConfig(target_formats=("torch-export",), target_device="cpu", workspace=root,
                                     profiling=False, dynamic_axes=axes)
    model = text_model.gpt2()
    package = navbuild.torch.optimize(model, text_model.make_samples(), config, name="gpt2_bounded", quiet=True)
    assert package.targets["torch-export"].status == "built", package.targets["torch-export"].reason
    assert package.status["dynamic_axes"]["input_ids"] == {"1": {"name": "seq", "min": 2, "max": 24}}
    optimized = package.get_model(target="torch-export")
    try:
        with torch.inference_mode():
            expected = model(**tokens(1, 24)).logits
        np.testing.assert_allclose(first_tensor(optimized(**tokens(1, 24))).numpy(), expected.numpy(), atol=1e-4,
                                   rtol=1e-3)  # the declared maximum: no sample was this long
        with pytest.raises(Exception, match="24|range|constraint|Expected"):
            optimized(**tokens(1, 25))  # past the declared maximum
    finally:
        optimized.close()
