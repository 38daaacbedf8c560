"""A live model's identity: the same in any process, changed by a weight, a method, a helper function,
an attribute or a global constant it reads; unchanged by an edit outside what it uses."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch

from navbuild.api.identity import describe, model_identity
from tests.api.conftest import run_python

MODEL = '''
import torch
from torch import nn

SCALE = 2.0
# a comment outside the model's code


def helper(x):
    return torch.tanh(x) * SCALE


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.factor = 0.5

    def forward(self, x):
        return helper(self.linear(x)) * self.factor


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.Sequential(Block(4), Block(4))
        self.register_buffer("offset", torch.ones(4), persistent=False)

    def forward(self, x):
        return self.blocks(x) + self.offset


def build():
    return Net().eval()
'''


def load(folder: Path, text: str, name: str):
    """Import ``text`` as module ``name`` (it stays imported: classes find their source through it)."""
    (folder / f"{name}.py").write_text(text)
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    sys.path.insert(0, str(folder))
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no stale .pyc within one second
    try:
        return importlib.import_module(name).build()
    finally:
        sys.dont_write_bytecode = writes
        sys.path.remove(str(folder))


def identity_in_new_process(folder: Path, name: str) -> str:
    return run_python(f"""
        import json
        from {name} import build
        from navbuild.api.identity import model_identity
        print(json.dumps({{"identity": model_identity(build())}}))
        """, folder, folder)["identity"]


def test_the_same_model_has_the_same_identity_in_a_new_process(tmp_path):
    model = load(tmp_path, MODEL, "same_model")
    assert model_identity(model) == model_identity(load(tmp_path, MODEL, "same_model"))
    assert model_identity(model) == identity_in_new_process(tmp_path, "same_model")


EDITS = [
    ("method", "return self.blocks(x) + self.offset", "return self.blocks(x) - self.offset"),
    ("helper function", "return torch.tanh(x) * SCALE", "return torch.sigmoid(x) * SCALE"),
    ("global constant", "SCALE = 2.0", "SCALE = 3.0"),
    ("attribute", "self.factor = 0.5", "self.factor = 0.25"),
    ("non-persistent buffer", "torch.ones(4)", "torch.zeros(4)"),
    ("initial weights", "torch.manual_seed(0)", "torch.manual_seed(1)"),
]


@pytest.mark.parametrize("what, old, new", EDITS, ids=[e[0] for e in EDITS])
def test_an_edit_to_what_the_model_uses_changes_its_identity(tmp_path, what, old, new):
    before = model_identity(load(tmp_path, MODEL, f"edit_{abs(hash(what))}"))
    assert old in MODEL
    after = model_identity(load(tmp_path, MODEL.replace(old, new), f"edit_{abs(hash(what))}"))
    assert before != after, what


def test_an_edited_weight_changes_it_and_restoring_it_restores_it(tmp_path):
    model = load(tmp_path, MODEL, "weights_model")
    before = model_identity(model)
    with torch.no_grad():
        model.blocks[0].linear.weight[0, 0] += 1e-3
    assert model_identity(model) != before
    with torch.no_grad():
        model.blocks[0].linear.weight[0, 0] -= 1e-3
    # the float round trip may not restore the exact bits; compare with the bits restored
    model.load_state_dict(load(tmp_path, MODEL, "weights_model").state_dict())
    assert model_identity(model) == before


def test_a_comment_outside_the_model_code_changes_nothing(tmp_path):
    before = model_identity(load(tmp_path, MODEL, "comment_model"))
    edited = MODEL.replace("# a comment outside the model's code", "# another comment, another line\n# here")
    assert model_identity(load(tmp_path, edited, "comment_model")) == before


def test_library_classes_count_by_version_and_the_material_is_plain():
    material = describe(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()))
    libraries = {name: entry for name, entry in material["code"].items() if entry[0] == "library"}
    assert "torch.nn.modules.linear.Linear" in libraries
    assert libraries["torch.nn.modules.linear.Linear"][1].startswith("torch==")
    assert not [name for name, entry in material["code"].items() if entry[0] == "source"]


def test_diffusers_unordered_config_bookkeeping_changes_nothing():
    """diffusers lists the config keys left at their defaults from a set (``_use_default_values``), in
    an order that changes with the process's hash seed: two processes must see one model."""
    class Configured(torch.nn.Module):
        def __init__(self, defaults: list[str], scale: float = 1.0) -> None:
            super().__init__()
            self.config = {"_use_default_values": defaults, "scale": scale}
            self.linear = torch.nn.Linear(2, 2)

    torch.manual_seed(0)
    first = Configured(["a", "b", "c"])
    second = Configured(["c", "a", "b"])
    second.load_state_dict(first.state_dict())
    assert model_identity(first) == model_identity(second)
    second.config["scale"] = 2.0  # what the model computes with still counts
    assert model_identity(first) != model_identity(second)


FAKE_LIBRARY = '''
import uuid

import torch

SESSION_ID = uuid.uuid4().hex  # a per-process value, as diffusers' hub_utils has


def tag():
    return SESSION_ID


class Scaled(torch.nn.Module):
    def forward(self, x):
        tag()
        return x * 2.0
'''


def install_fake_library(folder: Path, editable: bool) -> list[Path]:
    """``fakelib`` 1.2 installed the way ``pip install --target`` leaves it (its code beside its
    .dist-info), or as an editable install does (the code in a source tree, the .dist-info with its
    direct_url.json elsewhere); returns the folders to put on the path."""
    code, site = (folder / "src", folder / "site") if editable else (folder, folder)
    (code / "fakelib").mkdir(parents=True)
    (code / "fakelib" / "__init__.py").write_text(FAKE_LIBRARY)
    info = site / "fakelib-1.2.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakelib\nVersion: 1.2\n")
    (info / "top_level.txt").write_text("fakelib\n")
    (info / "RECORD").write_text("fakelib/__init__.py,,\n" if not editable else "__editable__.fakelib.pth,,\n")
    if editable:
        (info / "direct_url.json").write_text(f'{{"url": "file://{code}", "dir_info": {{"editable": true}}}}')
    return sorted({code, site})


def fake_library_identity(folder: Path, paths: list[Path]) -> dict:
    return run_python("""
        import json
        import fakelib
        from navbuild.api.identity import describe, model_identity
        model = fakelib.Scaled()
        print(json.dumps({"identity": model_identity(model), "code": describe(model)["code"]["fakelib.Scaled"][0]}))
        """, folder, *paths)


@pytest.mark.parametrize("editable", [False, True], ids=["installed", "editable"])
def test_a_library_installed_outside_site_packages_counts_by_version(tmp_path, editable):
    """diffusers installed with ``pip install --target`` read its per-process session id into the
    identity: a worker never recognised the model it was sent (seen on the GPU machine)."""
    paths = install_fake_library(tmp_path, editable)
    first, second = fake_library_identity(tmp_path, paths), fake_library_identity(tmp_path, paths)
    if editable:
        assert first["code"] == "source"  # code being written counts by its text
    else:
        assert first["code"] == "library"
        assert first["identity"] == second["identity"]
