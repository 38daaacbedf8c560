"""The last steps of every ONNX target, whichever family produced the graph: the target's
precision (an fp16 graph whose float inputs and outputs stay float32, converted by onnxconverter-
common: ``fp16.py``), debug information stripped when ``normalize`` is on, ``model.onnx`` written
and checked. The producers call it: navbuild_rules/torch (torch.onnx), navbuild_rules/tensorflow (tf2onnx),
navbuild_rules/onnx_file (a file as the model).

``tf32`` writes the fp32 graph: TensorFloat-32 is how ONNX Runtime's CUDA provider runs it
(``runner.py``), not something in the file.
"""
from __future__ import annotations

import importlib.util
from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext, Skip
from navbuild_rules.onnx.loader import ONNX_FILE, io_types, opset_of, save_model

onnx = lazy_import("onnx")

CONVERTER = "onnxconverter_common"  # the onnx extra's onnxconverter-common
PRECISIONS = ("fp32", "fp16", "tf32")  # what every ONNX target builds
TOOLS = ("onnx", "onnxconverter-common")  # distributions whose version changes the bytes written here
PRECISION_MODES = {"fp16": "graph-fp16", "tf32": "fp32 graph, TF32 math on the CUDA provider"}


def write_onnx(ctx: BuildContext, proto: Any) -> dict[str, Any]:
    """``proto`` finished and written to ``ctx.out_dir``; the manifest metadata (opset, how the
    precision was applied, the graph's own I/O types, whether it was normalized)."""
    if ctx.precision == "fp16":
        proto = _to_fp16(ctx, proto)
    normalized = ctx.normalize
    if normalized:
        from navbuild_rules.onnx.normalize import strip_debug_info

        strip_debug_info(proto)
    save_model(proto, ctx.out_dir / ONNX_FILE)
    onnx.checker.check_model(str(ctx.out_dir / ONNX_FILE))
    return {"opset": opset_of(proto), "precision_mode": PRECISION_MODES.get(ctx.precision, "fp32"),
            "input_types": io_types(proto.graph.input), "output_types": io_types(proto.graph.output),
            "normalized": normalized}


def _to_fp16(ctx: BuildContext, proto: Any) -> Any:
    """The float16 graph, loaded once by ONNX Runtime; Skip when float16 does not apply to the model
    or the converter is missing, a failure naming the cause when it cannot be converted."""
    if importlib.util.find_spec(CONVERTER) is None:
        raise Skip("onnxconverter-common is not installed (the onnx extra: pip install 'navbuild[onnx]'); "
                   "it converts ONNX graphs to float16")
    from navbuild_rules.onnx.fp16 import NothingToConvert, check_loads, convert_to_fp16

    try:
        converted = convert_to_fp16(proto)
    except NothingToConvert as exc:
        raise Skip(f"model {ctx.model.name}: {exc}") from None
    except Exception as exc:
        raise RuntimeError(f"model {ctx.model.name}: onnxconverter-common cannot convert the graph to float16: "
                           f"{type(exc).__name__}: {exc}") from exc
    try:
        check_loads(converted)
    except RuntimeError as exc:
        raise RuntimeError(f"model {ctx.model.name}: {exc}") from exc
    ctx.log(f"fp16: converted by onnxconverter-common; float32 kept for {', '.join(_blocked_in(converted))}")
    return converted


def _blocked_in(proto: Any) -> list[str]:
    from navbuild_rules.onnx.fp16 import blocked_ops

    present = {node.op_type for node in proto.graph.node}
    return [op for op in blocked_ops(proto) if op in present] or ["no operator"]
