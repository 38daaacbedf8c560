"""File names of the jax family's artifacts, and how the model is loaded and called (Polygraphy's
``loader.py``).

A JAX model is a function plus its parameters: ``entry`` returns ``(apply, params)`` and the model
runs as ``apply(params, *inputs)`` (inputs in the model's input order), returning an array, a
tuple or list of arrays, or a dict of them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec
from navbuild.runner import input_order, named_outputs  # noqa: F401 (the family's names)

jax = lazy_import("jax")
np = lazy_import("numpy")

FRAMEWORK = "jax"
TOOLS = ("jax", "jaxlib")
REFERENCE_FILE = "reference.tensors"
RECIPE_FILE = "recipe.json"  # jax-jit: the source model itself is the artifact
RECIPE_FORMAT = "navbuild-jax-jit/1"


def load_model(spec: ModelSpec) -> tuple[Callable[..., Any], Any]:
    """``(apply, params)`` from the entry, checked."""
    loaded = spec.load_entry()
    if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2 and callable(loaded[0])):
        raise ValueError(f"model {spec.name}: {spec.entry} must return (apply, params), a function and its "
                         f"parameters, called as apply(params, *inputs); it returned {type(loaded).__name__}")
    return loaded[0], loaded[1]


def device(kind: str) -> Any:
    """The first JAX device of ``kind`` ("cpu" or "cuda")."""
    return jax.devices("gpu" if kind == "cuda" else "cpu")[0]


def params_digest(params: Any) -> str:
    """The parameters' values, digested leaf by leaf in the tree's order."""
    from navbuild.hashing import digest_bytes, digest_value

    leaves, treedef = jax.tree_util.tree_flatten(params)
    return digest_value({"tree": str(treedef), "leaves": [
        [str(np.asarray(leaf).dtype), list(np.shape(leaf)), digest_bytes(np.ascontiguousarray(leaf).tobytes())]
        for leaf in leaves]})


def read_recipe(artifact_dir: Path) -> dict[str, Any]:
    recipe = json.loads((Path(artifact_dir) / RECIPE_FILE).read_text())
    if recipe.get("format") != RECIPE_FORMAT:
        raise ValueError(f"{RECIPE_FILE} is not a {RECIPE_FORMAT} recipe")
    return recipe
