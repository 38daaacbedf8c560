"""Byte-reproducible zip files: sorted entries, fixed timestamps and permissions."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Iterable

FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def _info(name: str, compress: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.compress_type = compress
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever machine writes it
    return info


def write_zip(dest: Path, entries: Iterable[tuple[str, bytes]], *, compress: int = zipfile.ZIP_STORED,
              sort: bool = True) -> None:
    """Write ``(name, data)`` entries; same entries -> same bytes."""
    items = sorted(entries) if sort else list(entries)
    tmp = _temp_beside(Path(dest))
    try:
        with zipfile.ZipFile(tmp, "w", compression=compress) as archive:
            for name, data in items:
                archive.writestr(_info(name, compress), data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _temp_beside(dest: Path) -> Path:
    """A private temporary name in dest's folder: two processes writing one file never collide."""
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def normalize_zip(path: Path, *, keep: Callable[[str], bool] = lambda name: True,
                  rewrite: Callable[[str, bytes], bytes] = lambda name, data: data,
                  sort: bool = False) -> None:
    """Rewrite a zip in place with fixed metadata, dropping entries ``keep`` rejects.

    Entry order is kept unless ``sort``: some readers (TorchScript) expect their own order, and the
    writers already emit it deterministically.
    """
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, rewrite(info.filename, archive.read(info)), info.compress_type)
                   for info in archive.infolist() if keep(info.filename)]
    if sort:
        entries.sort()
    tmp = _temp_beside(Path(path))
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            for name, data, compress in entries:
                archive.writestr(_info(name, compress), data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
