"""What a run says about each target: its status, reason, digest, time and figures.

The navbuild process keeps them in memory: with ``-j`` too, since worker processes only run
actions and the parent records every outcome (``engine/workers.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

BUILT, CACHED, SKIPPED, FAILED = "built", "cached", "skipped", "failed"
NOT_RUN = "not run"  # a label: a target whose dependency failed (its status stays failed or skipped)
WAIT_CAUSES = ("dependencies", "executor", "slots")  # what a target waited for (Record.waits)
REMOTE = "remote"  # an origin: a cached target that this run restored from the remote cache
IMPORTED = "imported"  # an origin: a target whose build in the store came from a package


def origin_text(imported: dict[str, Any]) -> str:
    """Where an imported build came from, as the summary, status, lock and verify say it."""
    text = f"{imported.get('package')} (package {str(imported.get('package_digest'))[:12]})"
    return text + (f", signed by {imported['signer'][:20]}..." if imported.get("signer") else "")


@dataclass
class Record:
    target: str
    status: str
    reason: str | None = None
    digest: str | None = None
    key: str | None = None
    seconds: float = 0.0  # the time it ran here (its action, a restore, a replayed failure): no wait included
    # the time it waited once it could run: for room in the executor, then for its slots (a GPU
    # slot, the profile lock: engine/slots.py); ``waits`` adds the wait for its dependencies
    waited: float = 0.0
    waits: dict[str, float] = field(default_factory=dict)  # WAIT_CAUSES -> seconds
    started_at: float | None = None  # seconds after the run began when its action started (None: none ran)
    correctness: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None  # REMOTE: restored from the remote cache; IMPORTED: from a package
    node: str | None = None  # the Ray node that ran it (--executor ray)
    gpu: int | None = None  # the card (nvidia-smi's index) its build, check or profile ran on
    blocked_by: list[str] = field(default_factory=list)  # the failed targets that kept it from running

    @property
    def label(self) -> str:
        """The status as people read it: ``remote`` for a cached target fetched from the remote cache,
        ``imported`` for one whose build came from a package (never this project's ``cached``), ``not
        run`` for one whose dependency failed."""
        if self.blocked_by:
            return NOT_RUN
        return self.origin if self.status == CACHED and self.origin in (REMOTE, IMPORTED) else self.status

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RunRecords:
    """This run's records, by target."""

    def __init__(self) -> None:
        self.by_target: dict[str, Record] = {}

    def add(self, record: Record) -> None:
        self.by_target[record.target] = record

    def get(self, name: str) -> Record | None:
        return self.by_target.get(name)

    def collect(self, names: list[str]) -> dict[str, Record]:
        """This run's records of ``names``."""
        return {name: self.by_target[name] for name in names if name in self.by_target}
