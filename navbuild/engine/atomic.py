"""Files written whole or not at all: temp file, fsync, rename (and the folder fsynced), so a crash,
a kill or a full disk never leaves half a file under its final name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(dest: Path, data: bytes, tmp_dir: Path | None = None, durable: bool = True) -> None:
    """Write ``dest`` whole or not at all; ``durable`` also survives a power cut (fsync)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir or dest.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(dest.parent)
