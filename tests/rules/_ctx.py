"""Hand-made BuildContexts and tiny models for the rule tests (no engine, no store)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from navbuild.rule import BuildContext, ModelSpec

TINY_CNN = textwrap.dedent('''
    import torch
    from torch import nn


    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, 5)

        def forward(self, image):
            return self.head(torch.relu(self.conv(image)).mean(dim=(2, 3)))


    def build_model():
        torch.manual_seed(0)
        return Tiny().eval()
''')


def tiny_model(root: Path, max_batch_size: int = 4) -> ModelSpec:
    """A one-conv CNN written into ``root/tiny.py``; input ``image`` (N, 3, 8, 8), output ``logits``."""
    (root / "tiny.py").write_text(TINY_CNN)
    return ModelSpec(name="tiny", framework="torch", entry="tiny.py:build_model", root=root,
                     inputs=("image",), outputs=("logits",), max_batch_size=max_batch_size)


def image_samples(batches: tuple[int, ...] = (1, 2), size: int = 8) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{"image": rng.standard_normal((batch, 3, size, size)).astype(np.float32)} for batch in batches]


def make_ctx(tmp: Path, model: ModelSpec, fmt: str, *, precision: str = "fp32", device: str = "cpu",
             params: Mapping[str, Any] | None = None, samples: list[dict[str, np.ndarray]] | None = None,
             input_dir: Path | None = None, name: str | None = None, **values: Any) -> BuildContext:
    """A context whose out_dir, workdir and cache_dir are fresh folders under ``tmp``; every engine
    value as the engine gives them for ``model`` (``values`` overrides them: ``max_batch_size=0``)."""
    base = tmp / (name or f"{fmt}-{precision}")
    for sub in ("out", "work", "cache"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    return BuildContext(model=model, target=f"{model.name}:{fmt}", precision=precision, device=device,
                        params=dict(params or {}), out_dir=base / "out", input_dir=input_dir,
                        samples=samples if samples is not None else image_samples(), log=lines.append,
                        workdir=base / "work", cache_dir=base / "cache",
                        engine_values={"max_batch_size": model.max_batch_size, "normalize": True,
                                       "profile_batch_sizes": [], **values})


def eager_outputs(model: ModelSpec, sample: Mapping[str, np.ndarray]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.load_entry()(*(torch.from_numpy(sample[name]) for name in model.inputs)).numpy()
