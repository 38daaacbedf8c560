"""One interface for every runner (Polygraphy's shape): activate, infer, deactivate.

A runner loads one artifact on one device and runs it on numpy feeds. The base class checks the
feed once for all runners (``checked_feed``: input names, dtypes and shapes against what the
artifact takes, ``input_specs``) and applies the one conversion policy: a floating-point input is
cast to the artifact's floating-point type, an integer input to its integer type when the values
fit, and any other difference is an error naming the input.
Subclasses implement the ``*_impl`` hooks and import their framework lazily inside them.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
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


FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(frozen=True)
class TensorSpec:
    """What an artifact takes for one input (Polygraphy's input metadata).

    dtype  a numpy-style type name ("float32", "bfloat16", "int64"); None: any type
    shape  one entry per axis, None where the axis varies (the batch, a dynamic axis); None: any shape
    """

    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None

    def problem(self, name: str, value: Any) -> str | None:
        """Why ``value`` cannot be input ``name``, or None. A value of another type of the same kind
        can (it is cast): a float of another float type, an integer whose values fit the integer type."""
        dtype, shape = dtype_name(value), shape_of(value)
        if self.dtype is not None and dtype != self.dtype and not (
                (is_float(dtype) and is_float(self.dtype)) or fits_integer(value, self.dtype)):
            return f"input {name} is {dtype}, the artifact expects {self.dtype}"
        if self.shape is None:
            return None
        wanted = "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        if len(shape) != len(self.shape):
            return (f"input {name} has shape {list(shape)}, the artifact expects rank {len(self.shape)} "
                    f"({wanted})")
        if any(want is not None and want != got for want, got in zip(self.shape, shape)):
            return f"input {name} has shape {list(shape)}, the artifact expects {wanted}"
        return None


def is_float(dtype: str | None) -> bool:
    return dtype in FLOAT_TYPES


INTEGER_RANGES = {**{f"int{bits}": (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) for bits in (8, 16, 32, 64)},
                  **{f"uint{bits}": (0, (1 << bits) - 1) for bits in (8, 16, 32, 64)}}


def fits_integer(value: Any, dtype: str) -> bool:
    """``value`` holds integers that ``dtype`` (an integer type) can hold: token ids given as int64
    to an artifact that takes int32."""
    if dtype_name(value) not in INTEGER_RANGES or dtype not in INTEGER_RANGES:
        return False
    count = value.numel() if callable(getattr(value, "numel", None)) else int(getattr(value, "size", 1))
    if count == 0:
        return True
    low, high = INTEGER_RANGES[dtype]
    return low <= int(value.min()) and int(value.max()) <= high


def dtype_name(value: Any) -> str:
    """The type name of a tensor of any library, read from the object: numpy's and TensorFlow's
    ``dtype.name``, torch's ``torch.float32`` as ``float32``."""
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        return type(value).__name__
    return str(getattr(dtype, "name", None) or dtype).removeprefix("torch.")


def shape_of(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in getattr(value, "shape", ()))


def cast(value: Any, dtype: str) -> Any:
    """``value`` as ``dtype`` through its own library (torch's ``to``, numpy's ``astype``); a numpy
    array goes to a type numpy lacks (bfloat16) as a torch tensor, when torch runs the artifact."""
    if dtype_name(value) == dtype:
        return value
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return value.to(getattr(torch, dtype))
    import numpy as np

    try:
        wanted = np.dtype(dtype)
    except TypeError:
        wanted = None
    if wanted is None or wanted.isbuiltin != 1:  # not numpy's own (ml_dtypes' bfloat16 is not torch's)
        if torch is None or not hasattr(torch, dtype):
            raise RunnerError(f"no library here holds {dtype} tensors")
        return torch.from_numpy(np.ascontiguousarray(value)).to(getattr(torch, dtype))
    return np.asarray(value).astype(wanted, copy=False)


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
    # The floating-point type the artifact takes for float inputs whose spec names no type (a torch
    # artifact at fp16 takes float16 wherever the model takes a float); None: as given.
    input_float_type: str | None = None

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
        feed = self.checked_feed(feed)
        import numpy as np

        outputs = self.infer_impl(feed)
        return {name: np.asarray(value) for name, value in outputs.items()}

    def prepare(self, feed: Mapping[str, np.ndarray]) -> Any:
        """Inputs converted and placed on the device, ready for ``run_prepared``."""
        return self.prepare_impl(self.checked_feed(feed))

    def run_prepared(self, prepared: Any) -> Any:
        return self.run_prepared_impl(prepared)

    def synchronize(self) -> None:
        self.synchronize_impl()

    def input_specs(self) -> dict[str, TensorSpec]:
        """What the artifact takes, per input (after ``activate``): the artifact's own declaration
        where the runner can read one (``input_specs_impl``), else the model's declared input names
        with any type and shape."""
        specs = self.input_specs_impl()
        if specs is not None:
            return dict(specs)
        return {name: TensorSpec() for name in self.model.inputs}

    def checked_feed(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """``feed`` checked against ``input_specs`` (names, types, shapes) and cast to the artifact's
        types where the kind agrees (``TensorSpec.problem``); a RunnerError names what does not fit."""
        specs = self.input_specs()
        if specs and sorted(feed) != sorted(specs):
            raise RunnerError(f"{self.name}: inputs {sorted(feed)} do not match the model's inputs {sorted(specs)}")
        checked = {}
        for name, value in feed.items():
            if not hasattr(value, "dtype"):  # a list or a scalar: an array, as numpy reads it
                import numpy as np

                value = np.asarray(value)
            spec = specs.get(name, TensorSpec())
            problem = spec.problem(name, value)
            if problem:
                raise RunnerError(f"{self.name}: {problem}")
            wanted = spec.dtype or (self.input_float_type if is_float(dtype_name(value)) else None)
            checked[name] = cast(value, wanted) if wanted is not None else value
        return checked

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

    def input_specs_impl(self) -> Mapping[str, TensorSpec] | None:
        """The artifact's inputs as the loaded artifact declares them; None: it declares none."""
        return None

    def infer_impl(self, feed: dict[str, np.ndarray]) -> Mapping[str, Any]:
        raise NotImplementedError

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def run_prepared_impl(self, prepared: Any) -> Any:
        return self.infer_impl(prepared)

    def synchronize_impl(self) -> None:
        pass


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
