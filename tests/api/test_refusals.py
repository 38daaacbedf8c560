"""The API refuses what it cannot build with a navbuild error naming the model (issue 21, item 6): a
missing or empty dataloader, a model whose outputs hold no tensor."""
from __future__ import annotations

import re

import pytest
import torch

import navbuild
from navbuild.engine.config import ConfigError


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


class Returns(torch.nn.Module):
    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return self.value


def config(tmp_path):
    return navbuild.OptimizeConfig(target_formats=("onnx",), workspace=tmp_path)


@pytest.mark.parametrize("dataloader,problem", [
    (None, "model double: the dataloader is missing (None), not an iterable of samples"),
    (3, "model double: the dataloader is a int, not an iterable of samples"),
    ([], "model double: the dataloader yielded no sample"),
    (iter(()), "model double: the dataloader yielded no sample"),
])
def test_a_missing_or_empty_dataloader_names_the_model(tmp_path, dataloader, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)) as caught:
        navbuild.torch.optimize(Double(), dataloader, config(tmp_path), name="double", quiet=True)
    assert "fix:" in str(caught.value)
    assert not list(tmp_path.rglob("*.tensors"))  # nothing was written, nothing built


@pytest.mark.parametrize("value,shown", [(None, "NoneType None"), ("text", "str 'text'"), (7, "int 7"),
                                         ((None, "x"), "tuple (None, 'x')")])
def test_a_model_whose_outputs_hold_no_tensor_is_refused_before_building(tmp_path, value, shown):
    with pytest.raises(ConfigError, match=re.escape(f"model odd returned {shown}, which holds no tensor")) as caught:
        navbuild.torch.optimize(Returns(value), [torch.randn(2, 4)], config(tmp_path), name="odd", quiet=True)
    assert "return a tensor" in str(caught.value)
    assert not (tmp_path / ".navbuild").exists()
