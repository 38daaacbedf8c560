"""What measuring is told: the typed settings of the correctness checks and the profiles.

One schema, built once from the configuration (``engine/config.py`` reads navbuild.toml into it)
and handed down as these objects to the keys, the checks, the profiles and the selection:

    Tolerances         [correctness] and [models.<m>.correctness]: atol/rtol per precision, per output
      Tolerance        one (atol, rtol) pair
    ProfileSettings    [profile]
      enabled          whether targets are profiled at all
      strategies       how the best target is selected (``selection.parse_strategy`` reads each)
      tie_margin_pct   when two figures are a tie (selection only: no profile's key holds it)
      measure          ProfileConfig: how one target is measured (every field enters its key)

Nothing here imports numpy or a framework: the no-op path reads these settings too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from navbuild import validate
from navbuild.measure.budget import budget_for
from navbuild.rule import NO_BATCH  # a model's max_batch_size when it has no batch dimension

DEFAULT_SWEEP_UP_TO = 64  # the top of a sweep when neither the settings nor the model give one
DEFAULT_STRATEGIES = ("max-throughput", "min-latency")
# Looser tolerances for reduced precisions unless the project sets its own. tf32 rounds matmul and
# convolution operands to a 10-bit mantissa (as fp16) but keeps fp32 accumulation and storage: half
# of fp16's (docs/config.md, "TF32").
# tf32 also allows 1e-3 of the output's range: its rounding error grows with the magnitude of what a
# layer accumulates, not with the element compared (ResNet-50's logits reach 111 and differ by 0.05).
DEFAULT_TOLERANCES = {
    "fp32": {"atol": 1e-4, "rtol": 1e-3},
    "tf32": {"atol": 5e-3, "rtol": 5e-3, "range_tol": 1e-3},
    "fp16": {"atol": 1e-2, "rtol": 1e-2},
    "bf16": {"atol": 5e-2, "rtol": 5e-2},
    "int8": {"atol": 1e-1, "rtol": 1e-1},
}
# [profile] keys that are no more, with what to write instead (a config error says so)
RETIRED_PROFILE_KEYS = {
    "max_batch_size": ("was renamed sweep_up_to: the model's own max_batch_size is another setting",
                       "write sweep_up_to = N (the largest batch size the sweep measures)"),
    "slower_than_best": ("is no longer an option: a profile reads no other target's figures, so that its "
                         "own do not depend on which profiles ran before it",
                         "remove it; budget_s bounds the time a slow target takes"),
}


class SettingsError(ValueError):
    """A setting that cannot be: ``key`` (within its table), what is wrong, and the fix."""

    def __init__(self, key: str, problem: str, fix: str = "") -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key, self.problem, self.fix = key, problem, fix


# -- correctness ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    """|actual - expected| <= atol + range_tol * max|expected| + rtol * |expected|, element by element;
    max|expected| is the largest magnitude of that output over every sample (its range)."""

    atol: float
    rtol: float
    range_tol: float = 0.0

    def as_key(self) -> list[float]:
        """Two numbers while no range allowance is set, so that keys made before it stay the same."""
        return [self.atol, self.rtol, self.range_tol] if self.range_tol else [self.atol, self.rtol]


@dataclass
class Tolerances:
    """Tolerances: per precision, overridden per model and per output."""

    by_precision: dict[str, Tolerance]
    by_output: dict[str, dict[str, Tolerance]] = field(default_factory=dict)  # precision -> output

    def tolerance(self, precision: str, output: str) -> Tolerance:
        per_output = self.by_output.get(precision, {}).get(output) or self.by_output.get("*", {}).get(output)
        return per_output or self.by_precision[precision]

    def as_key(self, precision: str, outputs: list[str]) -> dict[str, list[float]]:
        return {name: self.tolerance(precision, name).as_key() for name in outputs}


# -- profiles ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProfileConfig:
    """How to measure (docs/profiling.md compares the defaults with Model Navigator 0.14's).

    batch_sizes              explicit batch sizes (measured in increasing order), or None: sweep
    sweep_up_to              top of the sweep (powers of two up to it, and it); None: the runner's
                             model ``max_batch_size``, else ``DEFAULT_SWEEP_UP_TO``
    budget_s                 seconds of measuring per target (warm-ups included, but not the first
                             call at each batch size: a JIT compiles there, it measures nothing),
                             shared by its batch sizes; None: ``budget.DEFAULT_BUDGET_S`` of the
                             device; 0: no budget
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
    sweep_up_to: int | None = None
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
        if self.sweep_up_to is not None and self.sweep_up_to < 1:
            raise ValueError(f"profile sweep_up_to must be >= 1, got {self.sweep_up_to}")
        for name in ("warmup_runs", "warmup_s", "max_warmup_s", "window_s", "stability_pct",
                     "throughput_cutoff_pct"):
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
        """From a navbuild.toml table or ``as_key()``; a retired or unknown key is a SettingsError
        naming it."""
        for name in data:
            if name in RETIRED_PROFILE_KEYS:
                raise SettingsError(name, *RETIRED_PROFILE_KEYS[name])
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown profile option(s) {unknown}; known: {sorted(known)}")
        for name, value in data.items():
            _within_bounds(name, value)
        values = dict(data)
        if values.get("batch_sizes") is not None:
            values["batch_sizes"] = tuple(values["batch_sizes"])
        return cls(**values)

    def plan(self, default_max: int | None = None) -> tuple[list[int], bool]:
        """The batch sizes to try and whether they form a sweep (subject to the saturation stop).
        ``default_max`` 0 (``NO_BATCH``: a model without a batch dimension): one point, "batch" 1,
        the sample as it is."""
        if default_max == NO_BATCH:
            return [1], False
        if self.batch_sizes is not None:
            return list(self.batch_sizes), False
        top = self.sweep_up_to or default_max or DEFAULT_SWEEP_UP_TO
        sizes = [1 << k for k in range(top.bit_length()) if (1 << k) <= top]
        if sizes[-1] != top:
            sizes.append(top)
        return sizes, True

    def budget(self, device: str) -> float | None:
        """Seconds of measuring per target on ``device``; None: unlimited."""
        return budget_for(self.budget_s, device)

    def resolved(self, device: str, default_max: int | None) -> dict[str, Any]:
        """What this config measures for one target: its batch plan and budget (for its key)."""
        sizes, sweep = self.plan(default_max)
        return {"batch_plan": sizes, "sweep": sweep, "budget_s": self.budget(device)}


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
        try:
            for size in sizes:  # a size past 32 bits, refused as batch sizes are
                validate.int_in(size, 1, validate.MAX_INT)
        except validate.Invalid as exc:
            raise SettingsError(f"axis_sizes.{label}", exc.problem, exc.fix) from None
        checked[str(label)] = tuple(sorted(set(sizes)))
    return checked


def _within_bounds(name: str, value: Any) -> None:
    """The numbers of a profile option within what a measurement can take, as written (NaN, a
    timeout of 1e12 s, a count past 32 bits); their types and relations are ``__post_init__``'s."""
    try:
        if isinstance(value, bool):
            return
        if name == "batch_sizes" and isinstance(value, (list, tuple)):
            validate.no_duplicates(value)
            for item in value:
                if isinstance(item, int) and not isinstance(item, bool):
                    validate.int_in(item, 1, validate.MAX_INT)
        elif isinstance(value, int):
            validate.int_in(value, 0, validate.MAX_INT)
        elif isinstance(value, float) and name.endswith("_s"):
            validate.seconds(value, True)
        elif isinstance(value, float):
            validate.finite(value, 0.0, 1e6, "a number")
    except validate.Invalid as exc:
        raise SettingsError(name, exc.problem, exc.fix) from None


@dataclass(frozen=True)
class ProfileSettings:
    """``[profile]``: whether and how targets are measured, and how the best is chosen."""

    enabled: bool = True
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    measure: ProfileConfig = field(default_factory=ProfileConfig)
    # selection's tie margin in % (measure/selection.py); None: its default for the device. It changes
    # no measurement, so it enters no profile's key
    tie_margin_pct: float | None = None

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """The explicit batch sizes the profiles measure; none when they sweep or are off (the
        engine value ``profile_batch_sizes``: torch-compile's automatic buckets include them)."""
        return tuple(self.measure.batch_sizes or ()) if self.enabled else ()
