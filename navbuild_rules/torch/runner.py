"""Runners of the torch family: the eager model, a TorchScript archive, a torch.export program.

They share one shape: ``load()`` gives a callable module on the device; ``prepare`` turns the
feed into device tensors (torch tensors as they are, numpy arrays shared; float inputs come cast to
the artifact's precision by the base class, ``input_float_type``; 4-D ones are made channels-last
when the artifact was built so), passed by name to the eager model when it takes them so, and by
position, in the declared order, to an export (``plain_io.exportable``). A call runs under
``torch.no_grad()`` (not inference mode: its outputs go on into a user's code, where autograd may
meet them); ``run`` returns the outputs as torch tensors on the device, in the artifact's types,
bound by ``model_io.bind_outputs`` (by key or by position). On CUDA they turn cuDNN's autotuner on
(``memory_format``). TF32 is off except for a ``tf32`` target (``tf32``), set once the model is
loaded; ``runtime_info`` says which.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from navbuild.lazy import lazy_import
from navbuild.rule import Needs
from navbuild.runner import Runner, RunnerError

from navbuild_rules.torch import memory_format, model_io, tf32
from navbuild_rules.torch.loader import EXPORT_FILE, RECIPE_FILE, TORCHSCRIPT_FILE, load_exported, load_torchscript

np = lazy_import("numpy")
torch = lazy_import("torch")


class _TorchRunner(Runner):
    devices = ("cpu", "cuda")
    needs = Needs(modules=("torch",))
    tools = ("torch",)
    loads_source = False  # whether it imports the model's own code (deployments then carry it)
    capturable = True  # a call queues kernels on torch's stream (a model that synchronises says so when captured)

    def load(self) -> Any:
        raise NotImplementedError

    def activate_impl(self) -> None:
        self._dtype = model_io.torch_dtype(self.precision)
        self._channels_last = memory_format.read_runtime(self.artifact_dir)
        self.cudnn_benchmark = memory_format.use_cudnn_benchmark(self.device)
        self._module = self.load()
        self.tf32 = tf32.apply(self.precision, self.device)  # after the model's code ran: it may set TF32 too
        self.input_float_type = model_io.DTYPES[self.precision]  # float inputs at the artifact's precision
        self._outputs = model_io.OutputBinder(self.model)
        self._device = torch.device(self.device)
        self._bindings: dict[tuple[str, ...], str] = {}

    def runtime_info(self) -> dict[str, Any]:
        return {"memory_format": memory_format.name(self._channels_last), "cudnn_benchmark": self.cudnn_benchmark,
                "tf32": self.tf32}

    def deactivate_impl(self) -> None:
        self._module = None
        if self.device == "cuda":
            torch.cuda.empty_cache()

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> tuple[Any, ...] | dict[str, Any]:
        """The feed as tensors: positional, or a dict for a module that takes them by name."""
        names = model_io.input_order(self.model, feed)
        tensors = memory_format.inputs(model_io.to_tensors(self.model, feed, self._device), self._channels_last)
        key = tuple(names)
        binding = self._bindings.get(key)
        if binding is None:  # read from forward's signature once per set of names
            binding = self._bindings[key] = self.binding(names)
        return dict(zip(names, tensors)) if binding == model_io.BY_NAME else tensors

    def binding(self, names: list[str]) -> str:
        return model_io.POSITIONAL  # an export takes its inputs by position, in the declared order

    def run_prepared_impl(self, prepared: tuple[Any, ...] | dict[str, Any]) -> Any:
        try:
            with torch.no_grad():
                return self._module(**prepared) if isinstance(prepared, dict) else self._module(*prepared)
        except Exception as exc:
            raise RunnerError(f"{self.name}: model {self.model.name} failed on inputs "
                              f"{_describe(prepared)}: {type(exc).__name__}: {exc}") from exc

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        return self._outputs.bind(result)

    def synchronize_impl(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def artifact(self, name: str) -> Path:
        if self.artifact_dir is None:
            raise RunnerError(f"{self.name}: no artifact folder given")
        path = Path(self.artifact_dir) / name
        if not path.is_file():
            raise RunnerError(f"{self.name}: {path} is missing")
        return path


class TorchEagerRunner(_TorchRunner):
    """The source model itself (the ``torch`` format's recipe), weights cast to the precision."""

    name = "torch-eager"
    loads_source = True

    def load(self) -> Any:
        if self.artifact_dir is not None:  # the recipe's precision wins over the one asked for
            recipe = json.loads(self.artifact(RECIPE_FILE).read_text())
            self.precision = recipe["precision"]
            self._dtype = model_io.torch_dtype(self.precision)
            self._channels_last = recipe.get("memory_format") == memory_format.CHANNELS_LAST
        model = model_io.prepare_model(self.model.load_entry(), self.device, self._dtype)
        return memory_format.model(model, self._channels_last)

    def binding(self, names: list[str]) -> str:
        return model_io.input_binding(self.model, self._module, names)


class TorchScriptRunner(_TorchRunner):
    name = "torchscript"

    def load(self) -> Any:
        return load_torchscript(self.artifact(TORCHSCRIPT_FILE), self.device)


class TorchExportRunner(_TorchRunner):
    name = "torch-export"

    def load(self) -> Any:
        return load_exported(self.artifact(EXPORT_FILE), self.device)


def _describe(tensors: tuple[Any, ...] | dict[str, Any]) -> str:
    named = tensors.items() if isinstance(tensors, dict) else ((None, t) for t in tensors)
    return ", ".join(f"{name + '=' if name else ''}{str(t.dtype).replace('torch.', '')}{list(t.shape)}"
                     for name, t in named)
