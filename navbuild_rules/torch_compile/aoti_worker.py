"""The AOTI worker: loads one AOTInductor package and runs it in a process of its own.
Loading an AOTI package runs native code compiled for one machine; on some machines it crashes
the process (seen: a segfault in ``aoti_load_package`` with torch 2.11+cu130 on an H200). The
parent (``aoti_child.AotiChild``) starts this module with ``python -m navbuild_rules.torch_compile.aoti_worker``
so that such a crash ends this process only and becomes the target's failure.

Protocol: frames over the worker's stdin (requests) and stdout (replies); a frame is a 4-byte
big-endian length followed by that many bytes of msgpack holding a map. Arrays travel as
``navbuild.tensors.dumps`` bytes. One reply per request, in order:

  {"op": "load", "packages": {key: path}, "device": "cpu"|"cuda", "precision": "fp32"|"fp16"|"bf16"|"tf32",
   "channels_last": bool}
      key is a bucket's batch size ("8") or "dynamic"; a call runs the package whose key is its batch
      size, else the dynamic one (the parent pads batches up to a bucket). TF32 is set for the
      precision (navbuild_rules/torch/tf32.py)
      -> {"ok": true, "seconds": float, "tf32": bool}
  {"op": "infer", "feed": bytes}      feed: dumps([{name: array}]) in the model's input order
      -> {"ok": true, "outputs": bytes}   dumps([{"0": array, "1": ...}]) flattened, float32
  {"op": "prepare", "handle": int, "feed": bytes}   inputs placed on the device, kept under handle
      -> {"ok": true}
  {"op": "run", "handle": int}        one call on prepared inputs; outputs stay in the worker
      -> {"ok": true}
  {"op": "sync"}                      waits for the device (CUDA) -> {"ok": true}
  {"op": "exit"}                      -> {"ok": true}, then the worker exits 0

A Python exception answers {"ok": false, "error": "Type: message", "traceback": str} and the
worker goes on. End of input (the parent closed the pipe or died) ends the worker. The worker
writes nothing else to stdout: file descriptor 1 is pointed at stderr before torch is imported, so
native prints cannot corrupt the frames; the parent keeps stderr for its error messages.
"""
from __future__ import annotations

import os
import struct
import sys
import time
import traceback
from typing import Any, BinaryIO

import msgpack

from navbuild.lazy import lazy_import

torch = lazy_import("torch")

HEADER = struct.Struct(">I")
MAX_PREPARED = 64  # prepared feeds kept at once (the profiler prepares one per batch size)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (length,) = HEADER.unpack(header)
    body = stream.read(length)
    if len(body) < length:
        return None
    return msgpack.unpackb(body, raw=False)


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = msgpack.packb(message, use_bin_type=True)
    stream.write(HEADER.pack(len(body)) + body)
    stream.flush()


class Worker:
    def __init__(self) -> None:
        self.models: dict[str, Any] = {}
        self.device = "cpu"
        self.precision = "fp32"
        self.channels_last = False
        self.prepared: dict[int, tuple[Any, ...]] = {}
        self.last_outputs: Any = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True, **(handler(request) or {})}

    def op_load(self, request: dict[str, Any]) -> dict[str, Any]:
        from torch._inductor import aoti_load_package

        from navbuild_rules.torch import tf32

        started = time.perf_counter()
        self.device, self.precision = request["device"], request["precision"]
        self.channels_last = bool(request.get("channels_last", False))
        self.models = {str(key): aoti_load_package(path) for key, path in request["packages"].items()}
        on = tf32.apply(self.precision, self.device)  # the extern kernels (cuBLAS, cuDNN) read it as they run
        return {"seconds": time.perf_counter() - started, "tf32": on}

    def _model(self, args: tuple[Any, ...]) -> Any:
        if not self.models:
            raise RuntimeError("no package is loaded; send a load request first")
        batch = str(args[0].shape[0]) if args else "dynamic"
        model = self.models.get(batch, self.models.get("dynamic"))
        if model is None:
            raise RuntimeError(f"no package for a batch of {batch}; packages: {', '.join(self.models)}")
        return model

    def _tensors(self, feed_bytes: bytes) -> tuple[Any, ...]:
        from navbuild.tensors import loads
        from navbuild_rules.torch.memory_format import inputs
        from navbuild_rules.torch_compile.torch_io import torch_dtype

        if not self.models:
            raise RuntimeError("no package is loaded; send a load request first")
        dtype = torch_dtype(self.precision)
        tensors = []
        for array in loads(feed_bytes)[0].values():
            tensor = torch.from_numpy(array).to(self.device)
            tensors.append(tensor.to(dtype) if tensor.is_floating_point() else tensor)
        return inputs(tensors, self.channels_last)

    def op_infer(self, request: dict[str, Any]) -> dict[str, Any]:
        from navbuild.tensors import dumps
        from navbuild_rules.torch_compile.torch_io import flatten, to_numpy

        args = self._tensors(request["feed"])
        with torch.inference_mode():
            outputs = flatten(self._model(args)(*args))
        return {"outputs": dumps([{str(i): to_numpy(t) for i, t in enumerate(outputs)}])}

    def op_prepare(self, request: dict[str, Any]) -> None:
        while len(self.prepared) >= MAX_PREPARED:
            self.prepared.pop(next(iter(self.prepared)))
        self.prepared[int(request["handle"])] = self._tensors(request["feed"])

    def op_run(self, request: dict[str, Any]) -> None:
        try:
            args = self.prepared[int(request["handle"])]
        except KeyError:
            raise KeyError(f"no prepared feed {request['handle']}") from None
        with torch.inference_mode():
            self.last_outputs = self._model(args)(*args)

    def op_sync(self, request: dict[str, Any]) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def op_exit(self, request: dict[str, Any]) -> None:
        return None


def main() -> int:
    out_fd = os.dup(1)
    os.dup2(2, 1)  # stray writes to fd 1 (C++ prints, print()) land in stderr, never in the frames
    sys.stdout = sys.stderr
    reader, writer = sys.stdin.buffer, os.fdopen(out_fd, "wb")
    worker = Worker()
    while True:
        request = read_frame(reader)
        if request is None:
            return 0
        try:
            reply = worker.handle(request)
        except Exception as exc:  # the worker survives Python errors; native crashes end it
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        write_frame(writer, reply)
        if request.get("op") == "exit":
            return 0


if __name__ == "__main__":
    sys.exit(main())
