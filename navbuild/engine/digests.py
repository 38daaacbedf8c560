"""An artifact's output digest: what its downstream keys (checks, profiles, conversions) are made
of, so two models must never share one (docs/architecture.md, "What identifies a model").

The digest of the files themselves (their tree digest), or a rule's ``canonical_digest`` where the
bytes are not reproducible (``c`` + 31 hex digits); when the rule says its output does not name
its model (a recipe, a config), the model's identity is mixed in (``m`` + 31 hex digits). A build
(``actions.execute``), a restore from the remote cache and a package import all compute it here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.engine.graph import Target
from navbuild.hashing import digest_value, tree_digest


def output_digest(target: Target, out_dir: Path, files: dict[str, str], material: dict[str, Any]) -> str:
    rule = target.rule
    canonical = rule is not None and not rule.normalized and rule.canonical_digest is not None
    digest = rule.canonical_digest(out_dir) if canonical else tree_digest(files)
    if rule is not None and not rule.output_identifies_model:
        # A recipe or a config names no model: without the model's identity, two models with the same
        # options would share one digest, and one's checks and profiles be served for the other.
        return "m" + digest_value({"output": digest, "model": model_identity(material)})[:31]
    return "c" + digest[:31] if canonical else digest


def model_identity(material: dict[str, Any]) -> dict[str, Any]:
    """What in an artifact's key material names its model: the entry and source digests, or the
    upstream artifact's digest."""
    if "sources" in material:
        return {"entry": material.get("entry"), "sources": material["sources"]}
    return {"upstream": material["upstream"]["digest"]}
