"""Materialized outputs: the copies under ``navbuild-out/`` that users open, restored from the store.

Deleting or editing a materialized file never loses a build: the next run copies it out of the
store again (verified on the way). Each target's folder is ``<out>/<model>/<target>/``; a check or
a profile writes beside its artifact. A build removes the folders of targets (and models) that
navbuild.toml no longer declares (``prune``): what ``navbuild-out/`` holds is what is declared.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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

    def materialize(self, target: Target, manifest: dict[str, Any]) -> None:
        """Copy the manifest's files out of the store where they are missing or changed."""
        folder = self.folder(target)
        files = dict(manifest["files"])
        if manifest.get("log"):
            files[LOG_NAMES[target.kind]] = manifest["log"]
        for relative, digest in files.items():
            dest = folder / relative
            try:
                if self.store.files.digest(dest) == digest:
                    continue
            except FileNotFoundError:
                pass
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

        Only folders navbuild wrote are touched: a target folder holds one of its logs, and a
        model that is no longer declared loses its ``report/`` too, then its folder once empty.
        """
        if not self.out_root.is_dir():
            return []
        declared = {self.folder(t) for t in self.graph.targets.values() if t.kind == ARTIFACT}
        models = {t.spec.name for t in self.graph.targets.values()}
        removed = []
        for model_dir in sorted(p for p in self.out_root.iterdir() if p.is_dir() and not p.is_symlink()):
            for folder in sorted(p for p in model_dir.iterdir() if p.is_dir() and not p.is_symlink()):
                ours = any((folder / log).is_file() for log in LOG_NAMES.values())
                if folder.name == REPORT_DIR:
                    ours = model_dir.name not in models
                if folder in declared or not ours:
                    continue
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(f"{model_dir.name}/{folder.name}")
            if model_dir.name not in models and not any(model_dir.iterdir()):
                model_dir.rmdir()
        return removed
