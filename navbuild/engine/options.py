"""What a run was asked to do, beyond which targets: the flags of the CLI, the settings of an API
call, and what a worker process or a Ray node is told of them (``Session.describe``)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Options:
    verbose: bool = False
    quiet: bool = False
    config_arg: str | None = None  # how the user named the config (for rebuild commands)
    remote_cache: str | None = None  # --remote-cache URL ("" turns a configured one off)
    remote_read_only: bool = False  # --remote-cache-read-only
    retry_failed: bool = False  # run targets whose key failed before instead of replaying the failure
    isolate: bool = True  # actions run in worker processes (engine/workers.py); False: in this one
    gpu_jobs: int | None = None  # GPU targets at once beside -j, spread over the cards; None: one per card
