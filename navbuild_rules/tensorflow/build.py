"""Build functions of the tensorflow family.

``reference``: the source model's outputs, eagerly on the CPU. ``savedmodel``: the model behind one
serving signature, written in a fresh process (``worker``) so its bytes depend on the model alone.
``onnx``: the SavedModel converted by tf2onnx (also in a fresh process: its node names count),
then finished like every ONNX target (``navbuild_rules.onnx.build``). ``tf-trt``: the SavedModel converted
by TensorFlow-TensorRT, its engines built for the samples' shapes. The ``onnx`` and ``tf-trt``
rules read any SavedModel target, so they serve JAX models too (navbuild_rules/jax writes one).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from navbuild.hashing import digest_file, digest_value, tree_digest
from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext, Skip
from navbuild_rules.onnx.build import write_onnx
from navbuild_rules.tensorflow import loader
from navbuild_rules.tensorflow.worker import run_in_child

tf = lazy_import("tensorflow")

DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18  # what tf2onnx 1.16-1.17 writes
TF_TRT_PRECISIONS = ("fp32", "fp16")
TF_TRT_DEFAULTS = {"workspace": 1 << 30, "minimum_segment_size": 3}


def validate_onnx(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    opset = params.get("opset", DEFAULT_OPSET)
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        return f"opset {opset!r} is not an integer from {MIN_OPSET} to {MAX_OPSET}"
    return None


# -- reference ----------------------------------------------------------------------------------
def build_reference(ctx: BuildContext) -> dict[str, Any]:
    """The source model's outputs on every sample, computed eagerly on the CPU."""
    from navbuild import tensors

    with tf.device("/CPU:0"):
        model = ctx.model.load_entry()
        results = []
        for sample in ctx.samples:
            feed = {name: tf.constant(array) for name, array in sample.items()}
            outputs = loader.named_outputs(ctx.model, loader.call(model, ctx.model, feed))
            results.append({name: loader.to_numpy(value) for name, value in outputs.items()})
    tensors.save(ctx.out_dir / loader.REFERENCE_FILE, results)
    return {"samples": len(results),
            "outputs": [{"name": name, "dtype": str(array.dtype), "shape": ctx.model.declared_shape(array.shape, name)}
                        for name, array in results[0].items()]}


# -- savedmodel ---------------------------------------------------------------------------------
def build_savedmodel(ctx: BuildContext) -> dict[str, Any]:
    return run_in_child(ctx, "navbuild_rules.tensorflow.build:write_savedmodel")


def write_savedmodel(ctx: BuildContext) -> dict[str, Any]:
    """(In the child process.) The Keras model or ``tf.Module`` behind the serving signature."""
    model = ctx.model.load_entry()
    return save_serving(ctx, lambda feed: loader.call(model, ctx.model, feed), {"model": model},
                        exporter="tf.saved_model.save")


def save_serving(ctx: BuildContext, call: Callable[[dict[str, Any]], Any], track: Mapping[str, Any], *,
                 exporter: str) -> dict[str, Any]:
    """A SavedModel in ``ctx.out_dir`` whose signature SIGNATURE takes the model's inputs by name
    (batch and declared dynamic axes unknown) and returns its outputs by name. ``track`` holds what
    owns the variables (a Keras model, a tree of tf.Variables), so that they are saved too. The
    written model is loaded back and run once on the first sample."""
    sample = ctx.samples[0]
    names = loader.input_order(ctx.model, sample)
    module = tf.Module()
    for attribute, value in track.items():
        setattr(module, attribute, value)

    @tf.function(input_signature=loader.tensor_specs(ctx.model, sample), autograph=False)
    def serve(*args: Any) -> dict[str, Any]:
        return loader.named_outputs(ctx.model, call(dict(zip(names, args))))

    module.serve = serve
    path = loader.savedmodel_path(ctx.out_dir)
    tf.saved_model.save(module, str(path), signatures={loader.SIGNATURE: serve})
    _drop_unstable_files(path)
    _, signature = loader.load_signature(ctx.out_dir)
    outputs = signature(**{name: tf.constant(array) for name, array in sample.items()})
    return {"exporter": exporter, "signature": loader.SIGNATURE,
            "input_types": {name: spec.dtype.name for name, spec in loader.signature_inputs(signature).items()},
            "output_types": {name: value.dtype.name for name, value in outputs.items()},
            "tensorflow_version": tf.__version__}


def _drop_unstable_files(path: Path) -> None:
    for name in loader.UNSTABLE_FILES:
        (path / name).unlink(missing_ok=True)


# -- onnx ---------------------------------------------------------------------------------------
def build_onnx(ctx: BuildContext) -> dict[str, Any]:
    problem = validate_onnx(ctx.params, ctx.precision)
    if problem:
        raise ValueError(f"model {ctx.model.name}: {problem}")
    return run_in_child(ctx, "navbuild_rules.tensorflow.build:write_onnx_from_savedmodel")


def write_onnx_from_savedmodel(ctx: BuildContext) -> dict[str, Any]:
    """(In the child process.) tf2onnx over the upstream SavedModel's serving signature; the ONNX
    inputs and outputs keep the signature's names."""
    import tf2onnx
    from tf2onnx import convert, tf_loader

    path = str(loader.savedmodel_path(ctx.input_dir))
    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        path, None, None, tag="serve", signatures=[loader.SIGNATURE], return_initialized_tables=True,
        return_tensors_to_rename=True)
    if _has_op(graph_def, "XlaCallModule"):
        raise ValueError(f"model {ctx.model.name}: the SavedModel runs its computation as an XlaCallModule "
                         f"op (jax2tf's native serialization), which tf2onnx cannot convert; build the "
                         f"savedmodel with serialization = \"graph\"")
    opset = int(ctx.params.get("opset", DEFAULT_OPSET))
    with tf.device("/cpu:0"):
        proto, _ = convert._convert_common(graph_def, name=ctx.model.name, opset=opset, input_names=inputs,
                                           output_names=outputs, tensors_to_rename=renames,
                                           initialized_tables=tables)
    return {"exporter": f"tf2onnx {tf2onnx.__version__}", **write_onnx(ctx, proto)}


def _has_op(graph_def: Any, op: str) -> bool:
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    return any(node.op == op for node in nodes)


# -- tf-trt -------------------------------------------------------------------------------------
def validate_tf_trt(params: Mapping[str, Any], precision: str, values: Any = None) -> str | None:
    if precision not in TF_TRT_PRECISIONS:
        return f"tf-trt builds {', '.join(TF_TRT_PRECISIONS)}, not {precision}"
    for name in TF_TRT_DEFAULTS:
        value = params.get(name, TF_TRT_DEFAULTS[name])
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} {value!r} is not a positive integer"
    return None


def build_tf_trt(ctx: BuildContext) -> dict[str, Any]:
    """The upstream SavedModel with its subgraphs converted to TensorRT engines (dynamic shapes, one
    profile from the samples' shapes), saved with the engines built on this GPU."""
    problem = validate_tf_trt(ctx.params, ctx.precision)
    if problem:
        raise ValueError(f"{ctx.target}: {problem}")
    from tensorflow.python.compiler.tensorrt import trt_convert

    if not tf.config.list_physical_devices("GPU"):
        raise Skip("this TensorFlow sees no GPU (tensorflow-cpu, or no CUDA libraries)")
    params = {name: int(ctx.params.get(name, default)) for name, default in TF_TRT_DEFAULTS.items()}
    source = loader.savedmodel_path(ctx.input_dir)
    try:
        converter = trt_convert.TrtGraphConverterV2(
            input_saved_model_dir=str(source), input_saved_model_signature_key=loader.SIGNATURE,
            precision_mode=ctx.precision.upper(), use_dynamic_shape=True,
            dynamic_shape_profile_strategy="Optimal", max_workspace_size_bytes=params["workspace"],
            minimum_segment_size=params["minimum_segment_size"])
    except RuntimeError as exc:  # "Tensorflow has not been built with TensorRT support."
        if "TensorRT" in str(exc):
            raise Skip(f"this TensorFlow cannot run TF-TRT: {exc}") from None
        raise
    converter.convert()
    converter.build(input_fn=lambda: iter([{name: tf.constant(array) for name, array in sample.items()}
                                           for sample in ctx.samples]))
    path = loader.savedmodel_path(ctx.out_dir)
    converter.save(str(path))
    _drop_unstable_files(path)
    source_files = {p.relative_to(source).as_posix(): digest_file(p) for p in sorted(source.rglob("*")) if p.is_file()}
    info = {"format": "navbuild-tf-trt/1", "source_digest": tree_digest(source_files), "precision": ctx.precision,
            **params, "tensorflow_version": tf.__version__,
            "shapes": sorted({json.dumps({n: list(a.shape) for n, a in s.items()}, sort_keys=True)
                              for s in ctx.samples})}
    (ctx.out_dir / loader.BUILD_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return {"precision_mode": ctx.precision.upper(), **params, "tensorflow_version": tf.__version__}


def tf_trt_digest(out_dir: Path) -> str:
    """tf-trt's canonical digest: ``build.json`` (the engines' bytes differ from build to build)."""
    return digest_value(json.loads((Path(out_dir) / loader.BUILD_INFO).read_text()))


__all__ = ["build_reference", "build_savedmodel", "build_onnx", "build_tf_trt", "save_serving", "tf_trt_digest",
           "validate_onnx", "validate_tf_trt"]
