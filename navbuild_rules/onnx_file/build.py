"""Build functions of the onnx_file family: the reference (the file itself on ONNX Runtime's CPU
provider), ``onnx`` (the file checked, at fp32 or converted to fp16) and ``onnx-slim`` (simplified
with onnxslim: constants folded, identities and dead nodes removed).

Files as people have them: a ZipMap output (skl2onnx's classifiers) is read as its probabilities
tensor (``zipmap.py``); initializers that an old file also lists as graph inputs are taken out of
the inputs before onnxslim, which would otherwise write a graph the ONNX checker refuses; inputs of
any numeric type (float64, int32...) are fed as the samples hold them."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from navbuild_rules.onnx.build import write_onnx
from navbuild_rules.onnx.loader import drop_initializer_inputs, opset_of
from navbuild_rules.onnx_file import loader, zipmap

np = lazy_import("numpy")
onnx = lazy_import("onnx")
onnxslim = lazy_import("onnxslim")

ORT_MIN_OPSET = 7  # ONNX Runtime promises to run files of this opset and newer
# ONNX Runtime input type -> numpy type, for the casts a float16 graph needs
ORT_FLOAT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def build_reference(ctx: BuildContext) -> dict[str, Any]:
    """The source file's outputs on every sample, named as the graph names them; a ZipMap's maps
    as the probabilities tensor."""
    from navbuild import tensors

    proto = loader.load_source(ctx.model)
    zipmap.refuse_other_kinds(ctx.model.name, proto)
    labels = {name: found[1] for name, found in zipmap.zipmaps(proto).items()}
    with _old_opset_hint(ctx, proto):
        session = loader.source_session(ctx.model)
    inputs = {value.name: value for value in session.get_inputs()}
    outputs = [value.name for value in session.get_outputs()]
    _check_names(ctx, "inputs", list(inputs), list(ctx.samples[0]))
    _check_names(ctx, "outputs", outputs, list(ctx.model.outputs) or outputs)
    results = []
    for sample in ctx.samples:
        feed = {name: _cast(array, inputs[name].type) for name, array in sample.items()}
        with _old_opset_hint(ctx, proto):
            values = session.run(outputs, feed)
        results.append({name: zipmap.dense(value, labels[name]) if name in labels else value
                        for name, value in zip(outputs, values)})
    tensors.save(ctx.out_dir / loader.REFERENCE_FILE, results)
    first = results[0]
    return {"samples": len(results), **({"zipmap_outputs": sorted(labels)} if labels else {}),
            "outputs": [{"name": name, "dtype": str(array.dtype), "shape": ctx.model.declared_shape(array.shape, name)}
                        for name, array in first.items()]}


def build_onnx(ctx: BuildContext) -> dict[str, Any]:
    """The source file, checked with the ONNX checker (full check: shapes and types inferred),
    its inputs against the samples, its ZipMaps read as tensors, then written at the target's
    precision."""
    proto = loader.load_source(ctx.model)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ValueError(f"model {ctx.model.name}: {ctx.model.entry} fails the ONNX checker: {exc}") from exc
    _check_names(ctx, "inputs", loader.graph_inputs(proto), list(ctx.samples[0]))
    _check_dynamic_axes(ctx, proto)
    zipmap.refuse_other_kinds(ctx.model.name, proto)
    dense = zipmap.without_zipmaps(proto)
    if dense:
        ctx.log(f"onnx: ZipMap removed before {', '.join(dense)}: the output is the probabilities tensor "
                f"(as skl2onnx writes with zipmap=False)")
    return {"source": ctx.model.entry, "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            **({"zipmap_removed": dense} if dense else {}), **write_onnx(ctx, proto)}


def build_slim(ctx: BuildContext) -> dict[str, Any]:
    """The upstream ONNX model simplified by onnxslim."""
    proto = loader.load_model(ctx.input_path(loader.ONNX_FILE))
    before = len(proto.graph.node)
    if drop_initializer_inputs(proto):
        ctx.log("onnx-slim: initializers listed as graph inputs taken out of the inputs (IR version "
                f"{proto.ir_version}), as onnxslim folds them as constants")
    slim = onnxslim.slim(proto)
    if slim is None:
        raise RuntimeError(f"model {ctx.model.name}: onnxslim returned no model")
    ctx.log(f"onnx-slim: {before} nodes -> {len(slim.graph.node)}")
    return {"onnxslim_version": getattr(onnxslim, "__version__", None), "nodes_before": before,
            "nodes_after": len(slim.graph.node), **write_onnx(ctx, slim)}


def _check_dynamic_axes(ctx: BuildContext, proto: Any) -> None:
    """A declared dynamic axis must be symbolic in the file: a fixed size there serves that size only."""
    dims = {value.name: list(value.type.tensor_type.shape.dim) for value in proto.graph.input}
    for name, axes in ctx.model.dynamic_axes.items():
        for axis, label in axes.items():
            dim = dims.get(name, [])[axis] if axis < len(dims.get(name, [])) else None
            if dim is not None and dim.HasField("dim_value"):
                raise ValueError(f"model {ctx.model.name}: input {name} has a fixed size {dim.dim_value} on axis "
                                 f"{axis} in {ctx.model.entry}, which dynamic_axes declares dynamic ({label}); export "
                                 f"the file with that axis dynamic, or leave it out of dynamic_axes")


@contextlib.contextmanager
def _old_opset_hint(ctx: BuildContext, proto: Any) -> Iterator[None]:
    """ONNX Runtime's failure on a file older than opset 7, which it no longer promises to run, with
    the way out: onnx's own version converter."""
    try:
        yield
    except Exception as exc:
        opset = opset_of(proto)
        if opset >= ORT_MIN_OPSET:
            raise
        raise RuntimeError(f"model {ctx.model.name}: ONNX Runtime cannot run {ctx.model.entry} ({type(exc).__name__}: "
                           f"{exc}); the file is opset {opset}, and ONNX Runtime runs opset {ORT_MIN_OPSET} and newer: "
                           f"upgrade it with onnx.version_converter.convert_version(model, 13)") from exc


def _check_names(ctx: BuildContext, what: str, graph: list[str], given: list[str]) -> None:
    if sorted(graph) != sorted(given):
        source = "navbuild.toml declares" if what == "outputs" else "the samples have"
        raise ValueError(f"model {ctx.model.name}: the ONNX file's {what} are {graph}, but {source} {given}")


def _cast(array: Any, ort_type: str) -> Any:
    """Float samples to the graph's float type (an fp16 file takes float16); other types as they are."""
    wanted = ORT_FLOAT_TYPES.get(ort_type)
    array = np.asarray(array)
    return array.astype(wanted, copy=False) if wanted and array.dtype.kind == "f" else array
