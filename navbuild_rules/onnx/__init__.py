"""The ONNX format, whichever family produced the graph: how an ONNX target is finished
(``build.py``: precision, normalization, written and checked), its files and how they load
(``loader.py``, with Triton's ONNX Runtime mapping), the ONNX Runtime runner (``runner.py``) and
the scan that reads a file arriving from a package before it is loaded (``scan.py``).

It declares no rule: each producer declares its own ``onnx`` rule and finishes it here (navbuild_rules/torch
exports torch models, navbuild_rules/tensorflow converts SavedModels with tf2onnx, navbuild_rules/onnx_file takes a
file), and the converters that read ONNX (navbuild_rules/tensorrt, ``onnx-slim``) read any of them.
Importing this module imports no framework: onnx and onnxruntime are imported lazily.
"""
from __future__ import annotations

from navbuild_rules.onnx import runner

RULES: list = []
RUNNERS = [runner.OnnxRuntimeRunner]
