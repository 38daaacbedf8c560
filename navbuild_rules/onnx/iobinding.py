"""Feeds bound to an ONNX Runtime session on the GPU without host copies (I/O binding), for every
family whose runner runs ONNX Runtime on CUDA (``navbuild_rules/onnx``, ``navbuild_rules/tensorrt``'s ort runners).

An input that is already on the GPU (a torch CUDA tensor, any DLPack tensor there) is shared with
ONNX Runtime through DLPack (``OrtValue.from_dlpack``); a host input is copied to the GPU once. The
outputs are bound on the GPU and come back as ``OrtValue``s, which torch reads through DLPack
(``torch.from_dlpack``) without a copy.

ONNX Runtime runs on a CUDA stream of its own (torch's default stream cannot be handed to it: its
handle is 0, which the provider reads as "none"), so an input another library computed is waited
for before the call: the producer's stream is synchronized. ``run_with_iobinding`` returns once the
outputs are written.
"""
from __future__ import annotations

import sys
from typing import Any, Mapping, Sequence

from navbuild.lazy import lazy_import

np = lazy_import("numpy")
onnxruntime = lazy_import("onnxruntime")

DLPACK_CPU, DLPACK_CUDA = 1, 2  # DLPack's device types (kDLCPU, kDLCUDA)


def on_gpu(value: Any) -> bool:
    """The value lives on a CUDA device (read from DLPack, no library imported)."""
    device = getattr(value, "__dlpack_device__", None)
    return device is not None and not isinstance(value, np.ndarray) and device()[0] == DLPACK_CUDA


def gpu_value(value: Any, device_id: int) -> Any:
    """``value`` as an OrtValue on the GPU: shared when it is there already, else copied once."""
    if on_gpu(value):
        if callable(getattr(value, "is_contiguous", None)) and not value.is_contiguous():
            value = value.contiguous()  # ONNX Runtime reads dense row-major tensors
        _wait_for_producer(value)
        return onnxruntime.OrtValue.from_dlpack(value)
    from navbuild.tensors import to_numpy

    return onnxruntime.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(to_numpy(value)), "cuda", device_id)


def bind(session: Any, feed: Mapping[str, Any], outputs: Sequence[str], device_id: int = 0) -> Any:
    """A session's I/O binding: ``feed`` on the GPU, every output allocated there by the run."""
    binding = session.io_binding()
    for name, value in feed.items():
        binding.bind_ortvalue_input(name, gpu_value(value, device_id))
    for name in outputs:
        binding.bind_output(name, "cuda", device_id)
    return binding


def outputs(binding: Any, names: Sequence[str]) -> dict[str, Any]:
    """The bound outputs after a run, as OrtValues on the GPU, by name."""
    return dict(zip(names, binding.get_outputs()))


def _wait_for_producer(value: Any) -> None:
    """A torch tensor's pending kernels finish before ONNX Runtime's stream reads it."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        torch.cuda.current_stream(value.device).synchronize()
