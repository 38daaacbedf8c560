"""What a running action says it is doing, from wherever it runs to the scheduler's listeners.

An action (``engine/actions.py``) says its phase as it goes: ``building``, ``compiling`` (a rule says
so through ``BuildContext.progress``), ``checking``, ``profiling`` with the batch size being
measured. In a worker process each saying travels to the parent as a progress frame on the
worker's protocol (``engine/workers.py``), before the target's reply; in this process it is a call.
The scheduler hands it to its listeners as a ``PROGRESS`` event; the console shows it beside the
running target (``view/progress.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

# what a running target is doing before it says anything itself, by kind of target
DEFAULT_PHASE = {"artifact": "building", "check": "checking", "profile": "profiling"}


@dataclass(frozen=True)
class Progress:
    """``phase``: a verb people read after "still" ("compiling"); ``detail``: what it is at within
    that phase ("batch 8, 2 of 4"), or empty."""

    phase: str
    detail: str = ""

    def text(self) -> str:
        return f"{self.phase} ({self.detail})" if self.detail else self.phase

    def to_frame(self) -> dict[str, Any]:
        return {"phase": self.phase, "detail": self.detail}

    @classmethod
    def from_frame(cls, data: Mapping[str, Any]) -> Progress:
        return cls(str(data.get("phase") or "working"), str(data.get("detail") or ""))


Say = Callable[[Progress], None]


def silent(_: Progress) -> None:
    """Where progress goes when nobody listens."""
