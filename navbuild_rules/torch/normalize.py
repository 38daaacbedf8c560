"""Byte-reproducible TorchScript (``model.pt``) and torch.export (``model.pt2``) archives.

Measured with torch 2.13 on CPU, exporting the same model from two checkout folders, from two
processes, and twice in one process, these parts of the archives differed:

TorchScript (``torch.jit.trace`` and ``torch.jit.script``):
- ``code/**/*.py.debug_pkl``: source ranges, i.e. absolute file paths and line numbers (a comment
  edit moves them). Dropped: they only improve error messages; the archive loads and runs without.
- class names: the model's module is imported by path under a name that holds a hash of that path
  (``navbuild_entry_model_<hash>``), and it appears in every qualified name (pickles, code, file
  names). Renamed to ``model`` (``model_1``... if the model's classes come from several such files).
- ``___torch_mangle_<n>`` class names, temporaries ``_0`` and repeated local names ``input0``:
  numbered by counters that live in the process (and in each printed code file), with compiled
  types cached across exports, so they depend on what the process compiled before (measured: a
  second ``torch.jit.script`` of the same model in one process differs). Renamed canonically
  from the model's structure, code files regrouped to match: see ``torchscript_code.py``.
- ``Final`` constants in class bodies are printed in set order, which follows PYTHONHASHSEED:
  they are sorted.
- ``.data/serialization_id``: replaced by a digest of the normalized entries.

torch.export (``torch.export.save``):
- ``models/*.json``: each node's ``stack_trace`` (absolute paths, line numbers) is dropped and the
  path-dependent module name in ``nn_module_stack`` is renamed as above.
- ``.data/serialization_id``: as above.

Zips are rewritten with fixed timestamps and permissions by ``navbuild.ziputil``, keeping torch's
entry order.
"""
from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping

from navbuild import hashing, ziputil

from navbuild_rules.torch import torchscript_code

ENTRY_MODULE_PREFIX = "navbuild_entry_"  # navbuild.rule.call_entry's module names
SERIALIZATION_ID = ".data/serialization_id"


# -- names that depend on where the model file was imported from ---------------------------------
def path_module_aliases(model: Any) -> dict[str, str]:
    """Stable names for the Python modules of the model's classes that were imported by path."""
    names: list[str] = []
    for module in model.modules():
        name = type(module).__module__
        if name not in names and (name.startswith(ENTRY_MODULE_PREFIX) or name not in sys.modules):
            names.append(name)
    return {name: "model" if index == 0 else f"model_{index}" for index, name in enumerate(names)}


def module_renamer(aliases: Mapping[str, str]) -> Callable[[str], str]:
    if not aliases:
        return lambda text: text
    pattern = re.compile(r"(?<!\w)(" + "|".join(map(re.escape, aliases)) + r")(?!\w)")
    return lambda text: pattern.sub(lambda match: aliases[match.group(1)], text)


# -- TorchScript ----------------------------------------------------------------------------------
def normalize_torchscript(path: Path, aliases: Mapping[str, str]) -> None:
    """Rewrite a ``torch.jit.save`` archive in place so that the same model gives the same bytes."""
    rename = module_renamer(aliases)
    entries = [(rename(name), _rewrite_content(name, data, rename))
               for name, data in read_zip(path) if not name.endswith(".debug_pkl")]
    entries = torchscript_code.canonical_entries(entries)
    ziputil.write_zip(path, with_stable_serialization_id(entries), sort=False)


def _rewrite_content(name: str, data: bytes, rename: Callable[[str], str]) -> bytes:
    if name.endswith(".py"):
        return rename(data.decode("utf-8")).encode("utf-8")
    if name.endswith(".pkl"):
        return torchscript_code.rewrite_pickle_strings(data, rename)
    return data


# -- torch.export -----------------------------------------------------------------------------------
def normalize_pt2(path: Path, aliases: Mapping[str, str]) -> None:
    """Rewrite a ``torch.export.save`` archive in place: no stack traces, stable module names."""
    rename = module_renamer(aliases)
    entries = [(name, _normalize_json(data, rename) if name.endswith(".json") else data)
               for name, data in read_zip(path)]
    ziputil.write_zip(path, with_stable_serialization_id(entries), sort=False)


def _normalize_json(data: bytes, rename: Callable[[str], str]) -> bytes:
    return json.dumps(_strip_json(json.loads(data), rename)).encode("utf-8")


def _strip_json(value: Any, rename: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {key: _strip_json(item, rename) for key, item in value.items() if key != "stack_trace"}
    if isinstance(value, list):
        return [_strip_json(item, rename) for item in value]
    if isinstance(value, str):
        return rename(value)
    return value


# -- zips -----------------------------------------------------------------------------------------
def read_zip(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def with_stable_serialization_id(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """torch's ``.data/serialization_id`` replaced by 40 digits derived from the other entries."""
    content = [(name, hashing.digest_bytes(data)) for name, data in entries
               if not name.endswith(SERIALIZATION_ID)]
    stable = format(int(hashing.digest_value(content), 16) % 10 ** 40, "040d").encode("ascii")
    return [(name, stable if name.endswith(SERIALIZATION_ID) else data) for name, data in entries]
