"""Runners ``torch-compile`` (compiles the eager model with the stored recipe) and ``aoti`` (runs
AOTInductor packages in a worker process). Both serve batch buckets (``batching``)."""
from __future__ import annotations

import itertools
import time
from typing import Any, Mapping


from navbuild.lazy import lazy_import
from navbuild.rule import Needs
from navbuild.runner import Runner, RunnerError, output_names
from navbuild_rules.torch import memory_format, model_io, tf32
from navbuild_rules.torch_compile import batching, compile_cache, loader, options, torch_io

np = lazy_import("numpy")
torch = lazy_import("torch")


class TorchCompileRunner(Runner):
    """Loads the eager model, applies the precision and memory format, hot-loads the stored compile
    cache and compiles with the recipe in ``activate`` (by running every warm-up shape of the recipe,
    on zeros), with inductor's caches in ``cache_dir`` when the engine gives one.

    With buckets, a batch runs in the smallest bucket that holds it (padded up, outputs sliced back)
    and a batch above the largest is refused (``batching.BucketError``).

    Calls run under ``torch.no_grad()``, as the build compiled them (a change of grad mode would
    recompile); ``run`` returns torch tensors on the device, in the recipe's precision. In a CUDA
    graph mode the graphs' outputs are overwritten by the next call, so ``run`` hands out copies
    (made on the device) while the profiled ``run_prepared`` does not.

    After ``activate``: ``compile_seconds`` (the warm-up, that is the compile or the cache loads),
    ``compiles`` (graphs compiled and loaded, from torch's counters) and ``cache_info`` (what the
    stored cache held, None when there was none or torch could not read it).
    """

    name = "torch-compile"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("torch",))
    capturable = True  # inductor's code queues kernels on torch's stream; not in a CUDA graph mode (below)

    def recipe(self) -> dict[str, Any]:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        try:
            return loader.read_recipe(self.artifact_dir)
        except loader.RecipeError as exc:
            raise RunnerError(f"{self.name}: {exc}") from None

    def served_batch_sizes(self) -> list[int] | None:
        return self.recipe()["batching"].get("buckets")

    def activate_impl(self) -> None:
        recipe = self.recipe()
        if recipe["precision"] != self.precision:
            raise RunnerError(f"{self.name}: the recipe is for {recipe['precision']}, the runner for {self.precision}")
        self._recipe = recipe
        self._buckets = recipe["batching"].get("buckets")
        self._channels_last = recipe["memory_format"] == memory_format.CHANNELS_LAST
        self._cudagraphs = self.device == "cuda" and recipe["mode"] in options.CUDAGRAPH_MODES
        self.capturable = not self._cudagraphs  # its own graphs: no capture inside a capture
        self._outputs = model_io.OutputBinder(self.model)
        self.cudnn_benchmark = memory_format.use_cudnn_benchmark(self.device)
        self._axes = recipe.get("dynamic_axes") or {}  # marked dynamic on every call, as the build did
        self.input_float_type = model_io.DTYPES[self.precision]  # float inputs at the recipe's precision
        counter = compile_cache.CompileCounter()
        with compile_cache.using(compile_cache.folder(self.cache_dir, self._axes)):
            self.cache_info = loader.load_compile_cache(self.artifact_dir, recipe)
            model = torch_io.prepare_model(self.model.load_entry(), self.device, self.precision)
            model = memory_format.model(model, self._channels_last)
            self.tf32 = tf32.apply(self.precision, self.device)  # as the build compiled it
            warmup = recipe["warmup"] or [[]]
            model = torch_io.runnable(model, self.model, list(self.model.inputs) or [s["name"] for s in warmup[0]])
            self._compiled = compile_cache.compile_model(model, recipe, len(recipe["warmup"]))
            started = time.perf_counter()
            with compile_cache.loud_recompile_limit():
                for specs in recipe["warmup"]:
                    feed = {spec["name"]: np.zeros(spec["shape"], dtype=spec["dtype"]) for spec in specs}
                    prepared = self.prepare_impl(self.checked_feed(feed))
                    for _ in range(3 if self._cudagraphs else 1):  # CUDA graphs: warm up, record, replay
                        self.run_prepared_impl(prepared)
            self.synchronize_impl()
        self.compile_seconds = time.perf_counter() - started
        self.compiles = counter.delta()

    def deactivate_impl(self) -> None:
        self._compiled = None

    def runtime_info(self) -> dict[str, Any]:
        return {"buckets": self._buckets, "memory_format": self._recipe["memory_format"],
                "dynamic_axes": sorted({b["label"] for axes in self._axes.values() for b in axes.values()}),
                "cudnn_benchmark": self.cudnn_benchmark, "tf32": self.tf32,
                "compile_seconds": round(self.compile_seconds, 3),
                **self.compiles}

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        batch = batching.batch_of(feed, self.model.batch_dim)
        bucket = None
        if self._buckets:
            bucket = batching.pick(batch, self._buckets, f"model {self.model.name} ({self.name} {self.precision})")
            feed = batching.pad(feed, bucket, self.model.batch_dim)
        tensors = memory_format.inputs(model_io.to_tensors(self.model, feed, self.device), self._channels_last)
        return torch_io.mark_dynamic(tensors, model_io.input_order(self.model, feed), self._axes), batch, bucket

    def run_prepared_impl(self, prepared: Any) -> Any:
        tensors, batch, bucket = prepared
        if self._cudagraphs:  # each call is a new step: the previous call's outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with torch.no_grad():
            outputs = self._compiled(*tensors)
        if bucket is None or bucket == batch:
            return outputs
        return _unpadded(outputs, batch, bucket)

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        named = self._outputs.bind(result)
        if self._cudagraphs:  # the next replay writes over the graph's own output buffers
            return {name: tensor.clone() for name, tensor in named.items()}
        return named

    def synchronize_impl(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def _unpadded(outputs: Any, batch: int, bucket: int) -> Any:
    """The first ``batch`` rows of a padded call's outputs: a list of tensors, or for a dict-like
    result a dict under the same keys (so that ``named_outputs`` still binds them by key)."""
    if model_io.keyed_items(outputs) is None:
        return batching.unpad(model_io.flatten(outputs), batch, bucket)
    found = dict(model_io.tensor_leaves(outputs, ""))
    return dict(zip(found, batching.unpad(list(found.values()), batch, bucket)))


class AotiRunner(Runner):
    """Runs the AOTInductor packages in a worker process (``aoti_worker``), so that a native crash
    while loading or running one fails this runner with the reason instead of killing the caller.
    Tensors cross that process boundary as numpy arrays, ``run``'s too (its outputs are numpy).

    With buckets, the feed is padded here up to its bucket (the worker runs that bucket's package)
    and the outputs sliced back; a batch above the largest bucket is refused. ``prepare`` sends the
    feed to the worker once; ``run_prepared`` is one small round trip that runs the model there
    without sending outputs back (what the profiler times).
    """

    name = "aoti"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("torch",))

    def info(self) -> dict[str, Any]:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        try:
            return loader.read_aoti_info(self.artifact_dir)
        except loader.RecipeError as exc:
            raise RunnerError(f"{self.name}: {exc}") from None

    def served_batch_sizes(self) -> list[int] | None:
        return self.info()["batching"].get("buckets")

    def activate_impl(self) -> None:
        from navbuild_rules.torch_compile.aoti_child import LOAD_TIMEOUT_S, AotiChild

        info = self.info()
        self._buckets = info["batching"].get("buckets")
        self._handles = itertools.count()
        self._child = AotiChild(label=f"aoti worker for {self.model.name}").start()
        try:
            reply = self._child.request(loader.load_request(self.artifact_dir, info), timeout=LOAD_TIMEOUT_S,
                                        what=f"load of {', '.join(info['packages'])} in {self.artifact_dir}")
        except BaseException:
            self._child.close()
            raise
        self.load_seconds = reply["seconds"]
        self.tf32 = bool(reply.get("tf32", False))

    def deactivate_impl(self) -> None:
        self._child.close()

    def runtime_info(self) -> dict[str, Any]:
        return {"buckets": self._buckets, "tf32": self.tf32, "load_seconds": round(self.load_seconds, 3)}

    @property
    def worker_pid(self) -> int | None:
        child = getattr(self, "_child", None)
        return child.pid if child is not None else None

    def _ordered(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: feed[name] for name in torch_io.input_order(self.model, feed)}

    def _padded(self, feed: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int | None]:
        batch = batching.batch_of(feed, self.model.batch_dim)
        if not self._buckets:
            return self._ordered(feed), batch, None
        bucket = batching.pick(batch, self._buckets, f"model {self.model.name} ({self.name} {self.precision})")
        return self._ordered(batching.pad(feed, bucket, self.model.batch_dim)), batch, bucket

    def run_impl(self, feed: dict[str, Any]) -> Mapping[str, Any]:
        """A process boundary: the feed crosses it as host arrays, the outputs come back as numpy."""
        return self.infer_impl(feed)

    def infer_impl(self, feed: dict[str, np.ndarray]) -> Mapping[str, Any]:
        from navbuild.tensors import dumps, loads, to_numpy

        padded, batch, bucket = self._padded({name: to_numpy(value) for name, value in feed.items()})
        reply = self._child.request({"op": "infer", "feed": dumps([padded])}, what="infer")
        outputs = list(loads(reply["outputs"])[0].values())
        if bucket is not None:
            outputs = batching.unpad(outputs, batch, bucket)
        return dict(zip(output_names(self.model, len(outputs)), outputs))

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        from navbuild.tensors import dumps, to_numpy

        handle = next(self._handles)
        padded, _, _ = self._padded({name: to_numpy(value) for name, value in feed.items()})
        self._child.request({"op": "prepare", "handle": handle, "feed": dumps([padded])}, what="prepare")
        return handle

    def run_prepared_impl(self, prepared: Any) -> Any:
        self._child.request({"op": "run", "handle": prepared}, what="run")
        return None

    def synchronize_impl(self) -> None:
        if self.device == "cuda":
            self._child.request({"op": "sync"}, what="sync")
