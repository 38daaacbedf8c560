"""File names of the torch family's artifacts, and how each is loaded (Polygraphy's ``loader.py``).

``build.py`` writes these files and loads them back once to check them; ``runner.py`` loads them
to run. Neither imports the other.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import repeat_file_name

torch = lazy_import("torch")

TORCHSCRIPT_FILE = "model.pt"
EXPORT_FILE = "model.pt2"
RECIPE_FILE = "recipe.json"
REFERENCE_FILE = "reference.tensors"
REFERENCE_REPEAT_FILE = repeat_file_name(REFERENCE_FILE)  # a second run of the source, when it differed
RUNTIME_FILE = "runtime.json"  # beside an export built channels-last: how its runner feeds it (memory_format)


def load_torchscript(path: Path, device: str) -> Any:
    with warnings.catch_warnings():  # "torch.jit.load is deprecated": TorchScript is the format asked for
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 says FutureWarning
        return torch.jit.load(str(path), map_location=device).eval()


def load_exported(path: Path, device: str) -> Any:
    """The program's module; it was exported on its target device, so ``to`` only confirms it.
    Loaded by ``safe_pt2``: an archive may come from a package, and torch.export.load unpickles."""
    from navbuild_rules.torch.safe_pt2 import load_program

    return load_program(path).module().to(device)
