"""CUDA graphs over a runner's calls, one per input signature: what ``torch.compile``'s
``reduce-overhead`` mode gives hand-written code, for any runner that only queues work on torch's
current stream (``Runner.capturable``: torch modules, torch-compile's default mode, a TensorRT plan).

A pipeline that calls a module with one shape again and again spends part of each call launching
kernels from Python; a graph replays them all in one launch. The first call of a signature (input
names, types, shapes, strides, device) warms the runner up on a side stream (cuDNN's autotuner,
lazy initialisation), then captures one call into static input buffers (torch's documented recipe:
``torch.cuda.graph``). Later calls of that signature copy their inputs into the buffers, replay,
and get copies of the graph's outputs (the next replay writes over the graph's own). At most
``GRAPHS_KEPT`` signatures are graphed; other calls run as they would without graphs. A capture
that fails (a model that synchronises with the host, or reads a value back) is said once, and the
calls run without graphs from then on.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Mapping

GRAPHS_KEPT = 8  # signatures captured per model (each keeps its buffers and memory pool)
WARMUP_CALLS = 3  # before a capture, on a side stream (torch's recipe)


@dataclass
class _Graph:
    graph: Any  # torch.cuda.CUDAGraph
    inputs: dict[str, Any]  # static input buffers, by name
    outputs: dict[str, Any]  # the captured call's outputs (overwritten by each replay)


def unavailable(runner: Any) -> str | None:
    """Why ``runner``'s calls cannot be put in CUDA graphs (None: they can)."""
    if not str(getattr(runner, "device", "cpu")).startswith("cuda"):
        return f"its runner {runner.name} runs on {runner.device}, CUDA graphs need a GPU"
    if not getattr(runner, "capturable", False):
        return f"its runner {runner.name} cannot be captured in a CUDA graph"
    return None


class GraphedRunner:
    """``run(feed)`` of a capturable CUDA runner through one CUDA graph per input signature; None
    for a call it does not graph (then the caller runs it plainly). ``reason`` says why graphs
    stopped (a failed capture)."""

    def __init__(self, runner: Any, label: str) -> None:
        self.runner = runner
        self.label = label
        self.reason: str | None = unavailable(runner)
        self._graphs: dict[Any, _Graph] = {}

    @property
    def graphs(self) -> int:
        return len(self._graphs)

    def run(self, feed: Mapping[str, Any]) -> dict[str, Any] | None:
        if self.reason is not None:
            return None
        key = _signature(feed)
        graph = self._graphs.get(key)
        if graph is None:
            if key is None or len(self._graphs) >= GRAPHS_KEPT:
                return None
            graph = self._capture(feed)
            if graph is None:
                return None
            self._graphs[key] = graph
        for name, buffer in graph.inputs.items():
            buffer.copy_(feed[name])
        graph.graph.replay()
        return {name: tensor.clone() for name, tensor in graph.outputs.items()}

    def _capture(self, feed: Mapping[str, Any]) -> _Graph | None:
        import torch

        inputs = {name: tensor.clone() for name, tensor in feed.items()}  # clone keeps the strides
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_CALLS):
                    self.runner.run(inputs)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs = self.runner.run(inputs)
            if not all(isinstance(value, torch.Tensor) for value in outputs.values()):
                raise TypeError("its outputs are not torch tensors")
        except Exception as exc:  # noqa: BLE001 - a model that cannot be captured runs without graphs
            self.reason = f"capture failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            print(f"navbuild: {self.label}: runs without CUDA graphs: {self.reason}", file=sys.stderr)
            torch.cuda.synchronize()
            return None
        return _Graph(graph, inputs, dict(outputs))


def _signature(feed: Mapping[str, Any]) -> Any:
    """What a graph is captured for: names, types, shapes, strides and devices of torch tensors;
    None when an input is not a torch CUDA tensor."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    key = []
    for name, value in feed.items():
        if not isinstance(value, torch.Tensor) or not value.is_cuda:
            return None
        key.append((name, value.dtype, value.shape, value.stride(), value.device))
    return tuple(key)
