"""The last steps of every ONNX target, whichever family produced the graph: the target's
precision (an fp16 graph whose float inputs and outputs stay float32), debug information stripped
when ``normalize`` is on, ``model.onnx`` written and checked. The producers call it: rules/torch
(torch.onnx), rules/tensorflow (tf2onnx), rules/onnx_file (a file as the model).
"""
from __future__ import annotations

from typing import Any

from navbuild.lazy import lazy_import
from navbuild.rule import BuildContext
from rules.onnx.loader import ONNX_FILE, io_types, opset_of, save_model

onnx = lazy_import("onnx")


def write_onnx(ctx: BuildContext, proto: Any) -> dict[str, Any]:
    """``proto`` finished and written to ``ctx.out_dir``; the manifest metadata (opset, how the
    precision was applied, the graph's own I/O types, whether it was normalized)."""
    if ctx.precision == "fp16":
        from rules.onnx.fp16 import convert_to_fp16

        proto = convert_to_fp16(proto)
    normalized = ctx.normalize
    if normalized:
        from rules.onnx.normalize import strip_debug_info

        strip_debug_info(proto)
    save_model(proto, ctx.out_dir / ONNX_FILE)
    onnx.checker.check_model(str(ctx.out_dir / ONNX_FILE))
    return {"opset": opset_of(proto), "precision_mode": "graph-fp16" if ctx.precision == "fp16" else "fp32",
            "input_types": io_types(proto.graph.input), "output_types": io_types(proto.graph.output),
            "normalized": normalized}
