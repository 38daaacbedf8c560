"""The environment variables the Python API reads: navbuild's own names first, then the names Model
Navigator users already set (``NAVIGATOR_USE_MULTIPROCESSING``, ``NAVIGATOR_CONSOLE_OUTPUT``)."""
from __future__ import annotations

import os

MULTIPROCESSING = ("NAVBUILD_USE_MULTIPROCESSING", "NAVIGATOR_USE_MULTIPROCESSING")
CONSOLE_OUTPUT = ("NAVBUILD_CONSOLE_OUTPUT", "NAVIGATOR_CONSOLE_OUTPUT")
# none: no table; simple: a table per model (default); detailed: every step of it (export, check,
# profile) with its status and time; logs: builds' logs echoed as they run, then the tables
CONSOLE_MODES = ("none", "simple", "detailed", "logs")
FALSE = ("0", "false", "no", "off")


def _first(names: tuple[str, ...]) -> tuple[str, str] | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None and value.strip():
            return name, value.strip().lower()
    return None


def use_multiprocessing() -> bool:
    """Whether actions run in worker processes (the default) rather than in the calling process."""
    found = _first(MULTIPROCESSING)
    return found is None or found[1] not in FALSE


def console_output() -> str:
    """One of ``CONSOLE_MODES``; a value that is none of them is an error naming the variable."""
    found = _first(CONSOLE_OUTPUT)
    if found is None:
        return "simple"
    name, value = found
    if value not in CONSOLE_MODES:
        from navbuild.engine.config import ConfigError

        raise ConfigError(name, "", f"unknown console output {value!r}", f"use one of {', '.join(CONSOLE_MODES)}")
    return value
