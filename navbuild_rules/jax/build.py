"""Build functions of the jax family.

``reference``: ``jax.jit(apply)(params, *inputs)`` on the CPU. ``jax-jit``: the source model as the
artifact (a recipe naming the entry file's and the parameters' digests), run by the ``jax-jit``
runner. ``savedmodel``: ``apply`` converted by jax2tf with the parameters as TensorFlow variables,
behind one serving signature (``navbuild_rules.tensorflow.build.save_serving``), written in a fresh process
for reproducible bytes; navbuild_rules/tensorflow's ``onnx`` and ``tf-trt`` then read it.

jax2tf (``jax.experimental.jax2tf``, JAX 0.7) serializes in one of two ways, the ``serialization``
parameter: ``"graph"`` (default) lowers to plain TensorFlow ops (``native_serialization=False``,
``enable_xla=False``), which tf2onnx and TF-TRT convert; JAX deprecated it in July 2024 but still
ships it. ``"native"`` embeds the function as StableHLO in one ``XlaCallModule`` op (built on
``jax.export``, JAX's maintained path): TensorFlow runs it with XLA on the platform it was built
for, but tf2onnx and TF-TRT cannot convert it.
"""
from __future__ import annotations

import json
import warnings
from typing import Any, Mapping

from navbuild.hashing import digest_file
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from navbuild_rules.jax import loader
from navbuild_rules.tensorflow.worker import run_in_child

jax = lazy_import("jax")
np = lazy_import("numpy")
tf = lazy_import("tensorflow")

SERIALIZATIONS = ("graph", "native")


def validate_savedmodel(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    if params.get("serialization", "graph") not in SERIALIZATIONS:
        return f"serialization {params.get('serialization')!r} is not one of {', '.join(SERIALIZATIONS)}"
    return None


def build_reference(ctx: BuildContext) -> dict[str, Any]:
    """``jax.jit(apply)`` on every sample, on the CPU."""
    from navbuild import tensors

    apply, params = loader.load_model(ctx.model)
    cpu = loader.device("cpu")
    jitted = jax.jit(apply)
    params = jax.device_put(params, cpu)
    results = []
    for sample in ctx.samples:
        args = [jax.device_put(sample[name], cpu) for name in loader.input_order(ctx.model, sample)]
        outputs = loader.named_outputs(ctx.model, jitted(params, *args))
        results.append({name: np.asarray(value) for name, value in outputs.items()})
    tensors.save(ctx.out_dir / loader.REFERENCE_FILE, results)
    return {"samples": len(results),
            "outputs": [{"name": name, "dtype": str(array.dtype), "shape": ctx.model.declared_shape(array.shape, name)}
                        for name, array in results[0].items()]}


def build_jit_recipe(ctx: BuildContext) -> dict[str, Any]:
    """``recipe.json``: the source model is the artifact. It names the digests of the entry file and
    of the parameters, so an edit to either makes a new artifact; the model is run once here."""
    apply, params = loader.load_model(ctx.model)
    sample = ctx.samples[0]
    jax.block_until_ready(jax.jit(apply)(params, *[sample[n] for n in loader.input_order(ctx.model, sample)]))
    recipe = {"format": loader.RECIPE_FORMAT, "entry": ctx.model.entry, "precision": ctx.precision,
              "entry_file_digest": digest_file(ctx.model.root / ctx.model.entry.rpartition(":")[0]),
              "params_digest": loader.params_digest(params)}
    (ctx.out_dir / loader.RECIPE_FILE).write_text(json.dumps(recipe, indent=2, sort_keys=True) + "\n")
    return {"jax_version": jax.__version__}


def build_savedmodel(ctx: BuildContext) -> dict[str, Any]:
    problem = validate_savedmodel(ctx.params, ctx.precision)
    if problem:
        raise ValueError(f"model {ctx.model.name}: {problem}")
    return run_in_child(ctx, "navbuild_rules.jax.build:write_savedmodel")


def write_savedmodel(ctx: BuildContext) -> dict[str, Any]:
    """(In the child process.) jax2tf over ``apply``, the parameters as non-trainable variables."""
    from jax.experimental import jax2tf

    from navbuild_rules.tensorflow.build import save_serving

    apply, params = loader.load_model(ctx.model)
    serialization = ctx.params.get("serialization", "graph")
    variables = jax.tree_util.tree_map(lambda leaf: tf.Variable(np.asarray(leaf), trainable=False), params)
    sample = ctx.samples[0]
    names = loader.input_order(ctx.model, sample)
    options: dict[str, Any] = {"native_serialization": True,
                               "native_serialization_platforms": ("cuda" if ctx.device == "cuda" else "cpu",)}
    if serialization == "graph":
        options = {"native_serialization": False, "enable_xla": False}
    with warnings.catch_warnings():  # the graph serialization's deprecation notice: chosen on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        converted = jax2tf.convert(apply, polymorphic_shapes=[None, *_shapes(ctx, sample, names)], **options)
    metadata = save_serving(ctx, lambda feed: converted(variables, *[feed[name] for name in names]),
                            {"params": variables}, exporter=f"jax2tf ({serialization} serialization)")
    return {**metadata, "serialization": serialization, "jax_version": jax.__version__}


def _shapes(ctx: BuildContext, sample: Mapping[str, Any], names: list[str]) -> list[str]:
    """jax2tf's polymorphic shape per input: ``b`` for the batch, declared dynamic axes by name."""
    shapes = []
    for name in names:
        dims = [str(size) for size in np.shape(sample[name])]
        dims[ctx.model.batch_dim] = "b"
        for axis, dim_name in ctx.model.dynamic_axes.get(name, {}).items():
            dims[int(axis)] = dim_name
        shapes.append(f"({', '.join(dims)})")
    return shapes
