"""The ``channels_last`` option of the torch-family targets, and cuDNN's autotuner for CUDA runners.

With ``channels_last = true`` the model is converted with ``model.to(memory_format=torch.channels_last)``
(its 4-D weights: convolutions) before it is exported or compiled, and its 4-D floating-point inputs
are made channels-last before each call. Convolutions then run NHWC kernels, cuDNN's fastest for
fp16 and bf16 on tensor cores, and keep that layout from layer to layer. Inputs of another rank
(token ids, sequences) are left alone, so the option does nothing to a model without images.

An export records the option in ``runtime.json`` (``loader.RUNTIME_FILE``) beside the exported file (no file: contiguous), so
that its runner converts the inputs the same way; a recipe carries it in its own ``recipe.json``.
CUDA runners turn ``torch.backends.cudnn.benchmark`` on (cuDNN times its algorithms once per input
shape and keeps the fastest); builds record that in their metadata. torch is imported on first use.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from navbuild.lazy import lazy_import
from navbuild_rules.torch.loader import RUNTIME_FILE

torch = lazy_import("torch")

OPTION = "channels_last"
CHANNELS_LAST = "channels_last"
CONTIGUOUS = "contiguous"
VARIANTS = {OPTION: {False: "", True: "cl"}}  # Rule.variants: channels_last = "search" builds both


def check(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: channels_last must be true or false, not {value!r}")
    return value


def validate(params: Any, precision: str, values: Any = None) -> str | None:
    """Config-time check of the option (``Rule.validate``)."""
    try:
        check(dict(params).get(OPTION, False), "channels_last")
    except ValueError as exc:
        return str(exc)
    return None


def enabled(params: Any, where: str) -> bool:
    return check(dict(params).get(OPTION, False), where)


def name(channels_last: bool) -> str:
    return CHANNELS_LAST if channels_last else CONTIGUOUS


def model(module: Any, channels_last: bool) -> Any:
    return module.to(memory_format=torch.channels_last) if channels_last else module


def inputs(tensors: Iterable[Any], channels_last: bool) -> tuple[Any, ...]:
    """4-D floating-point tensors made channels-last; everything else as it is."""
    if not channels_last:
        return tuple(tensors)
    return tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.is_floating_point() else t
                 for t in tensors)


def write_runtime(out_dir: Path, channels_last: bool) -> None:
    """``runtime.json`` for an export built channels-last (nothing is written otherwise)."""
    if channels_last:
        (Path(out_dir) / RUNTIME_FILE).write_text(json.dumps({"memory_format": CHANNELS_LAST}, indent=2) + "\n")


def read_runtime(artifact_dir: Path | None) -> bool:
    """Whether the export in ``artifact_dir`` was built channels-last."""
    path = Path(artifact_dir) / RUNTIME_FILE if artifact_dir is not None else None
    if path is None or not path.is_file():
        return False
    return json.loads(path.read_text()).get("memory_format") == CHANNELS_LAST


def use_cudnn_benchmark(device: str) -> bool:
    """cuDNN's autotuner on for a CUDA device (a process-wide switch); whether it is on."""
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
        return True
    return False
