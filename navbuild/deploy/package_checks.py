"""What a ``.nav`` package must satisfy before anything in it is used: a package is hostile input.

Everything here runs on the zip's central directory and on ``status.json`` alone, before a single
artifact byte is read or written anywhere:

- entry names: relative POSIX paths, no empty, ``.`` or ``..`` component, no leading ``/``, no
  backslash, no NUL or control character, no duplicate, no folder entry;
- entry kinds: regular files only (a symlink's mode in ``external_attr`` is refused), not encrypted;
- sizes (``Limits``): each entry, all entries together, the entry count, the compression ratio of a
  compressed entry, and ``status.json`` itself;
- ``status.json``: valid UTF-8 JSON of the documented shape, every name a safe path and every key
  and digest 32 lowercase hex digits (``check_status``).

The limits are generous for real models and tight for bombs; ``Limits.parse`` reads overrides such
as ``entry=16G`` (``navbuild build --from PKG --package-limit entry=16G``).
"""
from __future__ import annotations

import json
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Mapping

from navbuild.hashing import is_digest, is_output_digest


SIGNATURE_ENTRY = "signature.json"  # a signed package's signature (deploy/signing.py), described by no status
MAX_SIGNATURE_BYTES = 16 << 20


class PackageError(RuntimeError):
    """A package that cannot be written or read; the message names the entry at fault."""


@dataclass(frozen=True)
class Limits:
    """What a package may hold; anything over a limit refuses the whole package."""

    entry: int = 16 << 30  # one entry, uncompressed: a large model's single weights file
    total: int = 64 << 30  # every entry together, uncompressed
    entries: int = 100_000  # number of entries
    ratio: int = 200  # uncompressed / compressed size of a compressed entry (navbuild stores, ratio 1)
    status: int = 64 << 20  # status.json (a few kB per target)

    @classmethod
    def parse(cls, overrides: Iterable[str]) -> "Limits":
        """``["entry=16G", "ratio=500"]`` over the defaults; PackageError names a bad one."""
        from navbuild.sizes import parse_size

        names = {f.name for f in fields(cls)}
        values: dict[str, int] = {}
        for item in overrides:
            name, sep, text = item.partition("=")
            if not sep or name not in names:
                raise PackageError(f"package limit {item!r}: use NAME=VALUE, NAME one of {', '.join(sorted(names))}")
            try:
                values[name] = parse_size(text)
            except ValueError as exc:
                raise PackageError(f"package limit {item!r}: {exc}") from None
        return replace(cls(), **values)


DEFAULT_LIMITS = Limits()


# -- names ------------------------------------------------------------------------------------------
def check_component(name: Any, what: str = "name") -> str:
    """One path component that cannot leave its folder: no separator, not ``.`` or ``..``."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name or \
            any(unicodedata.category(c).startswith("C") for c in name):
        raise PackageError(f"{what} {name!r} is not a plain file or folder name")
    return name


def check_name(name: Any) -> str:
    """A relative POSIX path inside the package (or a folder it is extracted to)."""
    if not isinstance(name, str) or not name or name.startswith("/"):
        raise PackageError(f"entry name {name!r} is not a relative path inside the package")
    try:
        for part in name.split("/"):
            check_component(part)
    except PackageError:
        raise PackageError(f"entry name {name!r} is not a relative path inside the package") from None
    return name


# -- the zip's directory ---------------------------------------------------------------------------
def check_entries(archive: zipfile.ZipFile, limits: Limits, archive_size: int) -> dict[str, zipfile.ZipInfo]:
    """Every entry's name, kind and size checked; returns them by name."""
    infos = archive.infolist()
    if len(infos) > limits.entries:
        raise PackageError(f"{len(infos)} entries, over the limit of {limits.entries}")
    if sum(info.compress_size for info in infos) > archive_size:  # entries that share bytes: a zip bomb
        raise PackageError("entries overlap (their sizes add up to more than the file)")
    found: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = check_name(info.orig_filename)  # orig: zipfile cuts a name at its first NUL
        mode = info.external_attr >> 16
        if info.is_dir() or stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: a writer that sets no type
            kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
            raise PackageError(f"entry {name!r} is {kind}")
        if info.flag_bits & 0x1:
            raise PackageError(f"entry {name!r} is encrypted")
        if name in found:
            raise PackageError(f"entry {name!r} appears twice")
        if info.file_size > limits.entry:
            raise PackageError(f"entry {name!r} holds {info.file_size} bytes, over the limit of {limits.entry} "
                               f"(raise it with --package-limit entry=SIZE)")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > limits.ratio * max(info.compress_size, 1):
            raise PackageError(f"entry {name!r} expands {info.compress_size} bytes to {info.file_size}, "
                               f"over the compression ratio limit of {limits.ratio}")
        total += info.file_size
        if total > limits.total:
            raise PackageError(f"entries hold over {limits.total} bytes together, over the limit "
                               f"(raise it with --package-limit total=SIZE)")
        found[name] = info
    return found


def read_limited(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """An entry read whole only when it is under ``limit`` bytes (however large it claims to be)."""
    if info.file_size > limit:
        raise PackageError(f"{info.orig_filename} holds {info.file_size} bytes, over the limit of {limit}")
    with archive.open(info) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise PackageError(f"{info.orig_filename} holds over {limit} bytes")
    return data


def read_json_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> Any:
    """A JSON entry read whole only when it is under ``limit`` bytes (however large it claims to be)."""
    return parse_json(info.orig_filename, read_limited(archive, info, limit))


def parse_json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise PackageError(f"{name} is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise PackageError(f"{name} is not valid JSON ({str(exc)[:200]})") from None


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON; Python's reader takes them unless told (a NaN compares false)."""
    raise ValueError(f"{name} is not a JSON number")


# -- status.json --------------------------------------------------------------------------------------
MAX_BATCH = 2**31 - 1  # Triton's max_batch_size is a 32-bit integer


def _integer(value: Any, where: str, lo: int, hi: int) -> None:
    _require(value is None or (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi),
             where, f"is not an integer from {lo} to {hi}: {str(value)[:40]!r}")


def _io(values: Any, where: str) -> None:
    """A model's inputs or outputs: names, dtypes and shapes (what a runner and Triton are given)."""
    values = [] if values is None else values
    _require(isinstance(values, list), where, "is not a list")
    for index, value in enumerate(values):
        here = f"{where}[{index}]"
        _require(isinstance(value, dict), here, "is not an object")
        _require(isinstance(value.get("name"), str) and value["name"], f"{here}.name", "is not a name")
        _require(isinstance(value.get("dtype", ""), str), f"{here}.dtype", "is not a string")
        shape = value.get("shape", [])
        _require(isinstance(shape, list) and len(shape) <= 64, f"{here}.shape", "is not a list of sizes")
        for size in shape:
            _integer(size, f"{here}.shape", -1, MAX_BATCH)

def _default(table: dict[str, Any], field: str) -> Any:
    """An object field, ``{}`` when absent or null (readers use ``or {}``)."""
    value = table.get(field)
    return {} if value is None else value


def _require(ok: Any, where: str, problem: str) -> None:
    if not ok:
        raise PackageError(f"status.json: {where} {problem}")


def _optional_digest(value: Any, where: str) -> None:
    _require(value is None or is_digest(value), where, f"is not a digest (32 hex digits): {str(value)[:80]!r}")


def _tensor_file(info: Any, where: str) -> None:
    if info is None:
        return
    _require(isinstance(info, dict), where, "is not an object")
    _optional_digest(info.get("digest"), f"{where}.digest")
    _optional_digest(info.get("key"), f"{where}.key")
    if info.get("path") is not None:
        _require(isinstance(info["path"], str), f"{where}.path", "is not a string")
        _named(info["path"], f"{where}.path")


def _named(name: Any, where: str) -> str:
    try:
        return check_name(name)
    except PackageError as exc:
        raise PackageError(f"status.json: {where}: {exc}") from None


def _target(target: Any, where: str) -> None:
    _require(isinstance(target, dict), where, "is not an object")
    _require(isinstance(target.get("packaged", False), bool), f"{where}.packaged", "is not true or false")
    _optional_digest(target.get("key"), f"{where}.key")
    _require(target.get("digest") is None or is_output_digest(target["digest"]), f"{where}.digest",
             f"is not a digest (32 hex digits, or c or m and 31 of them): {str(target.get('digest'))[:80]!r}")
    files = _default(target, "files")
    _require(isinstance(files, dict), f"{where}.files", "is not an object")
    for name, digest in files.items():
        _named(name, f"{where}.files")
        _require(is_digest(digest), f"{where}.files.{name}", f"is not a digest (32 hex digits): {str(digest)[:80]!r}")
    _require(isinstance(_default(target, "metadata"), dict), f"{where}.metadata", "is not an object")
    for field in ("format", "precision", "status", "runner", "device"):
        _require(isinstance(target.get(field, ""), (str, type(None))), f"{where}.{field}", "is not a string")
    if target.get("packaged"):
        _require(isinstance(target.get("dir"), str), f"{where}.dir", "is missing or not a string")
        _named(target["dir"], f"{where}.dir")


def check_status(status: Any, tensor_fields: Iterable[str]) -> dict[str, Any]:
    """``status.json`` of the shape docs/status-schema.md describes, every name and digest safe."""
    _require(isinstance(status, dict), "the document", "is not a JSON object")
    _require(isinstance(status.get("package"), dict), "package", "is missing or not an object")
    models = _default(status, "models")
    _require(isinstance(models, dict), "models", "is not an object")
    for model_name, model in models.items():
        where = f"models.{model_name}"
        _require(model_name and model_name.replace("_", "").replace("-", "").isalnum(), where,
                 "is not a model name (letters, digits, '-' and '_')")
        _require(isinstance(model, dict), where, "is not an object")
        for field in tensor_fields:
            _tensor_file(model.get(field), f"{where}.{field}")
        _integer(model.get("max_batch_size"), f"{where}.max_batch_size", 0, MAX_BATCH)
        _integer(model.get("batch_dim"), f"{where}.batch_dim", 0, 0)
        for field in ("inputs", "outputs"):
            _io(model.get(field), f"{where}.{field}")
        targets = _default(model, "targets")
        _require(isinstance(targets, dict), f"{where}.targets", "is not an object")
        for short, target in targets.items():
            try:
                check_component(short, "target name")
            except PackageError as exc:
                raise PackageError(f"status.json: {where}.targets: {exc}") from None
            _target(target, f"{where}.targets.{short}")
        _require(isinstance(_default(model, "selected"), Mapping), f"{where}.selected", "is not an object")
    return status
