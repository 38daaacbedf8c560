"""torch.export archives (``model.pt2``) loaded without unpickling anything or loading native code.

``torch.export.load`` in torch 2.13 (and 2.14) has no ``weights_only`` switch and unpickles several entries:

- the example inputs, ``data/sample_inputs/<m>.pt``: ``torch.load(weights_only=True)``, and when
  that fails, again with ``weights_only=False`` (a crafted pickle there runs its payload);
- weights and tensor constants whose payload config says ``use_pickle``: ``weights_only=False``;
- ``custom_obj_*`` constants (TorchScript's pickler) and ``opaque_obj_*`` constants
  (``pickle.loads``); legacy ``data/weights/<m>.pt`` and ``data/constants/<m>.pt`` files;
- and it loads AOTInductor shared libraries found under ``data/aotinductor/``.

``load_program`` copies the archive, entry by entry, into a private temporary file, keeping only
what a plain export of a model holds (version strings, the program's JSON, payload configs whose
payloads are all raw tensor bytes, and those raw bytes); the example inputs are emptied (they are
only used to re-export, never to run). Any other entry refuses the archive. torch then loads the
checked copy, so the bytes checked are the bytes loaded.
"""
from __future__ import annotations

import json
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from navbuild.lazy import lazy_import

torch = lazy_import("torch")

VERSION_FILES = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_RAW = re.compile(r"data/weights/weight_\d+|data/constants/tensor_\d+")
_JSON = re.compile(r"models/[\w.-]+\.json|extra/[\w./-]+")
_CONFIG = re.compile(r"data/(weights/[\w.-]+_weights|constants/[\w.-]+_constants)_config\.json")
_SAMPLE_INPUTS = re.compile(r"data/sample_inputs/[\w.-]+\.pt")
MAX_CONFIG_BYTES = 256 << 20


class UnsafeArchive(RuntimeError):
    """A ``.pt2`` holding something other than a plain export (pickles, native code): refused."""


def load_program(path: Path) -> Any:
    """``torch.export.load`` of a checked copy of ``path``: an ExportedProgram, nothing unpickled."""
    with tempfile.TemporaryDirectory(prefix="navbuild-pt2-") as folder:
        checked = Path(folder) / "model.pt2"
        copy_checked(Path(path), checked)
        return torch.export.load(str(checked))


def copy_checked(source: Path, dest: Path) -> None:
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(dest, "w") as out:
        prefix = _prefix(source, archive)
        for info in archive.infolist():
            name = info.filename[len(prefix):]
            if _SAMPLE_INPUTS.fullmatch(name):
                out.writestr(info.filename, b"")  # pickled example inputs: never read
            elif name in VERSION_FILES or _RAW.fullmatch(name) or _JSON.fullmatch(name):
                _copy_entry(archive, info, out)
            elif _CONFIG.fullmatch(name):
                _check_payload_config(source, info.filename, archive.read(info))
                _copy_entry(archive, info, out)
            else:
                raise UnsafeArchive(f"{source.name}: entry {info.filename!r} is not part of a plain torch.export "
                                    f"archive (pickled objects and compiled code are refused)")


def _prefix(source: Path, archive: zipfile.ZipFile) -> str:
    """The archive's one top folder (torch.export.save puts every entry under it)."""
    names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1 or any("/" not in name for name in names):
        raise UnsafeArchive(f"{source.name}: not a torch.export archive (entries outside one top folder)")
    return tops.pop() + "/"


def _copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: zipfile.ZipFile) -> None:
    with archive.open(info) as src, out.open(info.filename, "w", force_zip64=info.file_size > (1 << 31)) as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _check_payload_config(source: Path, name: str, data: bytes) -> None:
    """Every weight or constant is raw tensor bytes, none pickled."""
    if len(data) > MAX_CONFIG_BYTES:
        raise UnsafeArchive(f"{source.name}: {name} is too large")
    try:
        config = json.loads(data).get("config")
    except (ValueError, AttributeError):
        raise UnsafeArchive(f"{source.name}: {name} is not a payload config") from None
    if not isinstance(config, dict):
        raise UnsafeArchive(f"{source.name}: {name} is not a payload config")
    for fqn, payload in config.items():
        path_name = payload.get("path_name") if isinstance(payload, dict) else None
        if not isinstance(path_name, str) or payload.get("use_pickle") is not False or \
                not re.fullmatch(r"(weight|tensor)_\d+", path_name):
            raise UnsafeArchive(f"{source.name}: {fqn} in {name} is not stored as raw tensor bytes "
                                f"(pickled payloads are refused)")
