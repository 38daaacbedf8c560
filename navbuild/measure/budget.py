"""A profile's time budget: the seconds of measuring a target gets, and each batch size's share.

The batch sizes of a target share its budget: each gets what is left divided by the batch sizes
still to measure, so what a fast one leaves unspent goes to the next; once it is spent, the
batch sizes left are not measured. Time is what the timer measured (warm-ups included, the first
call at each batch size not: a JIT compiles there), not the wall clock.
"""
from __future__ import annotations

# seconds of measuring per profiled target when [profile] budget_s is not set: a CPU quick start
# stays short, a GPU (fast calls, large batches worth measuring) gets more
DEFAULT_BUDGET_S = {"cpu": 3.0, "cuda": 15.0}


def budget_for(budget_s: float | None, device: str) -> float | None:
    """Seconds of measuring per target on ``device`` (``budget_s`` None: the device's default);
    None: unlimited (a budget of 0)."""
    budget = budget_s if budget_s is not None else DEFAULT_BUDGET_S["cuda" if device.startswith("cuda") else "cpu"]
    return budget or None


def is_spent(budget: float | None, spent: float) -> bool:
    return budget is not None and spent >= budget


def share(budget: float | None, spent: float, sizes_left: int) -> float | None:
    """The next batch size's share: what is left, divided among the ``sizes_left`` still to measure."""
    return None if budget is None else (budget - spent) / sizes_left
