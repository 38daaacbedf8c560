"""One interface for every runner (Polygraphy's shape): activate, infer, deactivate.

A runner loads one artifact on one device and runs it on numpy feeds. The base class checks the
feed once for all runners; subclasses implement the ``*_impl`` hooks and import their framework
lazily inside them.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from navbuild.rule import ModelSpec, Needs

if TYPE_CHECKING:  # numpy is imported where runners run, not on the no-op path
    import numpy as np


class RunnerError(RuntimeError):
    pass


def native_error(text: str) -> str | None:
    """The message of a C++ exception that ended a process, from its stderr: libstdc++ prints
    ``terminate called after throwing an instance of 'c10::Error'`` then ``what():  <message>``,
    and torch's message runs on with a C++ stack (``Exception raised from ...``, ``frame #0: ...``),
    which is left out. None when the text holds no such report."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("what():"):
            message = line.strip()[len("what():"):].strip()
            thrown = next((each.split("instance of", 1)[1].strip().strip("'") for each in reversed(lines[:index])
                           if "terminate called after throwing an instance of" in each), "")
            return f"{thrown}: {message}" if thrown else message
    return None


class Runner:
    """Base class. Subclasses set ``name`` and implement the hooks.

    Profiling uses ``prepare`` (place the inputs on the device once) and ``run_prepared``
    (the timed call, which must not copy inputs back and forth) and ``synchronize``.
    """

    name: str = "runner"
    devices: tuple[str, ...] = ("cpu",)
    needs: Needs = Needs()
    tools: tuple[str, ...] = ()  # distributions whose version can change its outputs
    loads_source: bool = False  # it imports the model's own code (``model.load_entry()``) to run
    # The rule's persistent cache folder for this device (the build's ``ctx.cache_dir``), set by
    # the engine before ``activate``; a runner that compiles keeps its compiler cache there, so the
    # check and the profile reuse what the build compiled. None: the framework's own default.
    cache_dir: Path | None = None

    def __init__(self, artifact_dir: Path | None, model: ModelSpec, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.artifact_dir = artifact_dir
        self.model = model
        self.device = device
        self.precision = precision
        self.active = False

    # -- public interface -------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.active:
            self.activate_impl()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self.deactivate_impl()
            self.active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.active:
            raise RunnerError(f"{self.name}: call activate() before infer()")
        self._check_feed(feed)
        import numpy as np

        outputs = self.infer_impl(dict(feed))
        return {name: np.asarray(value) for name, value in outputs.items()}

    def prepare(self, feed: Mapping[str, np.ndarray]) -> Any:
        """Inputs converted and placed on the device, ready for ``run_prepared``."""
        self._check_feed(feed)
        return self.prepare_impl(dict(feed))

    def run_prepared(self, prepared: Any) -> Any:
        return self.run_prepared_impl(prepared)

    def synchronize(self) -> None:
        self.synchronize_impl()

    def served_batch_sizes(self) -> list[int] | None:
        """The batch sizes this artifact runs code specialized to (compiled buckets; a smaller batch
        is padded up to the next one), read from the artifact without activating; None when every
        batch size runs the same code. The correctness check and the profile cover each of them."""
        return None

    def runtime_info(self) -> dict[str, Any]:
        """What this runner did to run the artifact fast, for the check's and the profile's records
        (e.g. ``{"cudnn_benchmark": True, "graphs_compiled": 0}``); JSON-able, after ``activate``. Keys
        ending in ``_seconds`` or starting with ``graphs_`` measure this one run: they are kept in the
        check's record but not in its output file, whose digest must not change from run to run."""
        return {}

    # -- hooks ------------------------------------------------------------------------------
    def activate_impl(self) -> None:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        pass

    def infer_impl(self, feed: dict[str, np.ndarray]) -> Mapping[str, Any]:
        raise NotImplementedError

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def run_prepared_impl(self, prepared: Any) -> Any:
        return self.infer_impl(prepared)

    def synchronize_impl(self) -> None:
        pass

    # -- checks -----------------------------------------------------------------------------
    def _check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        expected = list(self.model.inputs)
        if expected and sorted(feed) != sorted(expected):
            raise RunnerError(
                f"{self.name}: inputs {sorted(feed)} do not match the model's inputs {sorted(expected)}")


def output_names(model: ModelSpec, count: int) -> list[str]:
    """The declared output names, or Triton's default ``output__<i>`` names."""
    if model.outputs:
        if len(model.outputs) != count:
            raise RunnerError(
                f"model {model.name} declares outputs {list(model.outputs)} but returned {count}")
        return list(model.outputs)
    return [f"output__{i}" for i in range(count)]


def input_order(model: ModelSpec, sample: Mapping[str, Any]) -> list[str]:
    """The order a model takes its inputs in: as declared, else the sample's own."""
    return list(model.inputs) or list(sample)


def named_outputs(model: ModelSpec, result: Any) -> dict[str, Any]:
    """A model's outputs by name: a dict's own keys (in the declared order when outputs are
    declared), else the declared names or ``output__<i>`` by position."""
    if isinstance(result, Mapping):
        keys = list(result)
        if model.outputs:
            if sorted(keys) != sorted(model.outputs):
                raise ValueError(f"model {model.name} returns outputs {keys} but navbuild.toml declares "
                                 f"{list(model.outputs)}")
            keys = list(model.outputs)
        return {key: result[key] for key in keys}
    values = list(result) if isinstance(result, (list, tuple)) else [result]
    return dict(zip(output_names(model, len(values)), values))


RunnerFactory = Callable[..., Runner]
