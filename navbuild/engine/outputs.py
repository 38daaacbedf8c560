"""Materialized outputs: the copies under ``navbuild-out/`` that users open, restored from the store.

Deleting or editing a materialized file never loses a build: the next run copies it out of the
store again (verified on the way). Each target's folder is ``<out>/<model>/<target>/``; a check or
a profile writes beside its artifact. Folders are made through ``own``, which marks those it makes
(``engine/owned.py``), so that ``clean`` and ``prune`` delete only what navbuild wrote. A build
removes the folders of targets (and models) that navbuild.toml no longer declares (``prune``): what
``navbuild-out/`` holds is what is declared.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from navbuild.engine import owned
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, Graph, Target
from navbuild.engine.keys import KeyResolver, Pending
from navbuild.engine.store import Store

LOG_NAME = "build.log"
CHECK_FILE = "correctness.json"
PROFILE_FILE = "profile.json"
LOG_NAMES = {ARTIFACT: LOG_NAME, CHECK: "check.log", PROFILE: "profile.log"}
REPORT_DIR = "report"  # navbuild-out/<model>/report/: `navbuild report`


class Outputs:
    def __init__(self, out_root: Path, graph: Graph, store: Store, keys: KeyResolver) -> None:
        self.out_root, self.graph, self.store, self.keys = out_root, graph, store, keys

    def folder(self, target: Target) -> Path:
        name = target.name if target.kind == ARTIFACT else target.artifact
        model, short = name.split(":", 1)
        return self.out_root / model / short

    def log_path(self, target: Target) -> Path:
        return self.folder(target) / LOG_NAMES[target.kind]

    def own(self, folder: Path) -> Path:
        """``folder`` (under out) made where missing, the folders made marked as navbuild's; a target
        folder written before markers existed (it holds a log) is marked now."""
        owned.make(folder, self.out_root)
        if folder.parent.parent == self.out_root and owned.is_ours(folder, LOG_NAMES.values()):
            owned.mark(folder)
        return folder

    def materialize(self, target: Target, manifest: dict[str, Any]) -> None:
        """Copy the manifest's files out of the store where they are missing or changed."""
        folder = self.folder(target)
        files = dict(manifest["files"])
        if manifest.get("log"):
            files[LOG_NAMES[target.kind]] = manifest["log"]
        made = False
        for relative, digest in files.items():
            dest = folder / relative
            try:
                if self.store.files.digest(dest) == digest:
                    continue
            except FileNotFoundError:
                pass
            if not made:
                made = bool(self.own(folder))
            self.store.copy_object(digest, dest)

    def materialized(self, name: str) -> Path:
        """The folder of an upstream target's verified files (it is current: doit ran it first)."""
        manifest = self.keys.current_manifest(name)
        if manifest is None:
            raise Pending(name)
        target = self.graph.targets[name]
        self.materialize(target, manifest)
        return self.folder(target)

    def prune(self) -> list[str]:
        """Remove the output folders of targets no longer declared; returns them as ``model/target``.

        Only folders navbuild wrote are touched (``owned.is_ours``: marked, or holding one of its
        logs), and a model that is no longer declared loses its ``report/`` too, then its folder
        once empty but for its marker.
        """
        if not self.out_root.is_dir():
            return []
        declared = {self.folder(t) for t in self.graph.targets.values() if t.kind == ARTIFACT}
        models = {t.spec.name for t in self.graph.targets.values()}
        removed = []
        for model_dir in sorted(p for p in self.out_root.iterdir() if p.is_dir() and not p.is_symlink()):
            emptied = False
            for folder in sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink()):
                ours = owned.is_ours(folder, LOG_NAMES.values())
                if folder.name == REPORT_DIR:  # report.json: a report written before markers existed
                    ours = owned.is_ours(folder, ("report.json",)) and model_dir.name not in models
                if folder in declared or not ours:
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(f"{model_dir.name}/{folder.name}")
                emptied = True
            left = [p for p in model_dir.iterdir() if p.name != owned.MARKER]
            if model_dir.name not in models and not left and (emptied or owned.is_marked(model_dir)):
                shutil.rmtree(model_dir, ignore_errors=True)
        return removed
