"""What a profile found: figures per batch size (``ProfilePoint``), per target (``ProfileResult``),
and the events a progress callback receives while measuring (``ProgressEvent``); JSON both ways.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping

# /3: throughput from windows of back-to-back calls (samples / window time), latency from calls timed
# one by one; /2 divided the batch by the median latency; /1 lacks the spread too (it reads as 0)
RESULT_FORMAT = "navbuild-profile/3"
READABLE_FORMATS = ("navbuild-profile/1", "navbuild-profile/2", RESULT_FORMAT)
ENDED = ("stable", "max_trials", "budget")  # why measuring a point stopped (ProfilePoint.ended)
Progress = Callable[["ProgressEvent"], None]


def round_sig(value: float, digits: int = 5) -> float:
    """Round to significant digits: 0.0123456 -> 0.012346, 123456.7 -> 123460.0."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits}g}")


@dataclass
class ProfilePoint:
    """Figures for one batch size; latencies in milliseconds, throughput in samples per second.

    throughput     ``samples / window_time_s``: what the last windows of back-to-back calls
                   completed per second, as a stopwatch around a plain loop reads it
    samples        samples those windows completed (batch size x calls)
    window_time_s  their time, one synchronisation at the end of each window
    p50_ms...      percentiles of ``runs`` calls timed one by one (each synchronised): the latency
                   of one request, measured apart from the throughput
    window_call_ms each window's time per call, in order
    spread_pct     how far the throughput can be trusted: the range of the kept windows' times per
                   call relative to their median (with one window, of the medians of three blocks
                   of the latency calls). Selection treats figures closer than this as equal.
    ended          why measuring stopped: "stable", "max_trials" (not stable) or "budget" (its share
                   of the time budget was spent first)
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
    runs: int  # calls timed one by one behind the latency percentiles
    stable: bool
    window_call_ms: list[float] = field(default_factory=list)
    p25_ms: float | None = None
    p75_ms: float | None = None
    spread_pct: float = 0.0
    ended: str = ""
    seconds: float = 0.0  # time charged to the budget: warm-up included, its first call not
    settled: bool = True  # the warm-up calls came to agree (else max_warmup_s ended the warm-up)
    samples: int = 0
    window_time_s: float = 0.0

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
        return {"stable": "", "budget": "budget reached",
                "max_trials": "unstable"}.get(self.ended, "" if self.stable else "unstable")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = round_sig(value)
        out["window_call_ms"] = [round_sig(v) for v in self.window_call_ms]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProfilePoint":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class ProfileResult:
    """A profile of one runner (or callable): one point per batch size that was measured.

    stop_reason  why the batch loop ended: "batch_sizes" (explicit list done), "max_batch_size"
                 (sweep reached its top), "throughput_saturated", "out_of_memory", "budget" (spent
                 before the next batch size: ``notes`` names those not measured)
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
