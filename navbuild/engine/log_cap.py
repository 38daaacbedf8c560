"""A build log kept to its head and tail: a model that prints megabytes a call (a debug print left
in) would otherwise fill the store with one log per build. The cut is said where it was made.
``actions.BuildLog`` caps what it stores; ``workers`` caps the log of a worker that crashed."""
from __future__ import annotations

from pathlib import Path

LOG_HEAD = 256 << 10  # characters kept from the start of a log over LOG_HEAD + LOG_TAIL...
LOG_TAIL = 1 << 20  # ...and from its end: a model that prints megabytes a call keeps its store small


def capped(text: str, head: int = LOG_HEAD, tail: int = LOG_TAIL) -> str:
    """``text``, or its head and tail with the cut said between them."""
    if len(text) <= head + tail:
        return text
    cut = len(text) - head - tail
    return (text[:head] + f"\n[navbuild: {cut} characters of this log were cut here; its first {head} and "
            f"last {tail} are kept]\n" + text[-tail:])


def capped_file(path: Path, head: int = LOG_HEAD, tail: int = LOG_TAIL) -> str:
    """A log file's text capped as ``capped`` does, reading only its head and tail."""
    size = path.stat().st_size
    if size <= head + tail:
        return path.read_text(encoding="utf-8", errors="replace")
    with open(path, "rb") as handle:
        first = handle.read(head).decode("utf-8", errors="replace")
        handle.seek(size - tail)
        last = handle.read(tail).decode("utf-8", errors="replace")
    return (first + f"\n[navbuild: {size - head - tail} bytes of this log were cut here; its first {head} and "
            f"last {tail} are kept]\n" + last)
