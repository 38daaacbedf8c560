"""The batch loop of a profile: which batch sizes are measured, each under its share of the time
budget, until the plan is done, a sweep's throughput stops growing, the budget is spent or memory
runs out; then, on a GPU and when asked, the largest batch that fits.

Batch sizes are an explicit list, or a sweep over powers of two up to ``sweep_up_to`` that stops
once throughput grows by less than ``throughput_cutoff_pct`` for ``throughput_backoff_limit``
consecutive steps. An out-of-memory error ends the loop cleanly and records the limit.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from navbuild.measure import budget as budget_module
from navbuild.measure.memory import is_out_of_memory, release_memory
from navbuild.measure.point import measure_point
from navbuild.measure.results import ProfilePoint, ProfileResult, Progress, ProgressEvent
from navbuild.measure.settings import ProfileConfig
from navbuild.measure.timing import Timer, make_timer

OOM_PROBE_RUNS = 2  # untimed calls per batch size during the max-batch-size search


class ProfileError(RuntimeError):
    """A runner failed for a reason other than running out of memory."""


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
    raised as ProfileError naming the batch size. The time budget is shared by the batch sizes
    still to measure (``budget.py``); once it is spent, the batch sizes left are not measured.
    The figures depend on this target alone: nothing here reads another target's.
    """
    started = time.perf_counter()
    timer = make_timer(config.timer, device, timer)
    emit = progress or (lambda event: None)
    plan, sweep = config.plan(default_max)
    budget = config.budget(device)
    result = ProfileResult(points=[], runner=runner_name, device=device, config=config.as_key(), budget_s=budget)
    result.stop_reason = "max_batch_size" if sweep else "batch_sizes"
    for step, batch_size in enumerate(plan):
        emit(ProgressEvent("start", batch_size, step, len(plan), 0, config.max_trials))
        spent = sum(p.seconds for p in result.points)
        if budget_module.is_spent(budget, spent) and result.points:
            result.stop_reason = "budget"
            result.notes.append(f"batch sizes {', '.join(map(str, plan[step:]))} not measured: the "
                                f"{budget:g} s budget was spent")
            break
        call = None
        try:
            call = make_call(batch_size)
            point = measure_point(call, sync, batch_size, config, timer, on_window=lambda w, b=batch_size, s=step: emit(
                ProgressEvent("window", b, s, len(plan), w, config.max_trials)),
                budget_s=budget_module.share(budget, spent, len(plan) - step))
        except Exception as exc:  # noqa: BLE001 - OOM is data, anything else is re-raised
            call = None
            if not is_out_of_memory(exc):
                raise ProfileError(f"{runner_name or 'profile'}: batch size {batch_size}: "
                                   f"{type(exc).__name__}: {exc}") from exc
            release_memory()
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
            release_memory()
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
