"""Two different models never share an output digest or a downstream key (issue 9, item 1).

Four small CNNs take the same samples and are built with the same formats: ``weights_a`` and
``weights_b`` share their code and differ in their weights file; ``code_a`` and ``code_b`` share
their entry file (byte for byte) and differ in a module that the entry imports. A recipe target (``torch``,
``torch-compile``) names no model in its bytes, so without the model's identity in its digest the
four would share one digest and one profile.
"""
from __future__ import annotations

import itertools
import json
import textwrap
from pathlib import Path

import pytest

from navbuild.cli import main

NET = textwrap.dedent('''
    import importlib
    from pathlib import Path

    import torch
    from torch import nn

    # the same bytes in every model's folder: each imports the module beside it, as ``<folder>.layers``
    Block = importlib.import_module(Path(__file__).parent.name + ".layers").Block


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()
            self.head = nn.Linear(4, 3)

        def forward(self, image):
            return self.head(self.block(image).mean(dim=(2, 3)))


    def build_model():
        torch.manual_seed(0)
        model = Net()
        {load}
        return model.eval()


    def make_samples():
        generator = torch.Generator().manual_seed(0)
        return [torch.randn(batch, 3, 8, 8, generator=generator) for batch in (1, 2)]
''')

BLOCK = textwrap.dedent('''
    import torch
    from torch import nn


    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            return torch.{activation}(self.conv(x))
''')

MODELS = ("weights_a", "weights_b", "code_a", "code_b")
FORMATS = ["torch", "torch-compile", "torchscript-trace"]
SHAPES = {"block.conv.weight": (4, 3, 3, 3), "block.conv.bias": (4,), "head.weight": (3, 4), "head.bias": (3,)}


def _write_project(root: Path) -> Path:
    import torch

    load = 'model.load_state_dict(torch.load(__file__.replace("net.py", "weights.pt"), weights_only=True))'
    for name in MODELS:
        folder = root / name
        folder.mkdir(parents=True)
        by_weights = name.startswith("weights")
        (folder / "net.py").write_text(NET.format(load=load if by_weights else ""))
        activation = "tanh" if name == "code_b" else "relu"
        (folder / "layers.py").write_text(BLOCK.format(activation=activation))
    for seed, name in enumerate(("weights_a", "weights_b")):
        torch.manual_seed(seed + 1)
        state = {key: torch.randn(shape) for key, shape in SHAPES.items()}
        torch.save(state, root / name / "weights.pt")
    config = ["[project]\nname = \"identity\"\n",
              "[profile]\nbatch_sizes = [1]\nmin_window_runs = 3\nwindow_s = 0.001\nwarmup_runs = 1\n"
              "warmup_s = 0.0\nmin_trials = 3\nmax_trials = 3\n"]
    for name in MODELS:
        sources = [f"{name}/*.py"] + ([f"{name}/weights.pt"] if name.startswith("weights") else [])
        config.append(textwrap.dedent(f'''
            [models.{name}]
            framework = "torch"
            entry = "{name}/net.py:build_model"
            samples = "{name}/net.py:make_samples"
            sources = {json.dumps(sources)}
            inputs = ["image"]
            outputs = ["logits"]
            max_batch_size = 2

            [models.{name}.targets]
            formats = {json.dumps(FORMATS)}

            [models.{name}.targets.torch-compile]
            backend = "eager"  # compiles nothing: the recipe is what this test is about
        '''))
    path = root / "navbuild.toml"
    path.write_text("\n".join(config))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("identity")
    config = _write_project(root)
    report = root / "run.json"
    assert main(["--config", str(config), "--json", str(report), "-q"]) == 0
    return json.loads(report.read_text())


@pytest.mark.parametrize("fmt", FORMATS)
def test_different_models_never_share_a_digest_or_a_downstream_key(built, fmt):
    for first, second in itertools.combinations(MODELS, 2):
        a, b = built[f"{first}:{fmt}"], built[f"{second}:{fmt}"]
        assert a["status"] == b["status"] == "built"
        assert a["digest"] != b["digest"], f"{first} and {second} share the {fmt} digest"
        for step in ("check", "profile"):
            a, b = built[f"{first}:{fmt}.{step}"], built[f"{second}:{fmt}.{step}"]
            assert a["status"] == b["status"] == "built", (a, b)
            assert a["key"] != b["key"], f"{first} and {second} share the {fmt}.{step} key"


def test_two_projects_sharing_a_store_never_share_a_recipe_digest(tmp_path):
    """The same entry file in two projects that share one store (as a team's shared store would),
    importing a neighbour module that differs: the eager recipe must not be served across them."""
    store = tmp_path / "shared-store"
    built = {}
    for activation in ("relu", "tanh"):
        root = tmp_path / activation
        (root / "m").mkdir(parents=True)
        (root / "m" / "net.py").write_text(NET.format(load=""))
        (root / "m" / "layers.py").write_text(BLOCK.format(activation=activation))
        (root / "navbuild.toml").write_text(textwrap.dedent(f'''
            [project]
            name = "p"
            store = "{store}"
            allow_paths_outside = true

            [profile]
            batch_sizes = [1]
            min_window_runs = 3
            window_s = 0.001
            min_trials = 3
            max_trials = 3

            [models.m]
            framework = "torch"
            entry = "m/net.py:build_model"
            samples = "m/net.py:make_samples"
            sources = ["m/*.py"]
            inputs = ["image"]
            outputs = ["logits"]
            max_batch_size = 2

            [models.m.targets]
            formats = ["torch"]
        '''))
        report = root / "run.json"
        assert main(["--config", str(root / "navbuild.toml"), "--json", str(report), "-q"]) == 0
        built[activation] = json.loads(report.read_text())
    relu, tanh = built["relu"], built["tanh"]
    assert relu["m:torch"]["digest"] != tanh["m:torch"]["digest"]
    assert tanh["m:torch.profile"]["status"] == "built"
    assert relu["m:torch.profile"]["key"] != tanh["m:torch.profile"]["key"]
