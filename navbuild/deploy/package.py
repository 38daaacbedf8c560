"""The ``.nav`` package: a byte-reproducible zip of the build status and the artifacts worth moving.

Layout (every name relative, sorted, fixed timestamps and permissions: ``navbuild.ziputil``)::

    status.json                   the build status (docs/status-schema.md), paths package-relative,
                                  without what was measured (``status.split_measured``)
    <model>/<samples file>        sample inputs (the file the samples rule declares)
    <model>/<reference file>      the source model's outputs on them (the reference rule's file)
    <model>/<target>/<file>       files of each packaged target

Packaged targets: the base portable formats (``base`` in the status, as their rules declare, at
fp32: what other targets can be rebuilt from on another machine), the targets selected by the given strategies,
or every built target with ``include_all``. Every target stays described in status.json; those whose
files travel carry ``"packaged": true`` and ``"dir": "<model>/<target>"``.

The bytes depend only on what two clean builds reproduce: profiles, the figures behind the
selections, build times and the machine stay out (``write_figures`` puts them in a JSON file
beside the package), so the same sources, settings, tools and selections give the same bytes.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

from navbuild.deploy import declared
from navbuild.deploy.package_checks import (DEFAULT_LIMITS, MAX_SIGNATURE_BYTES, SIGNATURE_ENTRY, Limits,
                                            PackageError, check_entries, check_name, check_status, parse_json,
                                            read_limited)
from navbuild.hashing import copy_with_digest, digest_bytes
from navbuild.rule import ROLES
from navbuild.ziputil import write_zip

PACKAGE_FORMAT = "navbuild-package/1"
STATUS_SCHEMA_PREFIX = "navbuild-status/"
STATUS_ENTRY = "status.json"
BASE_PRECISIONS = (None, "fp32")
USABLE = ("built", "cached")
# an absolute POSIX path's folders inside free text (a traceback in a failed target's reason)
_ABS_DIRS = re.compile(r"(?<![\w.:/~-])/(?:[^\s/\"'`<>|]+/)+")


def dumps_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, fixed separators and indentation, trailing newline."""
    return (json.dumps(value, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=True)
            + "\n").encode()


# -- writing ------------------------------------------------------------------------------------
def packaged_targets(model: Mapping[str, Any], strategies: Iterable[str], include_all: bool) -> list[str]:
    """Names of the targets of one model whose files go into the package."""
    targets = model.get("targets") or {}
    chosen = set()
    for name, target in targets.items():
        if target.get("status") not in USABLE:
            continue
        base = declared.is_base(target, model.get("framework")) and target.get("precision") in BASE_PRECISIONS
        if include_all or base:
            chosen.add(name)
    for strategy in strategies:
        name = (model.get("selected") or {}).get(strategy)
        if name and name in targets and targets[name].get("status") in USABLE:
            chosen.add(name)
    return sorted(chosen)


def _scrub(value: Any, replacements: list[tuple[str, str]]) -> Any:
    """Strings with known absolute prefixes made relative, other absolute folders shortened."""
    if isinstance(value, dict):
        return {k: _scrub(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, replacements) for v in value]
    if isinstance(value, str):
        for old, new in replacements:
            value = value.replace(old, new)
        return _ABS_DIRS.sub(".../", value)
    return value


_check_name = check_name  # the same rule for the names a package is written with


def _read_checked(path: Path, digest: str | None, label: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PackageError(f"{label}: cannot read {path}: {exc.strerror}") from None
    if digest and digest_bytes(data) != digest:
        raise PackageError(f"{label}: {path} does not match its digest in the status "
                           f"(changed after the build; rebuild it)")
    return data


def package_entries(status: Mapping[str, Any], *, strategies: Iterable[str] = ("max-throughput",),
                    include_all: bool = False) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of every entry of the package, status.json included."""
    strategies = tuple(strategies)
    from navbuild.deploy.status import split_measured

    schema = str(status.get("schema", ""))
    if not schema.startswith(STATUS_SCHEMA_PREFIX):
        raise PackageError(f"not a navbuild build status (schema {schema!r})")
    packed, _ = split_measured(status)
    root = packed.pop("root", None)
    entries: list[tuple[str, bytes]] = []
    replacements: list[tuple[str, str]] = []
    for model_name, model in sorted((packed.get("models") or {}).items()):
        _check_name(model_name)
        for key in ROLES:
            info = model.get(key)
            if not info or not info.get("path"):
                continue
            entry = f"{model_name}/{_check_name(Path(info['path']).name)}"
            entries.append((entry, _read_checked(Path(info["path"]), info.get("digest"), f"{model_name} {key}")))
            replacements.append((str(info["path"]), entry))
            info["path"] = entry
        chosen = set(packaged_targets(model, strategies, include_all))
        _refuse_unproven(model_name, model, chosen)
        for target_name, target in sorted((model.get("targets") or {}).items()):
            folder = target.pop("dir", None)
            target["packaged"] = target_name in chosen
            if target_name not in chosen:
                continue
            prefix = f"{model_name}/{_check_name(target_name)}"
            if folder:
                replacements.append((str(folder), prefix))
            for file_name, digest in sorted((target.get("files") or {}).items()):
                if not folder:
                    raise PackageError(f"{model_name}:{target_name} has files but no 'dir' in the status")
                entry = f"{prefix}/{_check_name(file_name)}"
                entries.append((entry, _read_checked(Path(folder) / file_name, digest,
                                                     f"{model_name}:{target_name}")))
            target["dir"] = prefix
    if root:
        replacements += [(str(root).rstrip("/") + "/", ""), (str(root), ".")]
    # longest first, so a target folder wins over the project root that holds it
    replacements.sort(key=lambda pair: -len(pair[0]))
    packed = _scrub(packed, replacements)
    packed["package"] = {"format": PACKAGE_FORMAT, "strategies": list(strategies), "include_all": include_all}
    entries.append((STATUS_ENTRY, dumps_json(packed)))
    return entries


def _refuse_unproven(model_name: str, model: Mapping[str, Any], chosen: set[str]) -> None:
    """An artifact imported from a package is shipped again only when it is proven: signed by a key
    the project trusts (its origin says so), or rebuilt here with the same digest (it then has no
    origin: it is this project's build)."""
    unproven = [(name, target["origin"]) for name, target in sorted((model.get("targets") or {}).items())
                if name in chosen and (target.get("origin") or {}).get("imported")
                and not target["origin"].get("proven")]
    if unproven:
        names = ", ".join(f"{model_name}:{name} (imported from {origin['imported']})" for name, origin in unproven)
        first = f"{model_name}:{unproven[0][0]}"
        raise PackageError(f"{names}: not proven, so not shipped (no key in [trust] keys signed the package, and "
                           f"this project has not rebuilt it); `navbuild verify {first}` rebuilds it here and "
                           f"proves it when the digests agree, `navbuild {first} --force` replaces it with this "
                           f"project's build")


def write_package(status: Mapping[str, Any], dest: Path, *, strategies: Iterable[str] = ("max-throughput",),
                  include_all: bool = False, sign_key: Any = None) -> Path:
    """Write the ``.nav`` package of ``status`` to ``dest``; the same status gives the same bytes.
    ``sign_key`` (``signing.load_private_key``) adds ``signature.json``, signing every entry."""
    dest = Path(dest)
    entries = package_entries(status, strategies=strategies, include_all=include_all)
    if sign_key is not None:
        from navbuild.deploy import signing

        entries.append(signing.signature_entry(entries, sign_key))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_zip(dest, entries)
    return dest


def figures_path(package: Path) -> Path:
    """Where the figures of ``package`` go: ``<name>.profile.json`` beside ``<name>.nav``."""
    package = Path(package)
    return package.with_name(package.stem + ".profile.json")


def write_figures(figures: Mapping[str, Any], dest: Path) -> Path:
    """The measured half of a build (``status.split_measured``) as canonical JSON."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(dumps_json(figures))
    tmp.replace(dest)
    return dest


# -- reading ------------------------------------------------------------------------------------
@dataclass
class PackageContents:
    """A read package: ``status`` (package-relative paths, checked by ``package_checks``) and access
    to its entries. Every entry is read as a bounded stream; nothing is extracted unless asked."""

    path: Path
    status: dict[str, Any]
    names: list[str]
    limits: Limits = DEFAULT_LIMITS
    status_bytes: bytes = b""  # status.json as read: what a signature covers
    signature: Any = None  # signature.json, parsed, when the package is signed

    def signer(self, trusted: Iterable[str]) -> Any:
        """Who signed the package among ``trusted`` keys (a ``signing.Signer``; None: unsigned, or
        signed by another key)."""
        from navbuild.deploy import signing

        return signing.check(self.path, self.signature, self.status_bytes, trusted)

    @contextlib.contextmanager
    def stream(self, name: str) -> Iterator[IO[bytes]]:
        """The entry's bytes as a stream (zipfile stops at the size the directory declares)."""
        if name not in self.names:
            raise PackageError(f"{self.path}: no entry {name!r}")
        with zipfile.ZipFile(self.path) as archive, archive.open(name) as stream:
            yield stream

    def read(self, name: str) -> bytes:
        with self.stream(name) as stream:
            data = stream.read(self.limits.entry + 1)
        if len(data) > self.limits.entry:
            raise PackageError(f"{self.path}: entry {name!r} holds over {self.limits.entry} bytes")
        return data

    def artifacts(self) -> list[tuple[str, str | None, str]]:
        """``(entry name, expected digest, label)`` of every file the status says is inside."""
        found = []
        for model_name, model in sorted((self.status.get("models") or {}).items()):
            for key in ROLES:
                info = model.get(key)
                if info and info.get("path"):
                    found.append((info["path"], info.get("digest"), f"{model_name} {key}"))
            for target_name, target in sorted((model.get("targets") or {}).items()):
                if target.get("packaged"):
                    for file_name, digest in sorted((target.get("files") or {}).items()):
                        found.append((f"{target['dir']}/{file_name}", digest, f"{model_name}:{target_name}"))
        return found

    def extract(self, dest: Path) -> dict[str, Any]:
        """Extract every entry under ``dest`` (each streamed to a temporary file, digest checked, then
        renamed); returns the status with absolute paths, ready for ``write_model_repository`` or
        ``PyTritonAdapter``."""
        dest = Path(dest).resolve()
        for name, digest, label in self.artifacts():
            target = dest / check_name(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with self.stream(name) as src, os.fdopen(fd, "wb") as out:
                    actual = _copy(src, out, self.limits.entry, name)
                _verify(actual, digest, name, label)
                os.replace(tmp, target)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        status = copy.deepcopy(self.status)
        for model in (status.get("models") or {}).values():
            for key in ROLES:
                if model.get(key) and model[key].get("path"):
                    model[key]["path"] = str(dest / model[key]["path"])
            for target in (model.get("targets") or {}).values():
                if target.get("packaged"):
                    target["dir"] = str(dest / target["dir"])
        return status


def _copy(src: IO[bytes], out: IO[bytes], limit: int, name: str) -> str:
    try:
        return copy_with_digest(src, out, limit)
    except ValueError as exc:
        raise PackageError(f"entry {name}: {exc}") from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise PackageError(f"entry {name} is damaged: {exc}") from None


def _verify(actual: str, expected: str | None, name: str, label: str) -> None:
    if expected and actual != expected:
        raise PackageError(f"package entry {name} ({label}) has digest {actual}, "
                           f"but status.json records {expected}")


def read_package(path: Path, limits: Limits = DEFAULT_LIMITS) -> PackageContents:
    """Open a ``.nav`` package: its entries and status checked (``package_checks``), nothing extracted.

    Raises PackageError, naming the entry or field, for anything a navbuild package cannot hold.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = check_entries(archive, limits, path.stat().st_size)
            if STATUS_ENTRY not in infos:
                raise PackageError(f"no {STATUS_ENTRY}; not a navbuild package")
            status_bytes = read_limited(archive, infos[STATUS_ENTRY], limits.status)
            status = parse_json(STATUS_ENTRY, status_bytes)
            signature = None
            if SIGNATURE_ENTRY in infos:
                signature = parse_json(SIGNATURE_ENTRY, read_limited(archive, infos[SIGNATURE_ENTRY],
                                                                     MAX_SIGNATURE_BYTES))
    except zipfile.BadZipFile as exc:
        raise PackageError(f"{path}: not a zip file ({exc})") from None
    except (zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error) as exc:
        raise PackageError(f"{path}: unreadable zip ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise PackageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except PackageError as exc:
        raise PackageError(f"{path}: {exc}") from None
    package = status.get("package") if isinstance(status, dict) else None
    package_format = package.get("format") if isinstance(package, dict) else None
    if package_format != PACKAGE_FORMAT:
        raise PackageError(f"{path}: package format {package_format!r}, expected {PACKAGE_FORMAT!r}")
    try:
        check_status(status, ROLES)
    except PackageError as exc:
        raise PackageError(f"{path}: {exc}") from None
    contents = PackageContents(path=path, status=status, names=sorted(infos), limits=limits,
                               status_bytes=status_bytes, signature=signature)
    listed = {name for name, _, _ in contents.artifacts()}
    missing = sorted(listed - set(infos))
    if missing:
        raise PackageError(f"{path}: status.json lists entries missing from the zip: {', '.join(missing)}")
    unlisted = sorted(set(infos) - listed - {STATUS_ENTRY, SIGNATURE_ENTRY})
    if unlisted:
        raise PackageError(f"{path}: entries that status.json does not describe: {', '.join(unlisted[:5])}")
    return contents


def scan_artifacts(status: dict[str, Any], label: Path) -> None:
    """Every packaged target's files read by its rule's ``scan`` (as data, before a runner loads them):
    one that reaches outside the model (a file read or write, a custom operator) refuses the package.
    Targets whose rule is not installed or declares no scan are left to their runner."""
    from navbuild.engine.registry import RegistryError, default_registry

    registry = default_registry()
    for model_name, model in sorted((status.get("models") or {}).items()):
        for short, target in sorted((model.get("targets") or {}).items()):
            if not target.get("packaged") or not target.get("dir"):
                continue
            try:
                rule = registry.rule(target.get("rule") or target.get("format") or short, model.get("framework"))
            except RegistryError:
                continue
            problem = rule.scan(Path(target["dir"])) if rule.scan is not None else None
            if problem:
                raise PackageError(f"{label}: {model_name}:{short}: {problem}; the package is refused")


def import_package(path: Path, put_stream: Callable[[IO[bytes], str | None, str], Any],
                   limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Hand every packaged file to ``put_stream(stream, expected_digest, label)``, which must check
    the digest as it stores the bytes (a store's staging does). Returns the package's status
    (package-relative paths). ``navbuild build --from`` uses ``navbuild.deploy.package_import``,
    which imports only what the local graph can use."""
    contents = read_package(path, limits)
    for name, digest, label in contents.artifacts():
        with contents.stream(name) as stream:
            put_stream(stream, digest, f"{name} ({label})")
    return contents.status
