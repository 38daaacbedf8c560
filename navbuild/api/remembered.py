"""What each ``navbuild.Module``'s last in-place optimize left in the store, so that
``navbuild.load_optimized()`` in a new process, with no optimize before it, finds it again.

After a module is built, ``remember`` writes ``<store>/inplace/<module>.json``: the module's identity
digest (``identity.py``), the structure of the calls it was optimized for (names, dtypes and the
range of every dimension: what the optimized module may serve), its output's structure, and the
project mapping its targets were keyed under. ``recall`` reads it back for a module of the same
name: when the live module's identity is still the one recorded, the targets' status is collected
from the store under that mapping (nothing is built) and the module gets its ``Package``; a module
whose code or weights changed since gets the reason instead, and keeps its original code.

The record is plain JSON, read as data: output classes are looked up by name among the modules the
process has already imported, never imported or unpickled because the record names them.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from navbuild.api import calls
from navbuild.api.config import OptimizeConfig
from navbuild.api.recording import Recording

SCHEMA = "navbuild-inplace/1"
FOLDER = "inplace"
DEFAULT_STORE = ".navbuild"  # engine/config.py's default ``[project] store``


@dataclass
class Recalled:
    """A module's last optimize, found again: its package and what its optimized runner serves."""

    package: Any
    recorded: Recording


class NotRecalled(Exception):
    """Why a module's last optimize cannot be used (the module keeps its original code)."""


def record_path(store_root: Path, name: str) -> Path:
    return Path(store_root) / FOLDER / f"{name}.json"


def store_root(config: OptimizeConfig, root: Path) -> Path:
    """Where the store of ``config``'s project is, as ``engine.config`` resolves ``[project] store``."""
    store = Path(config.store) if config.store is not None else Path(DEFAULT_STORE)
    return store if store.is_absolute() else Path(root) / store


# -- writing ------------------------------------------------------------------------------------------
def remember(store: Path, source: Any, recorded: Recording, mapping: Mapping[str, Any], method: str | None) -> None:
    """Write the record of one module's optimize (``source``: its ``project.ModelSource``)."""
    from navbuild.engine.atomic import atomic_write

    live = source.live
    record = {
        "schema": SCHEMA, "module": source.name, "identity": source.identity, "method": method,
        "call": {"tree": live["call"].tree, "names": list(live["call"].names)},
        "output_tree": live["output_tree"], "output_classes": sorted(live.get("output_classes") or {}),
        "output_dtypes": [_dtype_name(d) for d in live.get("output_dtypes") or []],
        "recorded": {"ranges": {name: [list(r) for r in ranges] for name, ranges in recorded.ranges.items()},
                     "dtypes": {name: _dtype_name(d) for name, d in recorded.dtypes.items()}},
        "samples": source.samples,
        "mapping": {**{k: v for k, v in mapping.items() if k != "models"},
                    "models": {source.name: mapping["models"][source.name]}},
    }
    try:
        data = json.dumps(record, indent=1, sort_keys=True, allow_nan=False).encode()
    except (TypeError, ValueError):  # a constant JSON cannot hold: this module is not remembered
        return
    atomic_write(record_path(store, source.name), data, durable=False)


# -- reading ------------------------------------------------------------------------------------------
def recall(module: Any, config: OptimizeConfig) -> Recalled:
    """The package of ``module``'s last optimize under ``config``'s workspace and store, or
    ``NotRecalled`` saying why not."""
    from navbuild.api.project import Workspace

    workspace = Workspace(config)
    path = record_path(store_root(config, workspace.root), module.name)
    record = _read(path)
    if record is None:
        raise NotRecalled(f"no optimize of module {module.name} is recorded in {path.parent} (call "
                          f"navbuild.optimize(pipeline, dataloader) once; later processes find it)")
    call = calls.Call(record["call"]["tree"], list(record["call"]["names"]))
    exported, identity = _identity(module, call, record)
    if identity != record["identity"]:
        raise NotRecalled(f"its code or weights changed since its last optimize (identity {identity[:12]} now, "
                          f"{str(record['identity'])[:12]} then): run navbuild.optimize again")
    if not (workspace.root / record["samples"]).is_file():
        raise NotRecalled(f"the samples of its last optimize ({record['samples']}) are gone: run navbuild.optimize again")
    from navbuild.api import objects

    objects.write_entry(workspace.root, module.name, exported, identity)  # the eager target runs it
    return Recalled(_package(workspace.root, module.name, record, call), _recording(call, record))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    needed = ("identity", "call", "output_tree", "recorded", "samples", "mapping")
    if not isinstance(record, dict) or record.get("schema") != SCHEMA or any(k not in record for k in needed):
        return None
    return record


def _identity(module: Any, call: calls.Call, record: Mapping[str, Any]) -> tuple[Any, str]:
    """The live module as its optimize exported it, and that object's identity digest."""
    from navbuild.api.identity import model_identity
    from navbuild.api.sources import exported_model

    exported = exported_model(module._captured(), call, record.get("method"), calls.plain(record["output_tree"]))
    return exported, model_identity(exported)


def _package(root: Path, name: str, record: Mapping[str, Any], call: calls.Call) -> Any:
    """The module's targets as the store holds them now, under the mapping they were built with."""
    from navbuild.api.config import LABEL
    from navbuild.api.package import Package
    from navbuild.deploy import status
    from navbuild.engine.project import open_mapping
    from navbuild.engine.options import Options

    session = open_mapping(record["mapping"], root, label=LABEL, options=Options(isolate=False))
    try:
        collected, figures = status.collect_all(session, models=[name])
    finally:
        session.close()
    live = {"call": call, "output_tree": record["output_tree"],
            "output_classes": _classes(record.get("output_classes") or []),
            "output_dtypes": [_dtype(d) for d in record.get("output_dtypes") or []]}
    return Package(name, collected["models"][name], project_status=collected, root=session.project.root,
                   live=live, figures=figures["models"][name], project_figures=figures)


def _recording(call: calls.Call, record: Mapping[str, Any]) -> Recording:
    recorded = record["recorded"]
    return Recording(limit=0, call=call,
                     ranges={n: [tuple(r) for r in ranges] for n, ranges in recorded["ranges"].items()},
                     dtypes={n: _dtype(d) for n, d in recorded["dtypes"].items()})


def _dtype_name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _classes(names: list[str]) -> dict[str, type]:
    """Output classes by the name ``calls.describe`` gave them, from modules already imported."""
    found = {}
    for full in names:
        parts = full.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            owner = sys.modules.get(".".join(parts[:cut]))
            if owner is None:
                continue
            value: Any = owner
            for attribute in parts[cut:]:
                value = getattr(value, attribute, None)
            if isinstance(value, type):
                found[full] = value
            break
    return found
