"""Build functions of the onnx_file family: the reference (the file itself on ONNX Runtime's CPU
provider), ``onnx`` (the file checked, at fp32 or converted to fp16) and ``onnx-slim`` (simplified
with onnxslim: constants folded, identities and dead nodes removed)."""
from __future__ import annotations

from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from rules.onnx.build import write_onnx
from rules.onnx_file import loader

np = lazy_import("numpy")
onnx = lazy_import("onnx")
onnxslim = lazy_import("onnxslim")

# ONNX Runtime input type -> numpy type, for the casts a float16 graph needs
ORT_FLOAT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def build_reference(ctx: BuildContext) -> dict[str, Any]:
    """The source file's outputs on every sample, named as the graph names them."""
    from navbuild import tensors

    session = loader.source_session(ctx.model)
    inputs = {value.name: value for value in session.get_inputs()}
    outputs = [value.name for value in session.get_outputs()]
    _check_names(ctx, "inputs", list(inputs), list(ctx.samples[0]))
    _check_names(ctx, "outputs", outputs, list(ctx.model.outputs) or outputs)
    results = []
    for sample in ctx.samples:
        feed = {name: _cast(array, inputs[name].type) for name, array in sample.items()}
        results.append(dict(zip(outputs, session.run(outputs, feed))))
    tensors.save(ctx.out_dir / loader.REFERENCE_FILE, results)
    first = results[0]
    return {"samples": len(results),
            "outputs": [{"name": name, "dtype": str(array.dtype), "shape": [-1, *array.shape[1:]]}
                        for name, array in first.items()]}


def build_onnx(ctx: BuildContext) -> dict[str, Any]:
    """The source file, checked with the ONNX checker (full check: shapes and types inferred),
    its inputs against the samples, then written at the target's precision."""
    proto = loader.load_source(ctx.model)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ValueError(f"model {ctx.model.name}: {ctx.model.entry} fails the ONNX checker: {exc}") from exc
    _check_names(ctx, "inputs", loader.graph_inputs(proto), list(ctx.samples[0]))
    _check_dynamic_axes(ctx, proto)
    return {"source": ctx.model.entry, "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
            **write_onnx(ctx, proto)}


def build_slim(ctx: BuildContext) -> dict[str, Any]:
    """The upstream ONNX model simplified by onnxslim."""
    proto = loader.load_model(ctx.input_path(loader.ONNX_FILE))
    before = len(proto.graph.node)
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


def _check_names(ctx: BuildContext, what: str, graph: list[str], given: list[str]) -> None:
    if sorted(graph) != sorted(given):
        source = "navbuild.toml declares" if what == "outputs" else "the samples have"
        raise ValueError(f"model {ctx.model.name}: the ONNX file's {what} are {graph}, but {source} {given}")


def _cast(array: Any, ort_type: str) -> Any:
    """Float samples to the graph's float type (an fp16 file takes float16); other types as they are."""
    wanted = ORT_FLOAT_TYPES.get(ort_type)
    array = np.asarray(array)
    return array.astype(wanted, copy=False) if wanted and array.dtype.kind == "f" else array
