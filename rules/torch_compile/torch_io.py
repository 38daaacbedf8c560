"""Samples in, outputs out, at a precision: shared by the torch-compile, aoti and torch-trt code.

A model takes the sample's arrays positionally, in the order of the model's declared inputs (or
the sample's own order). Precision is applied by casting: the weights and the floating-point
inputs go to the precision's dtype, integer inputs (token ids) stay as they are, and outputs come
back as float32 numpy arrays. torch is imported inside the functions.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the no-op path must not pay for numpy
    import numpy as np

from navbuild.rule import ModelSpec
from navbuild.runner import output_names

DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(precision: str) -> Any:
    import torch

    try:
        return getattr(torch, DTYPE_NAMES[precision])
    except KeyError:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(DTYPE_NAMES)}") from None


def input_order(model: ModelSpec, sample: Mapping[str, Any]) -> list[str]:
    return list(model.inputs) if model.inputs else list(sample)


def to_tensors(model: ModelSpec, sample: Mapping[str, np.ndarray], device: str, precision: str) -> tuple[Any, ...]:
    """The sample as positional tensors on ``device``, float inputs cast to the precision's dtype."""
    import numpy as np
    import torch

    dtype = torch_dtype(precision)
    tensors = []
    for name in input_order(model, sample):
        tensor = torch.from_numpy(np.ascontiguousarray(sample[name])).to(device)
        if tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors.append(tensor)
    return tuple(tensors)


def prepare_model(model: Any, device: str, precision: str) -> Any:
    """The live model in eval mode on ``device``, weights cast to the precision's dtype."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the model entry returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval().to(device=device, dtype=torch_dtype(precision))


def flatten(outputs: Any) -> list[Any]:
    """A model's return value as a flat list of tensors (tuples, lists and dicts in their order)."""
    if isinstance(outputs, Mapping):
        return [leaf for value in outputs.values() for leaf in flatten(value)]
    if isinstance(outputs, (tuple, list)):
        return [leaf for value in outputs for leaf in flatten(value)]
    return [outputs]


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor on the host as numpy; reduced-precision floats come back as float32."""
    import torch

    tensor = tensor.detach()
    if tensor.is_floating_point() and tensor.dtype != torch.float64:
        tensor = tensor.float()
    return tensor.cpu().numpy()


def named_outputs(model: ModelSpec, outputs: Any) -> dict[str, np.ndarray]:
    leaves = flatten(outputs)
    return dict(zip(output_names(model, len(leaves)), (to_numpy(leaf) for leaf in leaves)))


def batch_of(sample: Mapping[str, np.ndarray], axis: int) -> int:
    return int(next(iter(sample.values())).shape[axis])


def export_sample(model: ModelSpec, samples: Sequence[Mapping[str, np.ndarray]],
                  max_batch_size: int) -> dict[str, np.ndarray]:
    """A sample to export with: batch >= 2 where the batch is dynamic.

    torch.export specialises a dimension of size 1 into a constant, so a batch of 1 cannot stand
    for a dynamic batch. The first sample with 2 <= batch <= max_batch_size, else the first sample
    tiled to a batch of 2 (when max_batch_size allows a dynamic batch at all).
    """
    import numpy as np
    if not samples:
        raise ValueError(f"model {model.name}: no samples to export with")
    axis = model.batch_dim
    if max_batch_size < 2:
        return dict(samples[0])
    for sample in samples:
        if 2 <= batch_of(sample, axis) <= max_batch_size:
            return dict(sample)
    return {name: np.take(np.concatenate([array, array], axis=axis), [0, 1], axis=axis)
            for name, array in samples[0].items()}
