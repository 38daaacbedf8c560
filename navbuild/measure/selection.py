"""Selection: which correct target serves a model best, by a named strategy.

Only candidates whose correctness check passed compete. A strategy scores each candidate from
its ProfileResult (higher is better) and says which figures decided; the best is chosen, the
next is the runner-up, and everything is JSON-able for the report and the package.

Strategies, also as strings for the CLI and navbuild.toml (``parse_strategy``):
    max-throughput                  highest throughput at any measured batch size
    min-latency[:p50|p90|p95|p99]   lowest latency at the smallest batch size all candidates share
    latency-budget:5ms[:p95]        highest throughput among batch sizes whose latency percentile
                                    (p95 by default) fits the budget; units ms, us, s
A Python callable ``fn(target, result) -> float | None`` is a strategy too (``CallableStrategy``).

Measurements are noisy, so the choice is made to be stable: a candidate *clearly beats* another
only when its figure is better by a factor of more than 1 + the tie margin % (or 1 + its own
measured ``spread_pct``, if larger). The margin is ``[profile] tie_margin_pct``; unset, it is
``DEFAULT_MARGIN_PCT`` of the device the candidates were measured on (a CPU shared with other work
drifts between two targets' profiles far more than a GPU does, and on a GPU a wide margin would give
away a real lead to the declared order). Every candidate that the best does not clearly beat is tied
with it, and the tie goes, in this order, to the ``previous`` choice (a re-profile keeps a selection
unless the new figures clearly beat it), then to the earliest target in ``order`` (the project's
preference: its precisions, then its formats, then the variants of a format, as declared), then to
the target name. A ``CallableStrategy`` compares exactly (margin 0).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from navbuild.measure.results import ProfilePoint, ProfileResult, round_sig

SELECTION_FORMAT = "navbuild-selection/1"
_PERCENTILES = ("p50", "p90", "p95", "p99", "mean")
# figures closer than this are equal, however small their measured spread (when no margin is set):
# on a CPU, where two targets' profiles minutes apart see different loads; on a GPU, where they do not
DEFAULT_MARGIN_PCT = {"cpu": 10.0, "cuda": 3.0}
MIN_MARGIN_PCT = DEFAULT_MARGIN_PCT["cpu"]


def default_margin(results: Iterable[ProfileResult]) -> float:
    """The tie margin for candidates measured as ``results``: the GPU's only when all ran on one."""
    devices = [str(result.device or "cpu") for result in results]
    on_gpu = bool(devices) and all(device.startswith("cuda") for device in devices)
    return DEFAULT_MARGIN_PCT["cuda" if on_gpu else "cpu"]


@dataclass(frozen=True)
class Candidate:
    """A target's profile and whether its correctness check passed."""

    result: ProfileResult
    correct: bool


@dataclass
class Choice:
    """One ranked candidate: its score (higher is better) and the figures behind it.

    The score is the throughput (samples/s) for the throughput strategies, minus the latency in ms
    for min-latency, and the callable's value for a CallableStrategy.
    """

    target: str
    runner: str
    score: float
    batch_size: int | None
    figures: dict[str, Any]

    @property
    def spread_pct(self) -> float:
        return float(self.figures.get("spread_pct") or 0.0)

    def to_dict(self) -> dict[str, Any]:
        figures = {k: round_sig(v) if isinstance(v, float) else v for k, v in self.figures.items()}
        return {"target": self.target, "runner": self.runner, "score": round_sig(self.score),
                "batch_size": self.batch_size, "figures": figures}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Choice":
        return cls(data["target"], data.get("runner", ""), float(data["score"]),
                   data.get("batch_size"), dict(data.get("figures", {})))


@dataclass
class Selection:
    """What a strategy picked. ``chosen`` is None when no candidate qualified (see ``excluded``)."""

    strategy: str
    chosen: Choice | None
    runner_up: Choice | None
    ranking: list[Choice] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # target -> why it did not compete
    tied: list[str] = field(default_factory=list)  # candidates the best did not clearly beat
    kept_previous: bool = False  # the previous choice was among them, so it stayed
    margin_pct: float | None = None  # the tie margin it used

    @property
    def target(self) -> str | None:
        return self.chosen.target if self.chosen else None

    def to_dict(self) -> dict[str, Any]:
        return {"format": SELECTION_FORMAT, "strategy": self.strategy,
                "chosen": self.chosen.to_dict() if self.chosen else None,
                "runner_up": self.runner_up.to_dict() if self.runner_up else None,
                "ranking": [c.to_dict() for c in self.ranking],
                "excluded": dict(self.excluded), "tied": list(self.tied), "kept_previous": self.kept_previous,
                "margin_pct": self.margin_pct}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Selection":
        ranking = [Choice.from_dict(c) for c in data.get("ranking", [])]
        chosen = Choice.from_dict(data["chosen"]) if data.get("chosen") else None
        runner_up = Choice.from_dict(data["runner_up"]) if data.get("runner_up") else None
        return cls(data["strategy"], chosen, runner_up, ranking, dict(data.get("excluded", {})),
                   list(data.get("tied", [])), bool(data.get("kept_previous", False)), data.get("margin_pct"))


# -- strategies ----------------------------------------------------------------------------------
def _figures(point: ProfilePoint) -> dict[str, Any]:
    return {"batch_size": point.batch_size, "throughput": point.throughput, "p50_ms": point.p50_ms,
            "p95_ms": point.p95_ms, "p99_ms": point.p99_ms, "stable": point.stable,
            "spread_pct": point.spread_pct, "ended": point.ended}


def _check_percentile(percentile: str) -> str:
    percentile = percentile.lower()
    if percentile not in _PERCENTILES:
        raise ValueError(f"unknown latency percentile {percentile!r}; use one of {', '.join(_PERCENTILES)}")
    return percentile


class Strategy:
    """Base: ``score`` returns (score, batch size, figures) or a reason string to exclude."""

    name = "strategy"
    margin_pct: float | None = None  # None: the configured tie margin; a strategy may fix its own

    def prepare(self, results: Mapping[str, ProfileResult]) -> None:
        """Look at all competing results first (MinLatency picks a common batch size)."""

    def score(self, target: str, result: ProfileResult) -> tuple[float, int | None, dict[str, Any]] | str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name


class MaxThroughput(Strategy):
    """Highest throughput at any measured batch size."""

    name = "max-throughput"

    def score(self, target: str, result: ProfileResult) -> tuple[float, int | None, dict[str, Any]] | str:
        point = result.best_throughput()
        if point is None:
            return "no measurements"
        return point.throughput, point.batch_size, _figures(point)


class MinLatency(Strategy):
    """Lowest latency (``percentile``) at the smallest batch size every candidate measured."""

    def __init__(self, percentile: str = "p50") -> None:
        self.percentile = _check_percentile(percentile)
        self.batch_size: int | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return "min-latency" if self.percentile == "p50" else f"min-latency:{self.percentile}"

    def prepare(self, results: Mapping[str, ProfileResult]) -> None:
        sets = [set(r.batch_sizes) for r in results.values() if r.points]
        common = set.intersection(*sets) if sets else set()
        self.batch_size = min(common) if common else None

    def score(self, target: str, result: ProfileResult) -> tuple[float, int | None, dict[str, Any]] | str:
        if not result.points:
            return "no measurements"
        point = result.point(self.batch_size) if self.batch_size else None
        point = point or min(result.points, key=lambda p: p.batch_size)
        latency = point.latency(self.percentile)
        figures = _figures(point) | {"latency_ms": latency, "percentile": self.percentile}
        return -latency, point.batch_size, figures


class MaxThroughputUnderLatencyBudget(Strategy):
    """Highest throughput among batch sizes whose latency ``percentile`` is within ``budget_ms``."""

    def __init__(self, budget_ms: float, percentile: str = "p95") -> None:
        if budget_ms <= 0:
            raise ValueError(f"a latency budget must be positive, got {budget_ms} ms")
        self.budget_ms = float(budget_ms)
        self.percentile = _check_percentile(percentile)

    @property
    def name(self) -> str:  # type: ignore[override]
        suffix = "" if self.percentile == "p95" else f":{self.percentile}"
        return f"latency-budget:{self.budget_ms:g}ms{suffix}"

    def score(self, target: str, result: ProfileResult) -> tuple[float, int | None, dict[str, Any]] | str:
        fitting = [p for p in result.points if p.latency(self.percentile) <= self.budget_ms]
        if not fitting:
            if not result.points:
                return "no measurements"
            best = min(p.latency(self.percentile) for p in result.points)
            return (f"no batch size meets {self.percentile} <= {self.budget_ms:g} ms "
                    f"(best {best:.4g} ms)")
        point = max(fitting, key=lambda p: (p.throughput, -p.batch_size))
        figures = _figures(point) | {"budget_ms": self.budget_ms, "percentile": self.percentile,
                                     "latency_ms": point.latency(self.percentile)}
        return point.throughput, point.batch_size, figures


class CallableStrategy(Strategy):
    """A user function ``fn(target, result) -> float | None``: higher wins, None excludes."""

    margin_pct = 0.0  # a user's score means what it says

    def __init__(self, fn: Callable[[str, ProfileResult], float | None], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or f"callable:{getattr(fn, '__name__', 'fn')}"

    def score(self, target: str, result: ProfileResult) -> tuple[float, int | None, dict[str, Any]] | str:
        value = self.fn(target, result)
        if value is None:
            return f"{self.name} excluded it"
        return float(value), None, {"score": float(value)}


_UNITS_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(ms|us|µs|s)?\s*$", re.IGNORECASE)


def parse_strategy(text: str | Strategy | Callable[[str, ProfileResult], float | None]) -> Strategy:
    """``max-throughput``, ``min-latency[:p95]``, ``latency-budget:5ms[:p99]``, or a Strategy/callable."""
    if isinstance(text, Strategy):
        return text
    if callable(text):
        return CallableStrategy(text)
    parts = [p.strip() for p in str(text).strip().split(":")]
    head = parts[0].lower().replace("_", "-")
    if head == "max-throughput" and len(parts) == 1:
        return MaxThroughput()
    if head == "min-latency" and len(parts) <= 2:
        return MinLatency(parts[1] if len(parts) == 2 else "p50")
    if head in ("latency-budget", "max-throughput-under-latency-budget") and len(parts) in (2, 3):
        match = _BUDGET.match(parts[1])
        if not match:
            raise ValueError(f"bad latency budget {parts[1]!r} in strategy {text!r}; write e.g. 5ms or 500us")
        budget_ms = float(match.group(1)) * _UNITS_MS[(match.group(2) or "ms").lower()]
        return MaxThroughputUnderLatencyBudget(budget_ms, parts[2] if len(parts) == 3 else "p95")
    raise ValueError(f"unknown selection strategy {text!r}; use max-throughput, min-latency[:p95] or "
                     "latency-budget:<time>[:p95]")


# -- selection -----------------------------------------------------------------------------------
def _as_candidate(value: Candidate | tuple[ProfileResult, bool]) -> Candidate:
    if isinstance(value, Candidate):
        return value
    result, correct = value
    return Candidate(result, bool(correct))


def clearly_beats(a: Choice, b: Choice, margin_pct: float = MIN_MARGIN_PCT) -> bool:
    """``a``'s figure is better than ``b``'s by a factor of more than 1 + the margin or ``a``'s own
    spread (throughputs: a / b; latencies, scored negative: b / a). Only the leader's spread
    counts: its lead is real when its own measurement is steady, however noisy ``b``'s was (a
    JIT still compiling during ``b``'s window must not tie it with a target measured 3x faster)."""
    tolerance = max(margin_pct, a.spread_pct) / 100.0
    if tolerance == 0 or (a.score > 0) != (b.score > 0) or 0 in (a.score, b.score):
        return a.score > b.score
    ratio = a.score / b.score if a.score > 0 else b.score / a.score
    return ratio > 1 + tolerance


def select(candidates: Mapping[str, Candidate | tuple[ProfileResult, bool]],
           strategy: Strategy | str | Callable[[str, ProfileResult], float | None] = "max-throughput",
           *, order: Sequence[str] = (), previous: str | None = None,
           margin_pct: float | None = None) -> Selection:
    """Rank the correct candidates with ``strategy`` and choose among those tied with the best:
    ``previous`` if it is one of them, else the earliest in ``order``, else by target name.
    ``margin_pct``: the tie margin (None: ``default_margin`` of the competing results)."""
    strategy = parse_strategy(strategy)
    excluded: dict[str, str] = {}
    competing: dict[str, ProfileResult] = {}
    for target in sorted(candidates):
        candidate = _as_candidate(candidates[target])
        if not candidate.correct:
            excluded[target] = "failed its correctness check"
        elif not candidate.result.points:
            excluded[target] = "no measurements" + (
                f" (out of memory at batch {candidate.result.oom_batch_size})"
                if candidate.result.oom_batch_size else "")
        else:
            competing[target] = candidate.result
    strategy.prepare(competing)
    if strategy.margin_pct is not None:
        margin_pct = strategy.margin_pct
    elif margin_pct is None:
        margin_pct = default_margin(competing.values())
    ranking: list[Choice] = []
    for target, result in competing.items():
        scored = strategy.score(target, result)
        if isinstance(scored, str):
            excluded[target] = scored
            continue
        score, batch_size, figures = scored
        ranking.append(Choice(target, result.runner, score, batch_size, figures))
    preference = {name: index for index, name in enumerate(order)}

    def preferred(choice: Choice) -> tuple[int, str]:
        return preference.get(choice.target, len(preference)), choice.target

    ranking.sort(key=lambda c: (-c.score, *preferred(c)))
    if not ranking:
        return Selection(strategy=strategy.name, chosen=None, runner_up=None, excluded=excluded, margin_pct=margin_pct)
    tied = [c for c in ranking if not clearly_beats(ranking[0], c, margin_pct)]
    kept = next((c for c in tied if c.target == previous), None)
    chosen = kept or min(tied, key=preferred)
    ranking = [chosen] + [c for c in ranking if c is not chosen]
    return Selection(strategy=strategy.name, chosen=chosen, runner_up=ranking[1] if len(ranking) > 1 else None,
                     ranking=ranking, excluded=excluded, tied=sorted(c.target for c in tied),
                     kept_previous=kept is not None, margin_pct=margin_pct)
