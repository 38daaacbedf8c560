"""File names of the torch_tensorrt family's artifacts, and how each is loaded (Polygraphy's
``loader.py``). ``build.py`` writes OUTPUT_FILE and BUILD_INFO from the upstream torch-export
program; ``runner.py`` loads OUTPUT_FILE with ``load_program``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import Skip
from navbuild_rules.torch.loader import EXPORT_FILE

torch = lazy_import("torch")

INPUT_FILE = EXPORT_FILE  # the upstream torch-export program
OUTPUT_FILE = "model.ep"
BUILD_INFO = "build.json"


def import_torch_tensorrt() -> Any:
    """The torch_tensorrt module; Skip with the reason when this machine cannot import it."""
    try:
        import torch_tensorrt
    except ModuleNotFoundError as exc:
        if exc.name in ("torch_tensorrt", "tensorrt"):
            raise Skip(f"{exc.name} is not installed") from None
        raise Skip(f"torch_tensorrt cannot be imported: {exc}") from None
    except ImportError as exc:
        raise Skip(f"torch_tensorrt cannot be imported: {exc}") from None
    return torch_tensorrt


def load_program(artifact_dir: Path) -> Any:
    """The saved program's module. torch_tensorrt is imported first: its TensorRT engine ops must be
    registered before torch.export can load a program that calls them (in a fresh process too)."""
    import_torch_tensorrt()
    return torch.export.load(str(Path(artifact_dir) / OUTPUT_FILE)).module()
