"""Make torchvision importable beside the CPU build of torch (imported for its effect).

torchvision's wheels on PyPI are built against CUDA torch. With a CPU-only torch their native
operators (``nms``, ``roi_align``...) cannot load, and torchvision 0.28 then stops its own import
while registering shape functions for two of them: ``RuntimeError: operator torchvision::nms does
not exist`` (pytorch/vision#9085). transformers imports torchvision whenever it is installed, so
the same error also stops ``from transformers import BertModel``. Classification models and
transformers' encoders use none of those operators: declaring the two missing schemas lets the
import finish. Nothing is done when torchvision is absent or imports as it is.
"""
import importlib.util
import sys

import torch

_schemas = None  # the library holding the declared schemas must live as long as the process


def _import_torchvision() -> None:
    global _schemas
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _schemas is not None:
            raise
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]  # the half-finished import
        _schemas = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _schemas.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision  # noqa: F401


if importlib.util.find_spec("torchvision") is not None:
    _import_torchvision()
