"""Deterministic (de)serialization of sample inputs and outputs.

A file holds a list of samples, each a dict name -> numpy array, encoded as msgpack with dtype,
shape and raw bytes. Unlike ``np.savez`` (a zip with wall-clock timestamps) the same arrays always
give the same bytes, so sample digests are stable across machines.

Beside the files, the two conversions between libraries: ``to_numpy`` (a host array, the
interchange where a file or a process boundary is crossed) and ``to_torch`` (on the tensor's own
device, no copy).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import msgpack
import numpy as np

from navbuild.lazy import lazy_import

torch = lazy_import("torch")

FORMAT = "navbuild-tensors/1"


def to_numpy(value: Any) -> np.ndarray:
    """A framework tensor or array-like as a numpy array (duck-typed: no framework import)."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):  # tf.Tensor
        return np.asarray(value.numpy())
    return np.asarray(value)


def to_torch(value: Any) -> Any:
    """A tensor of any library as a torch tensor on the device it is on, without a copy: torch's as
    it is, numpy's shared (``from_numpy``), anything that speaks DLPack (ONNX Runtime's OrtValue,
    TensorFlow's and JAX's arrays) through ``torch.from_dlpack``. Imports torch."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value if value.flags.writeable else value.copy())
    if hasattr(value, "__dlpack__"):
        return torch.from_dlpack(value)
    return torch.as_tensor(np.asarray(value))


def as_named(sample: Any, names: Sequence[str], prefix: str = "input__") -> dict[str, np.ndarray]:
    """One sample (a tensor, a tuple/list of tensors or a dict) as a dict name -> array."""
    if isinstance(sample, Mapping):
        return {str(k): to_numpy(v) for k, v in sample.items()}
    if not isinstance(sample, (tuple, list)):
        sample = (sample,)
    if names and len(names) != len(sample):
        raise ValueError(f"a sample has {len(sample)} tensors but {len(names)} names are declared: "
                         f"{list(names)}")
    keys = list(names) if names else [f"{prefix}{i}" for i in range(len(sample))]
    return {k: to_numpy(v) for k, v in zip(keys, sample)}


def _encode_array(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array)
    return {"dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}


def _decode_array(obj: Mapping[str, Any]) -> np.ndarray:
    return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()


def dumps(samples: Iterable[Mapping[str, np.ndarray]]) -> bytes:
    body = [[[name, _encode_array(np.asarray(arr))] for name, arr in sample.items()]
            for sample in samples]
    return msgpack.packb({"format": FORMAT, "samples": body}, use_bin_type=True)


def loads(data: bytes) -> list[dict[str, np.ndarray]]:
    obj = msgpack.unpackb(data, raw=False)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError("not a navbuild tensors file")
    return [{name: _decode_array(arr) for name, arr in sample} for sample in obj["samples"]]


def save(path: Path, samples: Iterable[Mapping[str, np.ndarray]]) -> None:
    Path(path).write_bytes(dumps(samples))


def load(path: Path) -> list[dict[str, np.ndarray]]:
    return loads(Path(path).read_bytes())


def nonfinite(values: np.ndarray) -> str | None:
    """``"2 of 10 values are NaN (the first at index (0, 3))"``, or None when every value is finite."""
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    counts = {"NaN": int(np.isnan(values).sum()), "Inf": int(np.isinf(values).sum())}
    kinds = " or ".join(kind for kind, count in counts.items() if count)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return f"{int(bad.sum())} of {values.size} values are {kinds} (the first at index {first})"
