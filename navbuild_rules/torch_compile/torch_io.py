"""Samples in, outputs out, at a precision: shared by the torch-compile, aoti and torch-trt code.

The conversions themselves are navbuild_rules.torch.model_io's; this adds the precision-driven casts.

A model takes the sample's arrays positionally, in the order of the model's declared inputs (or
the sample's own order). Precision is applied by casting: the weights and the floating-point
inputs go to the precision's dtype, integer inputs (token ids) stay as they are, and outputs come
back as float32 numpy arrays. torch is imported on first use (``navbuild.lazy``).
"""
from __future__ import annotations

from typing import Any, Mapping


from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec
from navbuild_rules.torch import model_io
from navbuild_rules.torch.model_io import flatten, input_order, named_outputs, to_numpy, torch_dtype  # noqa: F401 (re-exported)
from navbuild_rules.torch.plain_io import exportable, runnable  # noqa: F401 (re-exported)

np = lazy_import("numpy")


def to_tensors(model: ModelSpec, sample: Mapping[str, np.ndarray], device: str, precision: str) -> tuple[Any, ...]:
    """The sample as positional tensors on ``device``, float inputs cast to the precision's dtype."""
    return model_io.to_tensors(model, sample, device, torch_dtype(precision))


def prepare_model(model: Any, device: str, precision: str) -> Any:
    """The live model in eval mode on ``device``, weights cast to the precision's dtype."""
    return model_io.prepare_model(model, device, torch_dtype(precision))


def mark_dynamic(tensors: tuple[Any, ...], names: list[str], axes: Mapping[str, Mapping[str, Any]]) -> tuple[Any, ...]:
    """Mark the dynamic axes of ``tensors`` (in ``names`` order) for torch.compile, within their
    bounds (``options.axes_plan``); a size of 1 is left unmarked (torch specializes it)."""
    import torch._dynamo

    for name, tensor in zip(names, tensors):
        for axis, bound in axes.get(name, {}).items():
            if tensor.shape[int(axis)] > 1:
                torch._dynamo.mark_dynamic(tensor, int(axis), min=bound["min"], max=bound["max"])
    return tensors


def batch_of(sample: Mapping[str, np.ndarray], axis: int) -> int:
    return int(next(iter(sample.values())).shape[axis])


# torch.export specialises a batch of 1 into a constant: export with a batch of 2 where it is dynamic
export_sample = model_io.example_batch
