"""File names of the torch_compile family's artifacts, and how each is read back (Polygraphy's
``loader.py``). ``build.py`` writes these files, ``runner.py`` loads them; neither imports the other.

``torch-compile``: RECIPE_FILE (the compile options and batch buckets) and CACHE_FILE (torch's
compile cache).
``aoti``: one AOTInductor package per batch bucket (``bucket_file``: AOTI_BUCKET_FILES), or AOTI_FILE
with a dynamic batch, loaded in a worker process (``aoti_worker``), and AOTI_INFO_FILE (what they were
compiled from, and which packages there are).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import
from navbuild_rules.torch import memory_format

torch = lazy_import("torch")

RECIPE_FILE = "recipe.json"
CACHE_FILE = "compile_cache.bin"
RECIPE_FORMAT = "navbuild-torch-compile/2"
AOTI_FILE = "model.pt2"  # the package with a dynamic batch
AOTI_BUCKET_FILES = "model-b*.pt2"  # one package per batch bucket (bucket_file)
AOTI_INFO_FILE = "aoti.json"  # what the packages were compiled from; its digest is aoti's canonical digest
AOTI_INFO_FORMAT = "navbuild-aoti/2"


class RecipeError(ValueError):
    """A recipe (or an ``aoti.json``) that is not one this loader reads."""


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


def bucket_file(bucket: int) -> str:
    """The package compiled for batches of exactly ``bucket``: ``model-b<N>.pt2``."""
    return f"model-b{bucket}.pt2"


def read_aoti_info(artifact_dir: Path) -> dict[str, Any]:
    info = json.loads((Path(artifact_dir) / AOTI_INFO_FILE).read_text())
    if info.get("format") != AOTI_INFO_FORMAT:
        raise RecipeError(f"{AOTI_INFO_FILE} is not a {AOTI_INFO_FORMAT} description")
    return info


def aoti_packages(artifact_dir: Path, info: dict[str, Any]) -> dict[str, Path]:
    """The packages that ``aoti.json`` lists, by the worker's key: a bucket's batch size ("8"), or
    "dynamic" for the one package with a dynamic batch."""
    plan = info["batching"]
    if plan["mode"] == "dynamic":
        return {"dynamic": Path(artifact_dir) / AOTI_FILE}
    return {str(bucket): Path(artifact_dir) / bucket_file(bucket) for bucket in plan["buckets"]}


def load_request(artifact_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """The worker's ``load`` request for the packages that ``aoti.json`` lists."""
    packages = {key: str(path) for key, path in aoti_packages(artifact_dir, info).items()}
    return {"op": "load", "packages": packages, "device": info["device"], "precision": info["precision"],
            "channels_last": info.get("memory_format") == memory_format.CHANNELS_LAST}
