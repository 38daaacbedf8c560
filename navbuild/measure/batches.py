"""Batches made from one sample: tiled or sliced along the batch dimension to each batch size.
Tensors of any library (numpy, torch, jax, tf) are handled by duck typing; none is imported here.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import numpy as np


def tile_array(array: np.ndarray, batch_size: int, batch_dim: int = 0) -> np.ndarray:
    """``array`` with ``batch_size`` entries along ``batch_dim``: sliced, or tiled by repetition."""
    import numpy as np
    array = np.asarray(array)
    if array.ndim == 0:
        return array
    have = array.shape[batch_dim]
    if have == batch_size:
        return array
    if have > batch_size:
        index = [slice(None)] * array.ndim
        index[batch_dim] = slice(0, batch_size)
        return np.ascontiguousarray(array[tuple(index)])
    return np.take(array, np.arange(batch_size) % have, axis=batch_dim)


def _is_tensor(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    return shape is not None and hasattr(value, "__getitem__") and len(tuple(shape)) > 0


def tile_value(value: Any, batch_size: int) -> Any:
    """Any tensor (numpy, torch, jax, tf) or nest of them (tuple, list, dict), tiled along dim 0.

    Non-tensor leaves pass through unchanged. Indexing with a numpy index array works on numpy,
    torch and jax tensors; TensorFlow's tensors go through ``tf.gather``.
    """
    import numpy as np
    if isinstance(value, Mapping):
        return {k: tile_value(v, batch_size) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(tile_value(v, batch_size) for v in value)
    if not _is_tensor(value):
        return value
    have = int(value.shape[0])
    if have == batch_size:
        return value
    if have > batch_size:
        return value[:batch_size]
    index = np.arange(batch_size) % have
    try:
        return value[index]
    except (TypeError, ValueError, IndexError):
        tf = sys.modules.get("tensorflow")
        if tf is None:
            raise
        return tf.gather(value, index)


def leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from leaves(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from leaves(v)
    elif _is_tensor(value):
        yield value
