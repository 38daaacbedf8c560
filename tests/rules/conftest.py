"""Helpers for the torch and onnx rule tests: example models copied into temp folders, hand-made
BuildContexts, builds and runner calls (no engine, no store)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from navbuild.rule import BuildContext, ModelSpec, call_entry
from navbuild.runner import Runner

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {  # name -> (folder, inputs, max_batch_size)
    "cnn": ("examples/vision", ("image",), 16),
    "encoder": ("examples/text", ("tokens",), 8),
}
# A model that stresses TorchScript's naming: variants of one class (mangled names), a scripted
# helper function, Final constants, a ModuleList loop, two inputs and dict + tuple outputs.
TRICKY_MODEL = textwrap.dedent('''
    from typing import Dict, Final, Tuple

    import torch
    from torch import nn


    def scale(x: torch.Tensor, factor: float) -> torch.Tensor:
        return x * factor


    class Branch(nn.Module):
        alpha: Final[float]
        width: Final[int]

        def __init__(self, channels: int, kernel: int, use_norm: bool) -> None:
            super().__init__()
            self.alpha, self.width = 0.5, channels
            self.conv = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
            self.norm = nn.LayerNorm(channels) if use_norm else nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.norm(self.conv(x).transpose(1, 2)).transpose(1, 2)
            return scale(y, self.alpha) + x


    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.branches = nn.ModuleList([Branch(4, 3, True), Branch(4, 5, False), Branch(4, 3, True)])
            self.head = nn.Linear(4, 2)
            self.aux = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
            for branch in self.branches:
                x = branch(x)
            pooled = (x * mask.unsqueeze(1)).mean(dim=2)
            return {"main": self.head(pooled), "aux": self.aux(pooled)}, pooled.sum(dim=1, keepdim=True)


    def build_model() -> nn.Module:
        torch.manual_seed(0)
        return Net().eval()
''')


# Many torch.nn layers: scripting compiles long torch.nn.functional code (many locals and branches).
LAYERS_MODEL = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embed = nn.Embedding(50, 16, padding_idx=0)
            self.post_norm = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
            self.pre_norm = nn.TransformerEncoderLayer(16, 2, 24, dropout=0.0, batch_first=True, norm_first=True)
            self.lstm = nn.LSTM(16, 8, batch_first=True, bidirectional=True)
            self.gru = nn.GRU(16, 8, batch_first=True)
            self.conv = nn.Conv1d(16, 16, 3, padding=1, groups=4)
            self.norm = nn.BatchNorm1d(16)
            self.attention = nn.MultiheadAttention(16, 2, batch_first=True)
            self.head = nn.Linear(40, 3)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            x = self.pre_norm(self.post_norm(self.embed(tokens)))
            y, _ = self.lstm(x)
            z, _ = self.gru(x)
            a, _ = self.attention(x, x, x)
            c = F.gelu(self.norm(self.conv(a.transpose(1, 2))))
            c = F.interpolate(c, scale_factor=2.0, mode="linear")[:, :, ::2].transpose(1, 2)
            return F.log_softmax(self.head(torch.cat([y, z, c], dim=-1).mean(dim=1)), dim=-1)


    def build_model() -> nn.Module:
        return Net().eval()
''')


def layers_model(dest: Path) -> ModelSpec:
    return write_model(dest, LAYERS_MODEL, name="layers", inputs=("tokens",))


def token_samples() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"tokens": rng.integers(0, 50, (batch, 7)).astype(np.int64)} for batch in (1, 3)]


def tricky_samples() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"x": rng.standard_normal((batch, 4, 6)).astype(np.float32),
             "mask": (rng.random((batch, 6)) > 0.3).astype(np.float32)} for batch in (1, 3)]


def tricky_model(dest: Path) -> ModelSpec:
    return write_model(dest, TRICKY_MODEL, name="tricky", inputs=("x", "mask"))


TOLERANCES = {"fp32": (1e-4, 1e-3), "fp16": (5e-2, 5e-2), "bf16": (1.5e-1, 1e-1),  # (atol, rtol)
              "tf32": (5e-3, 5e-3)}


def copy_example(name: str, dest: Path, *, comment: str | None = None) -> ModelSpec:
    """The example model ``name`` copied into ``dest`` (optionally with a comment added on top)."""
    folder, inputs, max_batch = EXAMPLES[name]
    dest.mkdir(parents=True, exist_ok=True)
    for file in ("model.py", "weights.pt"):
        shutil.copyfile(REPO / folder / file, dest / file)
    if comment is not None:
        text = (dest / "model.py").read_text()
        (dest / "model.py").write_text(f"# {comment}\n\n" + text.replace("\n\nclass ", f"\n\n# {comment}\nclass ", 1))
    return ModelSpec(name=name, framework="torch", entry="model.py:build_model", root=dest, inputs=inputs,
                     outputs=("logits",), max_batch_size=max_batch)


def write_model(dest: Path, source: str, *, name: str = "model", inputs: tuple[str, ...] = ("x",),
                outputs: tuple[str, ...] = (), max_batch_size: int = 4) -> ModelSpec:
    """A model given as source text, written into ``dest/model.py`` (entry ``build_model``)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.py").write_text(source)
    return ModelSpec(name=name, framework="torch", entry="model.py:build_model", root=dest, inputs=inputs,
                     outputs=outputs, max_batch_size=max_batch_size)


def example_samples(spec: ModelSpec) -> list[dict[str, np.ndarray]]:
    from navbuild import tensors

    return [tensors.as_named(sample, spec.inputs) for sample in call_entry(spec.root, "model.py:make_samples")]


def engine_values(spec: ModelSpec, **overrides: Any) -> dict[str, Any]:
    """Every engine value as the engine gives them for ``spec`` (navbuild.rule.ENGINE_VALUES)."""
    return {"max_batch_size": spec.max_batch_size, "normalize": True, "profile_batch_sizes": [], **overrides}


def context(tmp: Path, spec: ModelSpec, samples: list[dict[str, np.ndarray]], *, precision: str = "fp32",
            device: str = "cpu", params: Mapping[str, Any] | None = None, name: str = "build",
            input_dir: Path | None = None, **values: Any) -> BuildContext:
    """A BuildContext with fresh out/work folders under ``tmp/name``; every engine value filled in
    (``values`` overrides them: ``normalize=False``)."""
    base = tmp / name
    for sub in ("out", "work"):
        (base / sub).mkdir(parents=True, exist_ok=False)
    return BuildContext(model=spec, target=f"{spec.name}:{name}", precision=precision, device=device,
                        params=dict(params or {}), out_dir=base / "out", input_dir=input_dir, samples=samples,
                        log=lambda message: None, workdir=base / "work",
                        engine_values=engine_values(spec, **values))


def build(rule_name: str, ctx: BuildContext) -> dict[str, Any]:
    from navbuild.engine.registry import default_registry

    return default_registry().rule(rule_name, ctx.model.framework).build(ctx) or {}


def runner_for(rule_name: str, ctx: BuildContext) -> Runner:
    from navbuild.engine.registry import default_registry

    registry = default_registry()
    runner_cls = registry.runner(registry.rule(rule_name, ctx.model.framework).runner)
    return runner_cls(ctx.out_dir, ctx.model, ctx.device, ctx.precision)


def run_all(runner: Runner, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    with runner:
        return [runner.infer(sample) for sample in samples]


def reference_outputs(tmp: Path, spec: ModelSpec, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    from navbuild import tensors

    ctx = context(tmp, spec, samples, name="reference")
    build("reference", ctx)
    return tensors.load(ctx.out_dir / "reference.tensors")


def assert_matches(actual: list[dict[str, np.ndarray]], expected: list[dict[str, np.ndarray]], precision: str) -> None:
    atol, rtol = TOLERANCES[precision]
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert list(got) == list(want)
        for name in want:
            assert got[name].dtype == want[name].dtype, name
            np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=rtol, err_msg=f"{name} ({precision})")


def file_bytes(ctx: BuildContext, name: str) -> bytes:
    return (ctx.out_dir / name).read_bytes()


_CHILD = """
import json, sys
from pathlib import Path
jobs = json.loads(sys.argv[1])
sys.path[:0] = [jobs[0]["repo"]]
from navbuild import hashing, tensors
from navbuild.engine.registry import default_registry
from navbuild.rule import BuildContext, ModelSpec
digests = []
for job in jobs:
    spec = ModelSpec(name=job["name"], framework="torch", entry="model.py:build_model", root=Path(job["root"]),
                     inputs=tuple(job["inputs"]), outputs=tuple(job["outputs"]), max_batch_size=job["max_batch_size"])
    samples = tensors.load(Path(job["samples"]))
    for index, (rule, precision, params) in enumerate(job["builds"]):
        base = Path(job["tmp"]) / str(index)
        (base / "out").mkdir(parents=True)
        (base / "work").mkdir()
        ctx = BuildContext(model=spec, target=rule, precision=precision, device="cpu", params=params,
                           out_dir=base / "out", input_dir=None, samples=samples, log=lambda m: None,
                           workdir=base / "work", engine_values={"max_batch_size": spec.max_batch_size,
                                                                 "normalize": True, "profile_batch_sizes": []})
        default_registry().rule(rule, "torch").build(ctx)
        digests.append(hashing.tree_digest({p.name: hashing.digest_file(p) for p in (base / "out").iterdir()}))
print(json.dumps(digests))
"""

Build = tuple[str, str, dict[str, Any]]  # rule, precision, params


def digests_in_subprocess(tmp: Path, jobs: list[tuple[ModelSpec, list[dict[str, np.ndarray]], list[Build]]],
                          hash_seed: str = "12345") -> list[str]:
    """Build in one fresh Python process with another PYTHONHASHSEED; the digest of each build's files."""
    from navbuild import tensors

    described = []
    for index, (spec, samples, builds) in enumerate(jobs):
        folder = tmp / f"job{index}"
        folder.mkdir(parents=True)
        tensors.save(folder / "samples.tensors", samples)
        described.append({"repo": str(REPO), "name": spec.name, "root": str(spec.root), "inputs": list(spec.inputs),
                          "outputs": list(spec.outputs), "max_batch_size": spec.max_batch_size,
                          "samples": str(folder / "samples.tensors"), "builds": builds, "tmp": str(folder / "builds")})
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(described)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": hash_seed}, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def out_digest(ctx: BuildContext) -> str:
    from navbuild import hashing

    return hashing.tree_digest({p.name: hashing.digest_file(p) for p in ctx.out_dir.iterdir()})


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rules")


@pytest.fixture(scope="module")
def examples(module_tmp: Path) -> dict:
    """Each example model copied into a temp folder, with its samples and reference outputs."""
    found = {}
    for name in ("cnn", "encoder"):
        spec = copy_example(name, module_tmp / "examples" / name)
        samples = example_samples(spec)
        found[name] = (spec, samples, reference_outputs(module_tmp / "examples" / f"{name}-ref", spec, samples))
    return found
