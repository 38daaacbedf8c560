"""Runners ``torch-compile`` (compiles the eager model with the stored recipe) and ``aoti`` (runs an
AOTInductor package in a worker process)."""
from __future__ import annotations

import itertools
import time
from typing import Any, Mapping


from navbuild.lazy import lazy_import
from navbuild.rule import Needs
from navbuild.runner import Runner, RunnerError, output_names
from rules.torch_compile import loader, options, torch_io

np = lazy_import("numpy")
torch = lazy_import("torch")


class TorchCompileRunner(Runner):
    """Loads the eager model, applies the precision, hot-loads the stored compile cache and compiles
    with the recipe in ``activate`` (by running the build's sample shapes once, on zeros).

    After ``activate``: ``compile_seconds`` (the warm-up, that is the compile) and ``cache_info``
    (what the cache held, None when there was none or torch could not read it).
    """

    name = "torch-compile"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("torch",))

    def activate_impl(self) -> None:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        try:
            recipe = loader.read_recipe(self.artifact_dir)
        except loader.RecipeError as exc:
            raise RunnerError(f"{self.name}: {exc}") from None
        if recipe["precision"] != self.precision:
            raise RunnerError(f"{self.name}: the recipe is for {recipe['precision']}, the runner for {self.precision}")
        self.recipe = recipe
        self.cache_info = loader.load_compile_cache(self.artifact_dir, recipe)
        model = torch_io.prepare_model(self.model.load_entry(), self.device, self.precision)
        warmup = recipe.get("warmup") or [[]]
        model = torch_io.runnable(model, self.model, list(self.model.inputs) or [s["name"] for s in warmup[0]])
        self._compiled = torch.compile(model, mode=recipe["mode"], backend=recipe["backend"],
                                       dynamic=options.DYNAMIC[recipe["dynamic"]])
        started = time.perf_counter()
        for specs in recipe.get("warmup", []):
            feed = {spec["name"]: np.zeros(spec["shape"], dtype=spec["dtype"]) for spec in specs}
            self.run_prepared_impl(self.prepare_impl(feed))
        self.synchronize_impl()
        self.compile_seconds = time.perf_counter() - started

    def deactivate_impl(self) -> None:
        self._compiled = None

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        return torch_io.to_tensors(self.model, feed, self.device, self.precision)

    def run_prepared_impl(self, prepared: Any) -> Any:
        with torch.inference_mode():
            return self._compiled(*prepared)

    def infer_impl(self, feed: dict[str, np.ndarray]) -> Mapping[str, Any]:
        return torch_io.named_outputs(self.model, self.run_prepared_impl(self.prepare_impl(feed)))

    def synchronize_impl(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


class AotiRunner(Runner):
    """Runs ``model.pt2`` in a worker process (``aoti_worker``), so that a native crash while loading
    or running the package fails this runner with the reason instead of killing the caller.

    ``prepare`` sends the feed to the worker once; ``run_prepared`` is one small round trip that runs
    the model there without sending outputs back (what the profiler times).
    """

    name = "aoti"
    devices = ("cpu", "cuda")
    needs = Needs(modules=("torch",))

    def activate_impl(self) -> None:
        from rules.torch_compile.aoti_child import LOAD_TIMEOUT_S, AotiChild

        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact directory")
        package = loader.aoti_package(self.artifact_dir)
        self._handles = itertools.count()
        self._child = AotiChild(label=f"aoti worker for {self.model.name}").start()
        try:
            reply = self._child.request({"op": "load", "path": str(package), "device": self.device,
                                         "precision": self.precision},
                                        timeout=LOAD_TIMEOUT_S, what=f"load of {package}")
        except BaseException:
            self._child.close()
            raise
        self.load_seconds = reply["seconds"]

    def deactivate_impl(self) -> None:
        self._child.close()

    @property
    def worker_pid(self) -> int | None:
        child = getattr(self, "_child", None)
        return child.pid if child is not None else None

    def _ordered(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: feed[name] for name in torch_io.input_order(self.model, feed)}

    def infer_impl(self, feed: dict[str, np.ndarray]) -> Mapping[str, Any]:
        from navbuild.tensors import dumps, loads

        reply = self._child.request({"op": "infer", "feed": dumps([self._ordered(feed)])}, what="infer")
        outputs = list(loads(reply["outputs"])[0].values())
        return dict(zip(output_names(self.model, len(outputs)), outputs))

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        from navbuild.tensors import dumps

        handle = next(self._handles)
        self._child.request({"op": "prepare", "handle": handle, "feed": dumps([self._ordered(feed)])},
                            what="prepare")
        return handle

    def run_prepared_impl(self, prepared: Any) -> Any:
        self._child.request({"op": "run", "handle": prepared}, what="run")
        return None

    def synchronize_impl(self) -> None:
        if self.device == "cuda":
            self._child.request({"op": "sync"}, what="sync")
