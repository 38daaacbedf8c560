"""File names of the torch_compile family's artifacts, and how each is read back (Polygraphy's
``loader.py``). ``build.py`` writes these files, ``runner.py`` loads them; neither imports the other.

``torch-compile``: RECIPE_FILE (the compile options) and CACHE_FILE (torch's compile cache).
``aoti``: AOTI_FILE (the AOTInductor package, loaded in a worker process: ``aoti_worker``) and
AOTI_INFO_FILE (what it was compiled from).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import

torch = lazy_import("torch")

RECIPE_FILE = "recipe.json"
CACHE_FILE = "compile_cache.bin"
RECIPE_FORMAT = "navbuild-torch-compile/1"
AOTI_FILE = "model.pt2"
AOTI_INFO_FILE = "aoti.json"  # what the package was compiled from; its digest is aoti's canonical digest
AOTI_INFO_FORMAT = "navbuild-aoti/1"


class RecipeError(ValueError):
    """A recipe that is not one this loader reads."""


def read_recipe(artifact_dir: Path) -> dict[str, Any]:
    recipe = json.loads((Path(artifact_dir) / RECIPE_FILE).read_text())
    if recipe.get("format") != RECIPE_FORMAT:
        raise RecipeError(f"{RECIPE_FILE} is not a {RECIPE_FORMAT} recipe")
    return recipe


def load_compile_cache(artifact_dir: Path, recipe: dict[str, Any]) -> dict[str, int] | None:
    """Hot-load the recipe's compile cache into torch; what it held (None: no cache, or unreadable)."""
    if not recipe.get("cache"):
        return None
    info = torch.compiler.load_cache_artifacts((Path(artifact_dir) / recipe["cache"]).read_bytes())
    return None if info is None else {kind: len(keys) for kind, keys in info.artifacts.items()}


def aoti_package(artifact_dir: Path) -> Path:
    return Path(artifact_dir) / AOTI_FILE
