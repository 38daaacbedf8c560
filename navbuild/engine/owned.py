"""What navbuild wrote under the output folder, and so may delete: ``clean`` and ``prune`` ask here.

Every folder navbuild creates under ``out`` gets a marker file (``MARKER``); a folder holding one is
navbuild's whole. A folder that exists before navbuild writes into it (``out = "build"`` where the
user keeps other things) gets no marker, and only navbuild's own entries in it are deleted: its
marked folders, and the files it names at the top of ``out`` (the package, its figures, the graph).
Target folders written before markers existed hold one of navbuild's logs: they count as its own.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

MARKER = ".navbuild-output"
MARKER_TEXT = b"navbuild wrote this folder; `navbuild clean` deletes it\n"


def make(folder: Path, top: Path) -> Path:
    """``folder`` and the folders between it and ``top`` (included) created where missing, each one
    created here marked. ``folder`` must lie inside ``top``."""
    missing = []
    for level in (folder, *folder.parents):
        if level.is_dir():
            break
        missing.append(level)
        if level == top:
            break
    for level in reversed(missing):
        level.mkdir(exist_ok=True)
        mark(level)
    return folder


def mark(folder: Path) -> None:
    marker = folder / MARKER
    if not marker.is_file():
        marker.write_bytes(MARKER_TEXT)


def is_marked(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def is_ours(folder: Path, legacy_names: Iterable[str] = ()) -> bool:
    """Marked, or (written before markers) holding one of ``legacy_names`` (navbuild's logs)."""
    return is_marked(folder) or any((folder / name).is_file() for name in legacy_names)


def removable(top: Path, top_files: Iterable[str], legacy_names: Iterable[str] = ()) -> list[Path]:
    """What ``clean`` deletes under ``top``: all of it when navbuild made it; else the folders it
    made (not looking inside them) and ``top_files``, the files it names at the top."""
    if not top.is_dir() or top.is_symlink():
        return []
    if is_marked(top):
        return [top]
    legacy_names = tuple(legacy_names)
    found = [top / name for name in top_files if (top / name).is_file()]
    stack = [p for p in sorted(top.iterdir()) if p.is_dir() and not p.is_symlink()]
    while stack:
        folder = stack.pop(0)
        if is_ours(folder, legacy_names):
            found.append(folder)
            continue
        stack.extend(p for p in sorted(folder.iterdir()) if p.is_dir() and not p.is_symlink())
    return found


def remove(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

