"""File names of the jax family's artifacts, and how the model is loaded and called (Polygraphy's
``loader.py``).

A JAX model is a function plus its parameters: ``entry`` returns ``(apply, params)`` and the model
runs as ``apply(params, *inputs)`` (inputs in the model's input order), returning an array, a
tuple or list of arrays, or a dict of them.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec
from navbuild.runner import output_names

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


def input_order(spec: ModelSpec, feed: Mapping[str, Any]) -> list[str]:
    return list(spec.inputs) or list(feed)


def device(kind: str) -> Any:
    """The first JAX device of ``kind`` ("cpu" or "cuda")."""
    return jax.devices("gpu" if kind == "cuda" else "cpu")[0]


def named_outputs(spec: ModelSpec, result: Any) -> dict[str, Any]:
    """Outputs by name: a dict's keys (in the declared order when outputs are declared), else the
    declared names or ``output__<i>`` by position."""
    if isinstance(result, Mapping):
        keys = list(result)
        if spec.outputs:
            if sorted(keys) != sorted(spec.outputs):
                raise ValueError(f"model {spec.name} returns outputs {keys} but navbuild.toml declares "
                                 f"{list(spec.outputs)}")
            keys = list(spec.outputs)
        return {key: result[key] for key in keys}
    values = list(result) if isinstance(result, (list, tuple)) else [result]
    return dict(zip(output_names(spec, len(values)), values))


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
