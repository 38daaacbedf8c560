"""One interface for every runner (Polygraphy's shape): activate, infer, deactivate.

A runner loads one artifact on one device and runs it two ways: ``run`` takes framework tensors
(torch, numpy, or any tensor that speaks DLPack) and returns the runner's own tensors on its
device, without host copies (what ``Package.get_model`` and in-place modules call); ``infer`` is
numpy in and numpy out (the CLI, the checks of stored samples, Triton's python backend). The base
class checks the feed once for all runners and both ways (``checked_feed``: input names, dtypes and
shapes against what the artifact takes, ``input_specs``) and applies the one conversion policy: a
floating-point input is cast to the artifact's floating-point type, an integer input to its integer
type when the values fit, and any other difference is an error naming the input. The decision is
kept per input signature (names, types, shapes), so a repeated call pays a dictionary look-up.
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


FEED_PLANS_KEPT = 64  # input signatures whose check is remembered per runner


class Runner:
    """Base class. Subclasses set ``name`` and implement the hooks.

    ``run`` is ``prepare`` (place the inputs on the device), ``run_prepared`` (the call itself,
    which must not copy inputs back and forth: what the profiler times) and ``outputs_impl`` (the
    call's result as named tensors of the runner's framework, on its device); ``synchronize``
    waits for the device. ``infer`` is ``run`` with host numpy arrays out.
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
    # Whether ``run_prepared`` only queues work on torch's current CUDA stream, with no host
    # synchronisation, so that a CUDA graph can capture it (torch modules, a TensorRT plan run on
    # torch's stream); the Python API's ``cuda_graphs`` needs it.
    capturable: bool = False

    def __init__(self, artifact_dir: Path | None, model: ModelSpec, device: str = "cpu",
                 precision: str = "fp32") -> None:
        self.artifact_dir = artifact_dir
        self.model = model
        self.device = device
        self.precision = precision
        self.active = False
        self._feed_plans: dict[Any, dict[str, str | None]] = {}

    # -- public interface -------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.active:
            self.activate_impl()
            self._feed_plans = {}  # what the artifact takes is known from now on
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

    def run(self, feed: Mapping[str, Any]) -> dict[str, Any]:
        """The tensor-native call: framework tensors in (torch tensors as they are, numpy arrays, any
        DLPack tensor), the runner's own tensors out, on its device and in the artifact's types (an
        fp16 artifact returns float16). Nothing is copied to the host that was not there."""
        if not self.active:
            raise RunnerError(f"{self.name}: call activate() before run()")
        return dict(self.run_impl(self.checked_feed(feed)))

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """numpy in, numpy out: host arrays, reduced-precision floats as float32."""
        if not self.active:
            raise RunnerError(f"{self.name}: call activate() before infer()")
        outputs = self.infer_impl(self.checked_feed(feed))
        return {name: host_array(value) for name, value in outputs.items()}

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
        types where the kind agrees (``TensorSpec.problem``); a RunnerError names what does not fit.
        The verdict is kept per signature (names, types, shapes) unless it read the values (an
        integer input of a wider type than the artifact's is checked on every call)."""
        key = _signature(feed)
        plan = self._feed_plans.get(key) if key is not None else None
        if plan is None:
            if key is None:  # a list or a scalar among the inputs: an array, as numpy reads it
                import numpy as np

                feed = {name: value if hasattr(value, "dtype") else np.asarray(value) for name, value in feed.items()}
            plan, by_value = self._feed_plan(feed)
            if key is not None and not by_value and self.active:
                if len(self._feed_plans) >= FEED_PLANS_KEPT:
                    self._feed_plans.clear()
                self._feed_plans[key] = plan
        return {name: value if plan[name] is None else cast(value, plan[name]) for name, value in feed.items()}

    def _feed_plan(self, feed: Mapping[str, Any]) -> tuple[dict[str, str | None], bool]:
        """Per input, the type it is cast to (None: as it is), and whether a value decided it."""
        specs = self.input_specs()
        if specs and sorted(feed) != sorted(specs):
            raise RunnerError(f"{self.name}: inputs {sorted(feed)} do not match the model's inputs {sorted(specs)}")
        plan: dict[str, str | None] = {}
        by_value = False
        for name, value in feed.items():
            spec = specs.get(name, TensorSpec())
            problem = spec.problem(name, value)
            if problem:
                raise RunnerError(f"{self.name}: {problem}")
            dtype = dtype_name(value)
            wanted = spec.dtype or (self.input_float_type if is_float(dtype) else None)
            cast_to = wanted if wanted is not None and wanted != dtype else None
            by_value = by_value or (cast_to is not None and not is_float(dtype))  # integers that fit
            plan[name] = cast_to
        return plan, by_value

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

    def run_impl(self, feed: dict[str, Any]) -> Mapping[str, Any]:
        """A checked feed's outputs, named, as the runner's tensors on its device."""
        return self.outputs_impl(self.run_prepared_impl(self.prepare_impl(feed)))

    def infer_impl(self, feed: dict[str, np.ndarray]) -> Mapping[str, Any]:
        """Outputs by name in any library (``infer`` brings them to the host): ``run_impl``'s unless
        a runner has a cheaper way to host arrays."""
        return self.run_impl(feed)

    def prepare_impl(self, feed: dict[str, np.ndarray]) -> Any:
        return feed

    def run_prepared_impl(self, prepared: Any) -> Any:
        if type(self).infer_impl is Runner.infer_impl:
            raise NotImplementedError(f"{self.name}: a runner implements run_prepared_impl or infer_impl")
        return self.infer_impl(prepared)  # a runner written before ``run``: its outputs are its own

    def outputs_impl(self, result: Any) -> Mapping[str, Any]:
        """``run_prepared``'s result as outputs by name (it is a mapping already by default)."""
        return result

    def synchronize_impl(self) -> None:
        pass


def _signature(feed: Mapping[str, Any]) -> Any:
    """What decides a feed's check: each input's name, library, type and shape; None when some
    input has none to go by (a list)."""
    try:
        key = tuple([(name, type(value), value.dtype, value.shape) for name, value in feed.items()])
        hash(key)
    except (AttributeError, TypeError):
        return None
    return key


def host_array(value: Any) -> np.ndarray:
    """A tensor of any library as a host numpy array, float16 and bfloat16 as float32 (numpy's
    interchange: files, processes, comparisons with a reference)."""
    from navbuild.tensors import to_numpy

    array = to_numpy(value)
    return array.astype("float32") if array.dtype == "float16" else array


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
