"""What a run says about each target: its status, reason, digest, time and figures.

One process keeps its records in memory; with ``-j`` each worker process also writes them to a
run folder under the store's ``tmp/``, where the parent collects them for the summary.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from navbuild.engine.store import atomic_write, safe_name

BUILT, CACHED, SKIPPED, FAILED = "built", "cached", "skipped", "failed"
REMOTE = "remote"  # an origin: a cached target that this run restored from the remote cache


@dataclass
class Record:
    target: str
    status: str
    reason: str | None = None
    digest: str | None = None
    key: str | None = None
    seconds: float = 0.0
    correctness: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    origin: str | None = None  # REMOTE when the run restored it from the remote cache

    @property
    def label(self) -> str:
        """The status as people read it: ``remote`` for a cached target fetched from the remote cache."""
        return REMOTE if self.status == CACHED and self.origin == REMOTE else self.status

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RunRecords:
    """This run's records, in memory and (when ``run_dir`` is set) in files shared by workers."""

    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.by_target: dict[str, Record] = {}

    def add(self, record: Record) -> None:
        self.by_target[record.target] = record
        if self.run_dir is not None:
            with contextlib.suppress(OSError):
                atomic_write(self.run_dir / safe_name(record.target),
                             msgpack.packb(record.to_dict(), use_bin_type=True), durable=False)

    def get(self, name: str) -> Record | None:
        """The record of ``name`` from this process, else from a worker's file."""
        return self.by_target.get(name) or self.read(name)

    def read(self, name: str) -> Record | None:
        if self.run_dir is None:
            return None
        try:
            data = msgpack.unpackb((self.run_dir / safe_name(name)).read_bytes(), raw=False)
        except (OSError, ValueError):
            return None
        return Record(**data)

    def collect(self, names: list[str]) -> dict[str, Record]:
        """This run's records of ``names``, including those written by worker processes."""
        found = {}
        for name in names:
            record = self.read(name) or self.by_target.get(name)
            if record is not None:
                found[name] = record
        return found


def clear_run_dir(run_dir: Path) -> None:
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def new_run_dir(store_root: Path) -> Path:
    run_dir = store_root / "tmp" / f"run-{os.getpid()}-{time.time_ns()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir
