"""Samples in, outputs out: what every torch rule and runner does the same way.

Samples are dicts input-name -> numpy array. A model takes them positionally, in the order of the
model's declared inputs (or the sample's own order when none are declared), and may return a
tensor, a tuple/list (nested too) or a dict; outputs are flattened in that order and named with
``navbuild.runner.output_names``. torch and numpy are imported on first use (``navbuild.lazy``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from navbuild.lazy import lazy_import
from navbuild.rule import ModelSpec
from navbuild.runner import output_names

np = lazy_import("numpy")
torch = lazy_import("torch")


DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def torch_dtype(precision: str) -> Any:
    try:
        return getattr(torch, DTYPES[precision])
    except KeyError:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(DTYPES)}") from None


def input_order(model: ModelSpec, sample: Mapping[str, Any]) -> list[str]:
    return list(model.inputs) if model.inputs else list(sample)


def to_tensors(model: ModelSpec, sample: Mapping[str, np.ndarray], device: str = "cpu",
               float_dtype: Any = None) -> tuple[Any, ...]:
    """The sample as positional tensors on ``device``; float inputs cast to ``float_dtype`` if given."""
    tensors = []
    for name in input_order(model, sample):
        tensor = torch.from_numpy(np.ascontiguousarray(sample[name])).to(device)
        if float_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(float_dtype)
        tensors.append(tensor)
    return tuple(tensors)


def flatten(outputs: Any) -> list[Any]:
    """A model's return value as a flat list of tensors (tuples, lists and dicts in their order)."""
    if isinstance(outputs, Mapping):
        return [leaf for value in outputs.values() for leaf in flatten(value)]
    if isinstance(outputs, (tuple, list)):
        return [leaf for value in outputs for leaf in flatten(value)]
    return [outputs]


def to_numpy(tensor: Any) -> np.ndarray:
    """A tensor as a numpy array on the host; reduced-precision floats come back as float32."""
    tensor = tensor.detach()
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def named_outputs(model: ModelSpec, outputs: Any) -> dict[str, np.ndarray]:
    leaves = flatten(outputs)
    return dict(zip(output_names(model, len(leaves)), (to_numpy(leaf) for leaf in leaves)))


def example_batch(model: ModelSpec, samples: Sequence[Mapping[str, np.ndarray]],
                  max_batch_size: int) -> dict[str, np.ndarray]:
    """A sample to trace or export with: batch 2 where the batch is dynamic.

    Exporters specialise a batch of 1 into a constant (torch.export's 0/1 specialisation; the
    TorchScript tracer can bake it into reshapes), so a batch-1 sample is tiled to 2. Deterministic:
    the first sample with batch >= 2, else the first sample tiled.
    """
    if not samples:
        raise ValueError(f"model {model.name}: no samples to export with")
    axis = model.batch_dim
    if max_batch_size < 2:
        return dict(samples[0])
    for sample in samples:
        batch = next(iter(sample.values())).shape[axis]
        if 2 <= batch <= max_batch_size:
            return dict(sample)
    return {name: np.concatenate([array, array], axis=axis)[_first(2, axis, array.ndim)]
            for name, array in samples[0].items()}


def prepare_model(model: Any, device: str, dtype: Any = None) -> Any:
    """The live model in eval mode on ``device``, weights cast to ``dtype`` if given."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the model entry returned {type(model).__name__}, not a torch.nn.Module")
    model = model.eval().to(device)
    return model.to(dtype) if dtype is not None else model


def _first(count: int, axis: int, ndim: int) -> tuple[slice, ...]:
    return tuple(slice(0, count) if dim == axis else slice(None) for dim in range(ndim))
