"""Profiling: latency percentiles and throughput of a runner (or any callable) per batch size.

For each batch size the profiler builds a batch by tiling the sample along the batch dimension,
places it on the device once (``runner.prepare``), warms up, then measures windows of timed calls
(``run_prepared`` followed by ``synchronize``) until the last ``stabilization_windows`` window
means agree within ``stability_pct`` of their mean, or ``max_trials`` windows have run (then the
point is reported with ``stable=False``). Figures come from the runs of those last windows.

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

RESULT_FORMAT = "navbuild-profile/1"
PERCENTILES = (50, 90, 95, 99)
OOM_PROBE_RUNS = 2  # untimed calls per batch size during the max-batch-size search

# timer(run, sync) -> seconds of one call; `run` is the inference, `sync` waits for the device
Timer = Callable[[Callable[[], Any], Callable[[], None]], float]
Progress = Callable[["ProgressEvent"], None]


class ProfileError(RuntimeError):
    """A runner failed for a reason other than running out of memory."""


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileConfig:
    """How to measure. Defaults are Model Navigator 0.14's, plus warm-up and a minimum window time.

    batch_sizes              explicit batch sizes (measured in increasing order), or None: sweep
    max_batch_size           top of the sweep (powers of two up to it, and it); None: the runner's
                             model ``max_batch_size``, else ``DEFAULT_MAX_BATCH_SIZE``
    warmup_runs, warmup_s    untimed-for-figures calls before the first window of each batch size:
                             at least this many runs and at least this much measured time
    window_size, min_window_s  a window is at least ``window_size`` runs AND at least
                             ``min_window_s`` seconds of measured time (tiny models get more runs,
                             so their window means are not timer noise)
    max_window_runs          cap on runs per window (guards against a zero-time timer)
    stability_pct            a point is stable when the last ``stabilization_windows`` window means
    stabilization_windows    are each within ``stability_pct`` % of their mean
    min_trials, max_trials   windows per point: at least / at most
    throughput_cutoff_pct    sweep: a step "does not pay" when throughput grows less than this
    throughput_backoff_limit sweep: stop after this many consecutive steps that do not pay
    find_max_batch_size      on a GPU, after the sweep, double the batch (untimed) until
    max_batch_search_limit   out-of-memory or this limit, and record the largest that fit
    timer                    "wall" (perf_counter around run + synchronize) or "cuda-events"
    """

    batch_sizes: tuple[int, ...] | None = None
    max_batch_size: int | None = None
    warmup_runs: int = 5
    warmup_s: float = 0.05
    window_size: int = 25
    min_window_s: float = 0.02
    max_window_runs: int = 100_000
    stability_pct: float = 10.0
    stabilization_windows: int = 3
    min_trials: int = 3
    max_trials: int = 10
    throughput_cutoff_pct: float = 5.0
    throughput_backoff_limit: int = 2
    find_max_batch_size: bool = False
    max_batch_search_limit: int = 1024
    timer: str = "wall"

    def __post_init__(self) -> None:
        # one encoding per meaning in the key: `stability_pct = 10` in TOML is the default 10.0
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "int") and isinstance(value, (int, float)) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value) if f.type == "float" else int(value))
        if self.batch_sizes is not None:
            sizes = tuple(sorted({int(b) for b in self.batch_sizes}))
            if not sizes or sizes[0] < 1:
                raise ValueError(f"profile batch_sizes must be positive integers, got {self.batch_sizes}")
            object.__setattr__(self, "batch_sizes", sizes)
        for name in ("window_size", "max_window_runs", "stabilization_windows", "min_trials",
                     "max_trials", "throughput_backoff_limit", "max_batch_search_limit"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"profile {name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"profile max_batch_size must be >= 1, got {self.max_batch_size}")
        for name in ("warmup_runs", "warmup_s", "min_window_s", "stability_pct", "throughput_cutoff_pct"):
            if getattr(self, name) < 0:
                raise ValueError(f"profile {name} must be >= 0, got {getattr(self, name)}")
        if self.max_trials < max(self.min_trials, self.stabilization_windows):
            raise ValueError(f"profile max_trials ({self.max_trials}) must be >= min_trials "
                             f"({self.min_trials}) and stabilization_windows ({self.stabilization_windows})")
        if self.timer not in ("wall", "cuda-events"):
            raise ValueError(f"profile timer must be 'wall' or 'cuda-events', got {self.timer!r}")

    def as_key(self) -> dict[str, Any]:
        """Every field, JSON/msgpack-able: what enters a profile target's action key."""
        out = asdict(self)
        out["batch_sizes"] = list(self.batch_sizes) if self.batch_sizes is not None else None
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


DEFAULT_MAX_BATCH_SIZE = 64


# -- results -------------------------------------------------------------------------------------
def round_sig(value: float, digits: int = 5) -> float:
    """Round to significant digits: 0.0123456 -> 0.012346, 123456.7 -> 123460.0."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits}g}")


@dataclass
class ProfilePoint:
    """Figures for one batch size; latencies in milliseconds, throughput in samples per second."""

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
    window_means_ms: list[float] = field(default_factory=list)

    def latency(self, which: str = "p50") -> float:
        """``p50``/``p90``/``p95``/``p99``/``mean``/``min``/``max`` latency in ms."""
        key = which.lower().removesuffix("_ms")
        try:
            return float(getattr(self, f"{key}_ms"))
        except AttributeError:
            raise ValueError(f"unknown latency figure {which!r}; use p50, p90, p95, p99, mean, min or max")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round_sig(value)
        out["window_means_ms"] = [round_sig(v) for v in self.window_means_ms]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfilePoint":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class ProfileResult:
    """A profile of one runner (or callable): one point per batch size that was measured.

    stop_reason  why the batch loop ended: "batch_sizes" (explicit list done), "max_batch_size"
                 (sweep reached its top), "throughput_saturated", "out_of_memory"
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
            "notes": list(self.notes),
            "config": dict(self.config),
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfileResult":
        if data.get("format", RESULT_FORMAT) != RESULT_FORMAT:
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
                min_s: float, cap: int) -> list[float]:
    latencies: list[float] = []
    total = 0.0
    while (len(latencies) < min_runs or total < min_s) and len(latencies) < cap:
        elapsed = timer(run, sync)
        latencies.append(elapsed)
        total += elapsed
    return latencies


def is_stable(window_means: Sequence[float], count: int, stability_pct: float) -> bool:
    """The last ``count`` window means are each within ``stability_pct`` % of their mean."""
    import numpy as np
    if len(window_means) < count:
        return False
    last = np.asarray(window_means[-count:], dtype=np.float64)
    center = float(last.mean())
    if center <= 0:
        return True
    return bool(np.all(np.abs(last - center) / center * 100.0 <= stability_pct))


def measure_point(run: Callable[[], Any], sync: Callable[[], None], batch_size: int,
                  config: ProfileConfig, timer: Timer = wall_timer,
                  on_window: Callable[[int], None] | None = None) -> ProfilePoint:
    """Warm up, then measure windows until stable or ``max_trials``; figures of the last windows."""
    import numpy as np
    _run_window(run, sync, timer, config.warmup_runs, config.warmup_s, config.max_window_runs)
    needed = max(config.min_trials, config.stabilization_windows)
    windows: list[list[float]] = []
    means: list[float] = []
    stable = False
    while len(windows) < config.max_trials:
        window = _run_window(run, sync, timer, config.window_size, config.min_window_s,
                             config.max_window_runs)
        windows.append(window)
        means.append(float(np.mean(window)))
        if on_window is not None:
            on_window(len(windows))
        if len(windows) >= needed and is_stable(means, config.stabilization_windows, config.stability_pct):
            stable = True
            break
    kept = np.concatenate([np.asarray(w, dtype=np.float64) for w in windows[-config.stabilization_windows:]]) * 1e3
    p50, p90, p95, p99 = (float(v) for v in np.percentile(kept, PERCENTILES))
    mean = float(kept.mean())
    return ProfilePoint(
        batch_size=batch_size, mean_ms=mean, std_ms=float(kept.std()), min_ms=float(kept.min()),
        max_ms=float(kept.max()), p50_ms=p50, p90_ms=p90, p95_ms=p95, p99_ms=p99,
        throughput=batch_size / (mean / 1e3) if mean > 0 else 0.0,
        windows=len(windows), runs=int(kept.size), stable=stable,
        window_means_ms=[m * 1e3 for m in means])


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
                default_max: int | None = None) -> ProfileResult:
    """The batch loop shared by ``profile_runner`` and ``profile``.

    ``make_call(batch_size)`` prepares a batch (inputs placed on the device) and returns the call
    to time. An out-of-memory error in it or in the call ends the loop cleanly; any other error is
    raised as ProfileError naming the batch size.
    """
    started = time.perf_counter()
    timer = _make_timer(config, device, timer)
    emit = progress or (lambda event: None)
    plan, sweep = config.plan(default_max)
    result = ProfileResult(points=[], runner=runner_name, device=device, config=config.as_key())
    result.stop_reason = "max_batch_size" if sweep else "batch_sizes"
    for step, batch_size in enumerate(plan):
        emit(ProgressEvent("start", batch_size, step, len(plan), 0, config.max_trials))
        call = None
        try:
            call = make_call(batch_size)
            point = measure_point(call, sync, batch_size, config, timer, on_window=lambda w, b=batch_size, s=step: emit(
                ProgressEvent("window", b, s, len(plan), w, config.max_trials)))
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
                   batch_dim: int = 0) -> ProfileResult:
    """Profile a navbuild Runner on one sample (dict name -> array, batch dimension first).

    Activates the runner if it is not active (and deactivates it afterwards only then). Per batch
    size: ``runner.prepare(feed)`` once, then timed ``run_prepared`` + ``synchronize`` calls.
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
                           progress=progress, default_max=default_max)
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
