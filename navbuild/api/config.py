"""``OptimizeConfig``, ``Format``, ``DeviceKind`` and the strategies: the Python face of navbuild.toml.

An OptimizeConfig is not validated by code of its own: ``model_table`` and ``project_table`` turn
its fields into the tables of navbuild.toml, and the engine's validator (``engine.config.from_mapping``)
checks them. Its ConfigErrors come back here and are renamed after the field they came from
(``OptimizeConfig: target_formats: unknown format 'onix'``), so both faces give the same messages.
"""
from __future__ import annotations

import copy
import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from navbuild.engine.config import ConfigError
from navbuild.measure.selection import MaxThroughput, MaxThroughputUnderLatencyBudget, MinLatency, Strategy

LABEL = "OptimizeConfig"
DEFAULT_SAMPLE_COUNT = 100  # Model Navigator's default too
# What a model gets when no target_formats are given: for torch the eager model as the baseline,
# the portable exports, and TensorRT (skipped with the reason where it is not installed).
DEFAULT_FORMATS = {"torch": ("torch", "torchscript-trace", "torch-export", "onnx", "trt"),
                   "onnx": ("onnx", "trt"), "tensorflow": ("savedmodel", "onnx", "tf-trt", "trt"),
                   "jax": ("jax-jit", "savedmodel", "onnx", "tf-trt", "trt")}


class Format(str, enum.Enum):
    """Target formats by name (a plain string works as well: ``"onnx"`` is ``Format.ONNX``)."""

    TORCH = "torch"
    TORCHSCRIPT = "torchscript-trace"  # Model Navigator's TorchScript; its trace flavour
    TORCHSCRIPT_TRACE = "torchscript-trace"
    TORCHSCRIPT_SCRIPT = "torchscript-script"
    TORCH_EXPORTEDPROGRAM = "torch-export"
    ONNX = "onnx"
    TORCH_COMPILE = "torch-compile"
    AOTI = "aoti"
    TENSORRT = "trt"
    TORCH_TRT = "torch-trt"
    ORT_TENSORRT = "ort-trt"
    ORT_CUDA = "ort-cuda"

    def __str__(self) -> str:
        return self.value


class DeviceKind(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"
    AUTO = "auto"  # cuda when a GPU is present

    def __str__(self) -> str:
        return self.value


# Strategies under the names Model Navigator users know; strings work too ("max-throughput").
MaxThroughputStrategy = MaxThroughput
MinLatencyStrategy = MinLatency


class MaxThroughputWithLatencyBudgetStrategy(MaxThroughputUnderLatencyBudget):
    """Highest throughput whose latency percentile (p95 by default) fits ``latency_budget`` ms."""

    def __init__(self, latency_budget: float, percentile: str = "p95") -> None:
        super().__init__(latency_budget, percentile)


def strategy_of(value: Strategy | str | Callable[..., Any] | None, default: str) -> Strategy:
    from navbuild.measure.selection import parse_strategy

    return parse_strategy(default if value is None else value)


@dataclass
class OptimizeConfig:
    """What to build and how to check and measure it (the fields map onto navbuild.toml keys).

    target_formats      formats to build (``Format`` members or names); None: DEFAULT_FORMATS
    target_precisions   precisions each format builds where its rule supports them (``[targets] precisions``;
                        "tf32": fp32 with TF32 math, on an Ampere-or-newer GPU)
    target_device       "cpu", "cuda" or "auto" (a ``DeviceKind``)
    runners             keep only the formats these runners run: Model Navigator's names ("TensorRT",
                        "OnnxCUDA", "TorchCompileCUDA"...; they also set an ``auto`` device) or
                        navbuild's ("onnxruntime"); an unknown name is an error listing both
    batching            False fixes the batch (dimension 0) at 1: ``max_batch_size = 1``
    max_batch_size      the largest batch exports accept; None: the largest batch in the samples; 0: the
                        model has no batch dimension (shapes as the samples give them)
    sample_count        at most this many samples are taken from the dataloader
    input_names, output_names   names of the model's inputs and outputs (default: derived)
    dynamic_axes        non-batch axes that vary, ``{input: {axis: label}}`` or with bounds
                        ``{input: {axis: {"name": label, "min": 1, "max": 512}}}`` (default: the axes
                        whose size differs between samples, up to the largest size seen)
    atol, rtol          fp32 tolerances (``[correctness]``); ``correctness`` takes the whole table
                        (per precision, per output) as navbuild.toml writes it
    optimization_profile  profiling options (``[profile]``: a ProfileConfig or its fields as a mapping)
    profiling           False: build and check only, nothing is profiled or selected
    custom_configs      per-format options, ``{"onnx": {"opset": 18}}`` (``[targets.<format>]``)
    sources             for a model given as "file.py:function": the files it depends on (globs)
    workspace           the project root the API works in (default: the current directory); the
                        store and outputs live under it as for a navbuild.toml there
    store               the store's folder (default ``<workspace>/.navbuild``), e.g. a CI cache
    verify_func         ``fn(outputs, reference) -> bool`` over lists of dicts name -> array: a
                        target it refuses is not offered by get_runner/get_model
    verbose             echo every build's log
    retry_failed        run targets whose inputs failed before instead of replaying the recorded
                        failure (the CLI's ``--retry-failed``)
    """

    target_formats: Sequence[str | Format] | None = None
    target_precisions: Sequence[str] = ("fp32",)
    target_device: str | DeviceKind = DeviceKind.AUTO
    runners: Sequence[str] | None = None
    batching: bool = True
    max_batch_size: int | None = None
    sample_count: int = DEFAULT_SAMPLE_COUNT
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    dynamic_axes: Mapping[str, Mapping[int, Any]] | None = None
    atol: float | None = None
    rtol: float | None = None
    correctness: Mapping[str, Any] | None = None
    optimization_profile: Any = None
    profiling: bool = True
    custom_configs: Mapping[str, Mapping[str, Any]] | None = None
    sources: Sequence[str] | None = None
    workspace: str | Path | None = None
    store: str | Path | None = None
    verify_func: Callable[[list, list], bool] | None = None
    verbose: bool = False
    retry_failed: bool = False

    def clone(self, **changes: Any) -> "OptimizeConfig":
        copied = copy.copy(self)
        for name, value in changes.items():
            setattr(copied, name, value)
        return copied

    # -- checks the mapping cannot express ---------------------------------------------------------
    def check(self) -> None:
        """Fields that have no navbuild.toml key are checked here, with the same kind of message."""
        if not isinstance(self.batching, bool):
            raise ConfigError(LABEL, "batching", f"must be true or false, not {self.batching!r}")
        if not isinstance(self.sample_count, int) or isinstance(self.sample_count, bool) or self.sample_count < 1:
            raise ConfigError(LABEL, "sample_count", f"must be a positive integer, not {self.sample_count!r}")
        if self.verify_func is not None and not callable(self.verify_func):
            raise ConfigError(LABEL, "verify_func", "must be a function (outputs, reference) -> bool")
        if not isinstance(self.profiling, bool):
            raise ConfigError(LABEL, "profiling", f"must be true or false, not {self.profiling!r}")
        for name in ("target_formats", "target_precisions", "runners", "input_names", "output_names", "sources"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)):
                raise ConfigError(LABEL, name, f"must be a sequence of names, not the string {value!r}",
                                  f"write ({value!r},)")

    # -- the navbuild.toml tables ----------------------------------------------------------------
    def formats(self, known: Mapping[str, Any], framework: str = "torch") -> list[str]:
        """The format names, filtered by ``runners`` (``known``: format name -> Rule)."""
        wanted = DEFAULT_FORMATS.get(framework, ()) if self.target_formats is None else self.target_formats
        names = list(dict.fromkeys(_name(f) for f in _as_tuple(wanted)))
        if self.runners is not None:
            from navbuild.api.runners import formats_run_by

            names = formats_run_by([_name(r) for r in _as_tuple(self.runners)], names, known)
        return names

    def device(self) -> str:
        """``target_device``, or the device of the named Model Navigator runners when it is ``auto``."""
        device = _name(self.target_device)
        if self.runners is None:
            return device
        from navbuild.api.runners import device_of

        return device_of([_name(r) for r in _as_tuple(self.runners)], device)

    def model_table(self, *, framework: str, entry: str, samples: str, sources: Sequence[str],
                    inputs: Sequence[str], outputs: Sequence[str], max_batch_size: int,
                    dynamic_axes: Mapping[str, Mapping[int, Any]], known: Mapping[str, Any]) -> dict[str, Any]:
        """``[models.<name>]`` for one model whose entry and samples the API prepared."""
        targets: dict[str, Any] = {"formats": self.formats(known, framework),
                                   "precisions": [_name(p) for p in _as_tuple(self.target_precisions)]}
        for fmt, options in (self.custom_configs or {}).items():
            targets[_name(fmt)] = dict(options) if isinstance(options, Mapping) else options
        table: dict[str, Any] = {
            "framework": framework, "entry": entry, "samples": samples, "sources": list(sources),
            "max_batch_size": 1 if not self.batching else max_batch_size,
            "device": self.device(), "targets": targets,
        }
        if inputs:
            table["inputs"] = list(inputs)
        if outputs:
            table["outputs"] = list(outputs)
        if dynamic_axes:
            table["dynamic_axes"] = {name: {str(axis): dict(label) if isinstance(label, Mapping) else label
                                            for axis, label in axes.items()}
                                     for name, axes in dynamic_axes.items()}
        correctness = self.correctness_table()
        if correctness:
            table["correctness"] = correctness
        return table

    def correctness_table(self) -> dict[str, Any]:
        table = copy.deepcopy(dict(self.correctness or {}))
        for name in ("atol", "rtol"):
            if getattr(self, name) is not None:
                table[name] = getattr(self, name)
        return table

    def project_table(self, name: str) -> dict[str, Any]:
        """``[project]`` and ``[profile]`` of the project the API builds in."""
        project: dict[str, Any] = {"name": name, "device": _name(self.target_device)}
        if self.store is not None:  # the caller's own choice, e.g. a CI cache outside the workspace
            project["store"] = str(self.store)
            project["allow_paths_outside"] = True
        return {"project": project, "profile": self.profile_table()}

    def profile_table(self) -> dict[str, Any]:
        options = self.optimization_profile
        if options is None:
            table: dict[str, Any] = {}
        elif hasattr(options, "as_key"):  # navbuild.measure.profiling.ProfileConfig
            table = dict(options.as_key())
        elif isinstance(options, Mapping):
            table = dict(options)
        else:
            raise ConfigError(LABEL, "optimization_profile", f"must be a ProfileConfig or a mapping of its "
                              f"fields, not {type(options).__name__}")
        if not self.profiling:
            table["enabled"] = False
        return table


def with_fields(config: OptimizeConfig | None, fields: Mapping[str, Any]) -> OptimizeConfig:
    """``config`` with ``fields`` (OptimizeConfig fields given as keywords, as Model Navigator's
    ``optimize`` takes them) set. A field that ``config`` already sets to another value is an error:
    neither silently wins."""
    import dataclasses

    known = {f.name: f for f in dataclasses.fields(OptimizeConfig)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(LABEL, unknown[0], "is not an optimize option", "use one of " + ", ".join(sorted(known)))
    if config is None:
        return OptimizeConfig(**fields)
    if not isinstance(config, OptimizeConfig):
        raise ConfigError(LABEL, "config", f"must be a navbuild.OptimizeConfig, not {type(config).__name__}")
    for name, value in fields.items():
        current, default = getattr(config, name), _default(known[name])
        if current != default and current != value:
            raise ConfigError(LABEL, name, f"given as a keyword ({value!r}) and in config ({current!r})",
                              "give it once")
    return config.clone(**fields)


def _default(field: Any) -> Any:
    import dataclasses

    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, enum.Enum)):
        return (value,)
    return tuple(value)


def _name(value: Any) -> str:
    return value.value if isinstance(value, enum.Enum) else value


# -- ConfigErrors renamed after the field --------------------------------------------------------
_FIELDS: list[tuple[str, str]] = [
    (r"project\.device|models\.[^.]+\.device|models\.[^.]+\.targets\.device", "target_device"),
    (r"project\.store", "store"),
    (r"models\.[^.]+\.targets\.formats", "target_formats"),
    (r"models\.[^.]+\.targets\.precisions", "target_precisions"),
    (r"models\.[^.]+\.targets\.(?P<fmt>[^.]+)(\..*)?", "custom_configs[{fmt!r}]"),
    (r"models\.[^.]+\.max_batch_size", "max_batch_size"),
    (r"models\.[^.]+\.inputs", "input_names"),
    (r"models\.[^.]+\.outputs", "output_names"),
    (r"models\.[^.]+\.dynamic_axes(\..*)?", "dynamic_axes"),
    (r"models\.[^.]+\.sources", "sources"),
    (r"models\.[^.]+\.entry", "model"),
    (r"models\.[^.]+\.samples", "dataloader"),
    (r"(models\.[^.]+\.)?correctness(\.(?P<rest>.*))?", "correctness"),
    (r"profile(\..*)?", "optimization_profile"),
]


def field_of(key: str) -> str:
    """The OptimizeConfig field (or optimize() argument) behind a navbuild.toml key."""
    for pattern, name in _FIELDS:
        match = re.fullmatch(pattern, key)
        if match:
            rest = match.groupdict().get("rest")
            if name == "correctness" and rest in ("atol", "rtol"):
                return rest
            return name.format(**{k: v for k, v in match.groupdict().items() if v is not None})
    return key


def renamed(error: ConfigError, label: str = LABEL) -> ConfigError:
    """The same error, naming the OptimizeConfig field instead of the navbuild.toml key."""
    return ConfigError(label, field_of(error.key), error.problem, error.fix)
