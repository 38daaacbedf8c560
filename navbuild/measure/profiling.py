"""Profiling: latency percentiles and throughput of a runner (or any callable) per batch size.

For each batch size the profiler builds a batch by tiling the sample along the batch dimension,
places it on the device once (``runner.prepare``), warms up, then measures windows of timed calls
(``run_prepared`` followed by ``synchronize``). A window's length follows the call time measured
during the warm-up (a slow call gets few runs per window, a fast one many). Windows run until the
last ``stabilization_windows`` window medians agree within ``stability_pct`` of their median
(``ended: "stable"``), until ``max_trials`` windows ran (``"max_trials"``), until the point's share
of the target's time budget is spent (``"budget"``), or, after two windows at its first batch size,
when the target is many times slower than the best already measured for the same model and batch
(``"slower"``: the target stops there). Figures come from the calls of the last windows; throughput is
``batch / median latency``, so a few outliers cannot rule it.

Batch sizes are an explicit list, or a sweep over powers of two up to ``max_batch_size`` that stops
once throughput grows by less than ``throughput_cutoff_pct`` for ``throughput_backoff_limit``
consecutive steps. An out-of-memory error ends the sweep cleanly and records the limit; on a GPU an
optional search keeps doubling the batch (untimed) until memory runs out.

No framework is imported here: tensors are handled by duck typing, and the CUDA helpers import
torch only when they are used.
"""
from __future__ import annotations

import gc
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping, Sequence

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where measuring happens: reading a ProfileConfig must stay cheap
    import numpy as np

RESULT_FORMAT = "navbuild-profile/2"
READABLE_FORMATS = ("navbuild-profile/1", RESULT_FORMAT)  # /1 lacks the spread: it reads as 0
PERCENTILES = (25, 50, 75, 90, 95, 99)
OOM_PROBE_RUNS = 2  # untimed calls per batch size during the max-batch-size search
# seconds of measuring per profiled target when [profile] budget_s is not set: a CPU quick start
# stays short, a GPU (fast calls, large batches worth measuring) gets more
DEFAULT_BUDGET_S = {"cpu": 3.0, "cuda": 15.0}
ENDED = ("stable", "max_trials", "budget", "slower")

# timer(run, sync) -> seconds of one call; `run` is the inference, `sync` waits for the device
Timer = Callable[[Callable[[], Any], Callable[[], None]], float]
Progress = Callable[["ProgressEvent"], None]
# batch size -> (best throughput already measured for the same model, the target that measured it)
Baseline = Mapping[int, tuple[float, str]]


class ProfileError(RuntimeError):
    """A runner failed for a reason other than running out of memory."""


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileConfig:
    """How to measure (docs/profiling.md compares the defaults with Model Navigator 0.14's).

    batch_sizes              explicit batch sizes (measured in increasing order), or None: sweep
    max_batch_size           top of the sweep (powers of two up to it, and it); None: the runner's
                             model ``max_batch_size``, else ``DEFAULT_MAX_BATCH_SIZE``
    budget_s                 seconds of measuring per target (warm-ups included, but not the first
                             call at each batch size: a JIT compiles there, it measures nothing),
                             shared by its batch sizes; None: ``DEFAULT_BUDGET_S`` of the device;
                             0: no budget
    warmup_runs, warmup_s    untimed-for-figures calls before the first window of each batch size:
                             at least this many runs and this much measured time, then until the
                             last ``min(3, warmup_runs)`` calls agree (a JIT compiles during its
                             first calls at a shape)...
    max_warmup_s             ...or this much is measured. Warm-up counts against the budget, but
                             is not cut short by it: a point always warms up, then runs a window
    window_s                 the measured time a window aims at: its run count is this divided by
                             the call time measured during the warm-up (then the last window)...
    min_window_runs          ...but at least this many runs (so a slow call still gets a median)
    max_window_runs          ...and at most this many (guards against a zero-time timer)
    stability_pct            a point is stable when the last ``stabilization_windows`` window
    stabilization_windows    medians are each within ``stability_pct`` % of their median
    min_trials, max_trials   windows per point: at least / at most
    slower_than_best         stop a target after its first batch size's first two windows when
                             the best throughput already measured for the same model and batch
                             size is this many times higher in both (it cannot be selected); 0: never
    throughput_cutoff_pct    sweep: a step "does not pay" when throughput grows less than this
    throughput_backoff_limit sweep: stop after this many consecutive steps that do not pay
    find_max_batch_size      on a GPU, after the sweep, double the batch (untimed) until
    max_batch_search_limit   out-of-memory or this limit, and record the largest that fit
    timer                    "wall" (perf_counter around run + synchronize) or "cuda-events"
    axis_sizes               sizes of dynamic axes to measure too, by label: ``{"seq": [16, 128]}``;
                             each size is a batch loop of its own on the first sample resized to it
                             (``axis_sweep.py``), sharing the budget with the samples' own shape
    """

    batch_sizes: tuple[int, ...] | None = None
    max_batch_size: int | None = None
    budget_s: float | None = None
    warmup_runs: int = 3
    warmup_s: float = 0.05
    max_warmup_s: float = 1.0
    window_s: float = 0.05
    min_window_runs: int = 3
    max_window_runs: int = 10_000
    stability_pct: float = 10.0
    stabilization_windows: int = 3
    min_trials: int = 3
    max_trials: int = 10
    slower_than_best: float = 10.0
    throughput_cutoff_pct: float = 5.0
    throughput_backoff_limit: int = 2
    find_max_batch_size: bool = False
    max_batch_search_limit: int = 1024
    timer: str = "wall"
    axis_sizes: Mapping[str, tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        # one encoding per meaning in the key: `stability_pct = 10` in TOML is the default 10.0
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if "float" in f.type:
                    object.__setattr__(self, f.name, float(value))
                elif f.type == "int":
                    object.__setattr__(self, f.name, int(value))
        if self.batch_sizes is not None:
            sizes = tuple(sorted({int(b) for b in self.batch_sizes}))
            if not sizes or sizes[0] < 1:
                raise ValueError(f"profile batch_sizes must be positive integers, got {self.batch_sizes}")
            object.__setattr__(self, "batch_sizes", sizes)
        for name in ("min_window_runs", "max_window_runs", "stabilization_windows", "min_trials",
                     "max_trials", "throughput_backoff_limit", "max_batch_search_limit"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"profile {name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"profile max_batch_size must be >= 1, got {self.max_batch_size}")
        for name in ("warmup_runs", "warmup_s", "max_warmup_s", "window_s", "stability_pct",
                     "throughput_cutoff_pct", "slower_than_best"):
            if getattr(self, name) < 0:
                raise ValueError(f"profile {name} must be >= 0, got {getattr(self, name)}")
        if self.budget_s is not None and self.budget_s < 0:
            raise ValueError(f"profile budget_s must be >= 0 (0: no budget), got {self.budget_s}")
        if self.max_window_runs < self.min_window_runs:
            raise ValueError(f"profile max_window_runs ({self.max_window_runs}) must be >= min_window_runs "
                             f"({self.min_window_runs})")
        if self.max_trials < max(self.min_trials, self.stabilization_windows):
            raise ValueError(f"profile max_trials ({self.max_trials}) must be >= min_trials "
                             f"({self.min_trials}) and stabilization_windows ({self.stabilization_windows})")
        if self.timer not in ("wall", "cuda-events"):
            raise ValueError(f"profile timer must be 'wall' or 'cuda-events', got {self.timer!r}")
        if self.axis_sizes is not None:
            object.__setattr__(self, "axis_sizes", checked_axis_sizes(self.axis_sizes))

    def as_key(self) -> dict[str, Any]:
        """Every field, JSON/msgpack-able: what enters a profile target's action key."""
        out = asdict(self)
        out["batch_sizes"] = list(self.batch_sizes) if self.batch_sizes is not None else None
        if self.axis_sizes is None:
            del out["axis_sizes"]  # unset: the key of a profile that sweeps no axis stays as it was
        else:
            out["axis_sizes"] = {label: list(sizes) for label, sizes in self.axis_sizes.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfileConfig":
        """From a navbuild.toml table or ``as_key()``; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown profile option(s) {unknown}; known: {sorted(known)}")
        values = dict(data)
        if values.get("batch_sizes") is not None:
            values["batch_sizes"] = tuple(values["batch_sizes"])
        return cls(**values)

    def plan(self, default_max: int | None = None) -> tuple[list[int], bool]:
        """The batch sizes to try and whether they form a sweep (subject to the saturation stop)."""
        if self.batch_sizes is not None:
            return list(self.batch_sizes), False
        top = self.max_batch_size or default_max or DEFAULT_MAX_BATCH_SIZE
        sizes = [1 << k for k in range(top.bit_length()) if (1 << k) <= top]
        if sizes[-1] != top:
            sizes.append(top)
        return sizes, True

    def budget(self, device: str) -> float | None:
        """Seconds of measuring per target on ``device``; None: unlimited."""
        budget = self.budget_s if self.budget_s is not None else DEFAULT_BUDGET_S.get(
            "cuda" if device.startswith("cuda") else "cpu")
        return budget or None

    def resolved(self, device: str, default_max: int | None) -> dict[str, Any]:
        """What this config measures for one target: its batch plan and budget (for its key)."""
        sizes, sweep = self.plan(default_max)
        return {"batch_plan": sizes, "sweep": sweep, "budget_s": self.budget(device)}


DEFAULT_MAX_BATCH_SIZE = 64


def checked_axis_sizes(value: Any) -> dict[str, tuple[int, ...]]:
    """``{label: sizes}``: each label a name, its sizes positive integers (sorted, once each)."""
    if not isinstance(value, Mapping):
        raise ValueError(f'profile axis_sizes must be a table of dynamic-axis labels, e.g. {{ seq = [16, 128] }}, '
                         f'not {value!r}')
    checked = {}
    for label, sizes in value.items():
        if (not isinstance(sizes, (list, tuple)) or not sizes
                or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes)):
            raise ValueError(f"profile axis_sizes.{label} must be a list of sizes >= 1, not {sizes!r}")
        checked[str(label)] = tuple(sorted(set(sizes)))
    return checked


# -- results -------------------------------------------------------------------------------------
def round_sig(value: float, digits: int = 5) -> float:
    """Round to significant digits: 0.0123456 -> 0.012346, 123456.7 -> 123460.0."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits}g}")


@dataclass
class ProfilePoint:
    """Figures for one batch size; latencies in milliseconds, throughput in samples per second.

    throughput   ``batch_size / p50``: the median call, robust to the outliers a busy machine adds
    spread_pct   how far the median can be trusted: the range of the kept windows' medians
                 relative to their median (with fewer than three windows, of the medians of three
                 consecutive blocks of the kept calls). Selection treats figures closer than this
                 as equal.
    ended        why measuring stopped: "stable", "max_trials" (not stable), "budget" (its share
                 of the time budget was spent first) or "slower" (stopped after two windows: many
                 times slower than the best target already measured at this batch size)
    """

    batch_size: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float
    windows: int  # windows run (trials)
    runs: int  # timed runs behind the figures (the last `stabilization_windows` windows)
    stable: bool
    window_medians_ms: list[float] = field(default_factory=list)
    p25_ms: float | None = None
    p75_ms: float | None = None
    spread_pct: float = 0.0
    ended: str = ""
    seconds: float = 0.0  # time charged to the budget: warm-up included, its first call not
    settled: bool = True  # the warm-up calls came to agree (else max_warmup_s ended the warm-up)

    def latency(self, which: str = "p50") -> float:
        """``p50``/``p90``/``p95``/``p99``/``mean``/``min``/``max`` latency in ms."""
        key = which.lower().removesuffix("_ms")
        try:
            return float(getattr(self, f"{key}_ms"))
        except (AttributeError, TypeError):
            raise ValueError(f"unknown latency figure {which!r}; use p50, p90, p95, p99, mean, min or max")

    @property
    def note(self) -> str:
        """A word for tables: "" when stable, else why it is not."""
        return {"stable": "", "budget": "budget reached", "slower": "stopped: slower",
                "max_trials": "unstable"}.get(self.ended, "" if self.stable else "unstable")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round_sig(value)
        out["window_medians_ms"] = [round_sig(v) for v in self.window_medians_ms]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfilePoint":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class ProfileResult:
    """A profile of one runner (or callable): one point per batch size that was measured.

    stop_reason  why the batch loop ended: "batch_sizes" (explicit list done), "max_batch_size"
                 (sweep reached its top), "throughput_saturated", "out_of_memory", "budget" (spent
                 before the next batch size: ``notes`` names those not measured), "slower_than_best"
                 (see ``ProfilePoint.ended``)
    budget_s     the time budget it ran under (None: unlimited)
    max_batch_size_found  the largest batch that ran, when memory ran out or the GPU search ran
    oom_batch_size        the batch size that ran out of memory (None if none did)
    """

    points: list[ProfilePoint]
    runner: str = ""
    device: str = "cpu"
    config: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = ""
    max_batch_size_found: int | None = None
    oom_batch_size: int | None = None
    oom_message: str | None = None
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    budget_s: float | None = None

    @property
    def stable(self) -> bool:
        return bool(self.points) and all(p.stable for p in self.points)

    @property
    def batch_sizes(self) -> list[int]:
        return [p.batch_size for p in self.points]

    def point(self, batch_size: int) -> ProfilePoint | None:
        return next((p for p in self.points if p.batch_size == batch_size), None)

    def best_throughput(self) -> ProfilePoint | None:
        return max(self.points, key=lambda p: (p.throughput, -p.batch_size), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULT_FORMAT,
            "runner": self.runner,
            "device": self.device,
            "stable": self.stable,
            "stop_reason": self.stop_reason,
            "max_batch_size_found": self.max_batch_size_found,
            "oom_batch_size": self.oom_batch_size,
            "oom_message": self.oom_message,
            "wall_s": round(self.wall_s, 3),
            "budget_s": self.budget_s,
            "notes": list(self.notes),
            "config": dict(self.config),
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfileResult":
        if data.get("format", RESULT_FORMAT) not in READABLE_FORMATS:
            raise ValueError(f"not a {RESULT_FORMAT} profile: format {data.get('format')!r}")
        return cls(
            points=[ProfilePoint.from_dict(p) for p in data.get("points", [])],
            runner=data.get("runner", ""),
            device=data.get("device", "cpu"),
            config=dict(data.get("config", {})),
            stop_reason=data.get("stop_reason", ""),
            max_batch_size_found=data.get("max_batch_size_found"),
            oom_batch_size=data.get("oom_batch_size"),
            oom_message=data.get("oom_message"),
            wall_s=float(data.get("wall_s", 0.0)),
            notes=list(data.get("notes", [])),
            budget_s=data.get("budget_s"),
        )


@dataclass(frozen=True)
class ProgressEvent:
    """What a progress callback receives.

    kind   "start" (a batch size begins), "window" (one window measured), "point" (a batch size
           done, ``point`` set), "oom" (memory ran out at ``batch_size``), "search" (GPU max batch
           search probing ``batch_size``), "done"
    step, total  batch sizes done so far / planned (an upper bound for sweeps)
    """

    kind: str
    batch_size: int | None = None
    step: int = 0
    total: int = 0
    window: int = 0
    max_windows: int = 0
    point: ProfilePoint | None = None
    message: str = ""


# -- timers --------------------------------------------------------------------------------------
def wall_timer(run: Callable[[], Any], sync: Callable[[], None]) -> float:
    """perf_counter around the call and the device synchronization: correct on CPU and CUDA."""
    start = time.perf_counter()
    run()
    sync()
    return time.perf_counter() - start


class CudaEventTimer:
    """CUDA events around the call on torch's current stream (imports torch when created).

    Only work queued on that stream is timed: use it for torch-based runners; runners that use
    their own streams (ONNX Runtime, TensorRT through cuda-python) need ``wall_timer``.
    """

    def __init__(self) -> None:
        import torch  # noqa: PLC0415 - lazy on purpose

        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def __call__(self, run: Callable[[], Any], sync: Callable[[], None]) -> float:
        self._start.record()
        run()
        self._end.record()
        sync()
        self._end.synchronize()
        return self._start.elapsed_time(self._end) / 1e3


def torch_cuda_sync() -> None:
    """torch.cuda.synchronize() when torch is loaded (it must be, if CUDA tensors exist)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.cuda.synchronize()


def _no_sync() -> None:
    pass


def _make_timer(config: ProfileConfig, device: str, timer: Timer | None) -> Timer:
    if timer is not None:
        return timer
    if config.timer == "cuda-events" and device.startswith("cuda"):
        return CudaEventTimer()
    return wall_timer


# -- out of memory -------------------------------------------------------------------------------
_OOM_TYPES = ("outofmemory", "resourceexhausted", "memoryerror")
_OOM_TEXT = ("out of memory", "oom when allocating", "failed to allocate memory",
             "cudaerrormemoryallocation", "cuda_error_out_of_memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Duck-typed: the exception (or its cause/context) is a framework's out-of-memory error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(word in type(current).__name__.lower() for word in _OOM_TYPES):
            return True
        text = str(current).lower()
        if any(phrase in text for phrase in _OOM_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def _release_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()
        except Exception:  # freeing memory is best effort
            pass


# -- batches -------------------------------------------------------------------------------------
def tile_array(array: np.ndarray, batch_size: int, batch_dim: int = 0) -> np.ndarray:
    """``array`` with ``batch_size`` entries along ``batch_dim``: sliced, or tiled by repetition."""
    import numpy as np
    array = np.asarray(array)
    if array.ndim == 0:
        return array
    have = array.shape[batch_dim]
    if have == batch_size:
        return array
    if have > batch_size:
        index = [slice(None)] * array.ndim
        index[batch_dim] = slice(0, batch_size)
        return np.ascontiguousarray(array[tuple(index)])
    return np.take(array, np.arange(batch_size) % have, axis=batch_dim)


def _is_tensor(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    return shape is not None and hasattr(value, "__getitem__") and len(tuple(shape)) > 0


def tile_value(value: Any, batch_size: int) -> Any:
    """Any tensor (numpy, torch, jax, tf) or nest of them (tuple, list, dict), tiled along dim 0.

    Non-tensor leaves pass through unchanged. Indexing with a numpy index array works on numpy,
    torch and jax tensors; TensorFlow's tensors go through ``tf.gather``.
    """
    import numpy as np
    if isinstance(value, Mapping):
        return {k: tile_value(v, batch_size) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(tile_value(v, batch_size) for v in value)
    if not _is_tensor(value):
        return value
    have = int(value.shape[0])
    if have == batch_size:
        return value
    if have > batch_size:
        return value[:batch_size]
    index = np.arange(batch_size) % have
    try:
        return value[index]
    except (TypeError, ValueError, IndexError):
        tf = sys.modules.get("tensorflow")
        if tf is None:
            raise
        return tf.gather(value, index)


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _leaves(v)
    elif _is_tensor(value):
        yield value


# -- measurement ---------------------------------------------------------------------------------
def _run_window(run: Callable[[], Any], sync: Callable[[], None], timer: Timer, min_runs: int,
                min_s: float, cap: int, limit_s: float | None = None, floor: int = 1) -> list[float]:
    """At least ``min_runs`` calls and ``min_s`` seconds of measured time, at most ``cap`` calls, and
    no call started once ``limit_s`` seconds are measured (past ``floor`` calls)."""
    latencies: list[float] = []
    total = 0.0
    while (len(latencies) < min_runs or total < min_s) and len(latencies) < cap:
        if limit_s is not None and total >= limit_s and len(latencies) >= floor:
            break
        elapsed = timer(run, sync)
        latencies.append(elapsed)
        total += elapsed
    return latencies


def _warm_up(run: Callable[[], Any], sync: Callable[[], None], timer: Timer,
             config: ProfileConfig) -> tuple[list[float], bool]:
    """Calls until ``warmup_runs`` and ``warmup_s`` are reached and the last ``min(3, warmup_runs)``
    calls agree (the slowest within ``WARMUP_SETTLED`` times the fastest: a JIT's first calls at a
    new shape compile, and can be a thousand times slower), or ``max_warmup_s`` is measured, or
    ``max_window_runs`` calls ran. Returns the calls and whether they settled."""
    latencies: list[float] = []
    last = min(3, config.warmup_runs)
    while len(latencies) < config.max_window_runs:
        done = len(latencies) >= config.warmup_runs and sum(latencies) >= config.warmup_s
        if done and (last == 0 or _settled(latencies[-last:])):
            return latencies, True
        if done and sum(latencies) >= config.max_warmup_s:
            break
        latencies.append(timer(run, sync))
    return latencies, last == 0 or _settled(latencies[-last:])


WARMUP_SETTLED = 1.5


def _settled(last: Sequence[float]) -> bool:
    return max(last) <= WARMUP_SETTLED * min(last)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def window_runs(call_s: float, config: ProfileConfig) -> int:
    """Runs in a window: ``window_s`` of calls that take ``call_s`` each, within the run limits."""
    if call_s <= 0:
        return config.max_window_runs
    wanted = math.ceil(round(config.window_s / call_s, 6))  # 0.003 / 0.0003 is 10, not 11
    return max(config.min_window_runs, min(config.max_window_runs, wanted))


def is_stable(window_medians: Sequence[float], count: int, stability_pct: float) -> bool:
    """The last ``count`` window medians are each within ``stability_pct`` % of their median."""
    if len(window_medians) < count:
        return False
    last = list(window_medians[-count:])
    center = _median(last)
    if center <= 0:
        return True
    return all(abs(v - center) / center * 100.0 <= stability_pct for v in last)


def measure_point(run: Callable[[], Any], sync: Callable[[], None], batch_size: int,
                  config: ProfileConfig, timer: Timer = wall_timer,
                  on_window: Callable[[int], None] | None = None, budget_s: float | None = None,
                  best_elsewhere: float | None = None) -> ProfilePoint:
    """Warm up, then measure windows until stable, ``max_trials``, ``budget_s`` spent, or, when
    ``best_elsewhere`` (samples/s) is more than ``slower_than_best`` times (widened by the spread)
    the throughput of each of this target's first two windows after a settled warm-up, right after
    the second. Figures come from the last windows.

    Time is what the timer measured (warm-up included), not the wall clock: the budget then means
    the same with a scripted timer, and a call always finishes its window.
    """
    import numpy as np

    warmup, settled = _warm_up(run, sync, timer, config)
    # the first call at a shape is where a JIT compiles (seconds for jax.jit or a traced SavedModel
    # on a busy CPU): charged to the budget, it would leave nothing to measure the next batch sizes
    charged = lambda: sum(warmup[1:]) + sum(map(sum, windows))  # noqa: E731
    call_s = _median(warmup[-3:]) if warmup else 0.0  # the settled calls
    needed = max(config.min_trials, config.stabilization_windows)
    windows: list[list[float]] = []
    medians: list[float] = []
    ended = "max_trials"
    while len(windows) < config.max_trials:
        if not windows and not warmup:  # no warm-up: size the first window by one call
            warmup = [timer(run, sync)]
            call_s = warmup[0]
        left = None if budget_s is None else budget_s - charged()
        window = _run_window(run, sync, timer, window_runs(call_s, config), 0.0, config.max_window_runs,
                             limit_s=left, floor=config.min_window_runs)
        windows.append(window)
        medians.append(_median(window))
        call_s = medians[-1]
        if on_window is not None:
            on_window(len(windows))
        if len(windows) >= needed and is_stable(medians, config.stabilization_windows, config.stability_pct):
            ended = "stable"
            break
        if len(windows) <= 2 and settled and best_elsewhere and config.slower_than_best:
            if all(_far_slower(w, batch_size, best_elsewhere, config.slower_than_best) for w in windows):
                if len(windows) == 2:  # two windows agree: not a JIT recompiling for a while
                    ended = "slower"
                    break
                continue  # confirm with a second window, whatever the budget says
        if budget_s is not None and charged() >= budget_s:
            ended = "budget"
            break
    kept_windows = windows[-config.stabilization_windows:]
    kept = np.concatenate([np.asarray(w, dtype=np.float64) for w in kept_windows]) * 1e3
    p25, p50, p75, p90, p95, p99 = (float(v) for v in np.percentile(kept, PERCENTILES))
    mean = float(kept.mean())
    spread = _spread(*kept_windows)
    return ProfilePoint(
        batch_size=batch_size, mean_ms=mean, std_ms=float(kept.std()), min_ms=float(kept.min()),
        max_ms=float(kept.max()), p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99,
        throughput=batch_size / (p50 / 1e3) if p50 > 0 else 0.0,
        windows=len(windows), runs=int(kept.size), stable=ended == "stable",
        window_medians_ms=[m * 1e3 for m in medians], p25_ms=p25, p75_ms=p75, spread_pct=spread * 100.0,
        ended=ended, seconds=charged(), settled=settled)


def _far_slower(window: list[float], batch_size: int, best: float, factor: float) -> bool:
    """The window's throughput is more than ``factor`` (widened by its spread) below ``best``."""
    median = _median(window)
    return median > 0 and best > factor * (1 + _spread(window)) * batch_size / median


SPREAD_BLOCKS = 3  # a point's spread is the range of at least this many medians


def _spread(*windows: list[float]) -> float:
    """The range of the windows' medians relative to their median (fewer than ``SPREAD_BLOCKS``
    windows: of the medians of that many consecutive blocks of their calls)."""
    if len(windows) < SPREAD_BLOCKS:
        windows = tuple(_blocks([v for w in windows for v in w], SPREAD_BLOCKS))
    medians = [_median(w) for w in windows if w]
    center = _median(medians) if medians else 0.0
    return (max(medians) - min(medians)) / center if center > 0 else 0.0


def _blocks(values: list[float], count: int) -> list[list[float]]:
    """``values`` cut into ``count`` consecutive blocks (fewer when there are fewer values)."""
    count = min(count, len(values))
    if count == 0:
        return []
    size, extra = divmod(len(values), count)
    blocks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        blocks.append(values[start:end])
        start = end
    return blocks


def _saturated(points: Sequence[ProfilePoint], config: ProfileConfig) -> bool:
    """The last ``throughput_backoff_limit`` steps each grew throughput by < the cutoff."""
    limit = config.throughput_backoff_limit
    if len(points) <= limit:
        return False
    for prev, cur in zip(points[-limit - 1:-1], points[-limit:]):
        if cur.throughput >= prev.throughput * (1 + config.throughput_cutoff_pct / 100.0):
            return False
    return True


def run_profile(make_call: Callable[[int], Callable[[], Any]], sync: Callable[[], None],
                config: ProfileConfig, *, device: str = "cpu", runner_name: str = "",
                timer: Timer | None = None, progress: Progress | None = None,
                default_max: int | None = None, baseline: Baseline | None = None) -> ProfileResult:
    """The batch loop shared by ``profile_runner`` and ``profile``.

    ``make_call(batch_size)`` prepares a batch (inputs placed on the device) and returns the call
    to time. An out-of-memory error in it or in the call ends the loop cleanly; any other error is
    raised as ProfileError naming the batch size. The time budget is shared by the batch sizes
    still to measure (what one leaves unspent goes to the next); once it is spent, the batch sizes
    left are not measured. ``baseline`` gives, per batch size, the best throughput other targets
    of the model measured (``slower_than_best``).
    """
    started = time.perf_counter()
    timer = _make_timer(config, device, timer)
    emit = progress or (lambda event: None)
    plan, sweep = config.plan(default_max)
    budget = config.budget(device)
    baseline = baseline or {}
    result = ProfileResult(points=[], runner=runner_name, device=device, config=config.as_key(), budget_s=budget)
    result.stop_reason = "max_batch_size" if sweep else "batch_sizes"
    for step, batch_size in enumerate(plan):
        emit(ProgressEvent("start", batch_size, step, len(plan), 0, config.max_trials))
        share = None
        if budget is not None:
            spent = sum(p.seconds for p in result.points)
            if spent >= budget and result.points:
                result.stop_reason = "budget"
                result.notes.append(f"batch sizes {', '.join(map(str, plan[step:]))} not measured: the "
                                    f"{budget:g} s budget was spent")
                break
            share = (budget - spent) / (len(plan) - step)
        # only a target's first batch size can stop it: a JIT recompiling at a later shape can be
        # hundreds of times slower for a while, which says nothing of the target
        best, best_target = baseline.get(batch_size, (None, "")) if step == 0 else (None, "")
        call = None
        try:
            call = make_call(batch_size)
            point = measure_point(call, sync, batch_size, config, timer, on_window=lambda w, b=batch_size, s=step: emit(
                ProgressEvent("window", b, s, len(plan), w, config.max_trials)), budget_s=share, best_elsewhere=best)
        except Exception as exc:  # noqa: BLE001 - OOM is data, anything else is re-raised
            call = None
            if not is_out_of_memory(exc):
                raise ProfileError(f"{runner_name or 'profile'}: batch size {batch_size}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            _release_memory()
            _record_oom(result, batch_size, exc, max(result.batch_sizes, default=0))
            result.stop_reason = "out_of_memory"
            emit(ProgressEvent("oom", batch_size, step, len(plan), message=result.oom_message or ""))
            break
        finally:
            del call
        result.points.append(point)
        emit(ProgressEvent("point", batch_size, step + 1, len(plan), point.windows, config.max_trials, point))
        if point.ended == "slower":
            result.stop_reason = "slower_than_best"
            result.notes.append(f"stopped after two windows at batch {batch_size}: {point.throughput:.4g}/s, "
                                f"{best / point.throughput:.0f}x slower than {best_target or 'another target'} "
                                f"({best:.4g}/s)")
            break
        if sweep and _saturated(result.points, config):
            result.stop_reason = "throughput_saturated"
            break
    if config.find_max_batch_size and result.oom_batch_size is None:
        if device.startswith("cuda"):
            _search_max_batch(make_call, sync, config, result, emit)
        else:
            result.notes.append("max batch size search skipped: it runs on GPUs only")
    result.wall_s = time.perf_counter() - started
    emit(ProgressEvent("done", None, len(result.points), len(result.points)))
    return result


def _record_oom(result: ProfileResult, batch_size: int, exc: BaseException, last_ok: int) -> None:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    result.oom_batch_size = batch_size
    result.oom_message = f"{type(exc).__name__}: {first_line}"[:300]
    result.max_batch_size_found = last_ok or None


def _search_max_batch(make_call: Callable[[int], Callable[[], Any]], sync: Callable[[], None],
                      config: ProfileConfig, result: ProfileResult, emit: Progress) -> None:
    """Double the batch from the largest measured one, untimed, until out of memory or the limit."""
    largest = max(result.batch_sizes, default=0)
    result.max_batch_size_found = largest or None
    batch_size = max(1, largest * 2)
    while batch_size <= config.max_batch_search_limit:
        emit(ProgressEvent("search", batch_size, len(result.points), len(result.points)))
        call = None
        try:
            call = make_call(batch_size)
            for _ in range(OOM_PROBE_RUNS):
                call()
                sync()
        except Exception as exc:  # noqa: BLE001 - the search is exploratory: never fail the build
            call = None
            _release_memory()
            if is_out_of_memory(exc):
                _record_oom(result, batch_size, exc, result.max_batch_size_found or 0)
                emit(ProgressEvent("oom", batch_size, message=result.oom_message or ""))
            else:
                result.notes.append(f"max batch size search stopped at {batch_size}: "
                                    f"{type(exc).__name__}: {exc}"[:300])
            return
        finally:
            del call
        result.max_batch_size_found = batch_size
        batch_size *= 2
    result.notes.append(f"max batch size search reached its limit ({config.max_batch_search_limit}) "
                        "without running out of memory")


# -- public entry points -------------------------------------------------------------------------
def profile_runner(runner: Any, sample: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]],
                   config: ProfileConfig | None = None, device: str | None = None,
                   progress: Progress | None = None, timer: Timer | None = None,
                   batch_dim: int = 0, baseline: Baseline | None = None) -> ProfileResult:
    """Profile a navbuild Runner on one sample (dict name -> array, batch dimension first).

    Activates the runner if it is not active (and deactivates it afterwards only then). Per batch
    size: ``runner.prepare(feed)`` once, then timed ``run_prepared`` + ``synchronize`` calls.
    ``baseline``: see ``run_profile``.
    """
    config = config or ProfileConfig()
    if not isinstance(sample, Mapping):
        sample = list(sample)[0]
    device = device or getattr(runner, "device", "cpu")
    model = getattr(runner, "model", None)
    default_max = getattr(model, "max_batch_size", None)

    def make_call(batch_size: int) -> Callable[[], Any]:
        feed = {name: tile_array(value, batch_size, batch_dim) for name, value in sample.items()}
        prepared = runner.prepare(feed)
        return lambda: runner.run_prepared(prepared)

    was_active = bool(getattr(runner, "active", False))
    if not was_active:
        runner.activate()
    try:
        return run_profile(make_call, runner.synchronize, config, device=device,
                           runner_name=getattr(runner, "name", type(runner).__name__), timer=timer,
                           progress=progress, default_max=default_max, baseline=baseline)
    finally:
        if not was_active:
            runner.deactivate()


def _detect_device(sample: Any) -> str:
    for leaf in _leaves(sample):
        text = str(getattr(leaf, "device", ""))
        if "cuda" in text or "gpu" in text.lower():
            return "cuda"
    return "cpu"


def call_with(func: Callable[..., Any], sample: Any) -> Any:
    """Model Navigator's calling convention: a tuple is ``*args``, a dict ``**kwargs``, else one arg."""
    if isinstance(sample, tuple):
        return func(*sample)
    if isinstance(sample, Mapping):
        return func(**sample)
    return func(sample)


def profile(func: Callable[..., Any], dataloader: Iterable[Any], config: ProfileConfig | None = None,
            *, device: str | None = None, sync: Callable[[], None] | None = None,
            timer: Timer | None = None, progress: Progress | None = None,
            name: str | None = None) -> ProfileResult:
    """Profile any Python callable (Model Navigator's ``nav.profile``).

    The first sample of ``dataloader`` is tiled or sliced along dim 0 to each batch size and passed
    with ``call_with``: ``profile(lambda x: model(x), [torch.randn(4, 8)])``. Tensors may live on
    any device; on CUDA (detected from the tensors, or ``device="cuda"``) every call is followed by
    ``torch.cuda.synchronize()`` unless ``sync`` is given.
    """
    config = config or ProfileConfig()
    iterator = iter(dataloader)
    try:
        sample = next(iterator)
    except StopIteration:
        raise ValueError("profile: the dataloader yielded no sample") from None
    device = device or _detect_device(sample)
    if sync is None:
        sync = torch_cuda_sync if device.startswith("cuda") else _no_sync
    default_max = None
    if config.batch_sizes is None and config.max_batch_size is None:
        first = next(iter(_leaves(sample)), None)
        default_max = max(DEFAULT_MAX_BATCH_SIZE, int(first.shape[0])) if first is not None else None

    def make_call(batch_size: int) -> Callable[[], Any]:
        batch = tile_value(sample, batch_size)
        return lambda: call_with(func, batch)

    return run_profile(make_call, sync, config, device=device,
                       runner_name=name or getattr(func, "__name__", "callable"), timer=timer,
                       progress=progress, default_max=default_max)
