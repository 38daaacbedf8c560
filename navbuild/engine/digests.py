"""An artifact's output digest: what its downstream keys (checks, profiles, conversions) are made
of, so two models must never share one (docs/architecture.md, "What identifies a model").

The digest of the files themselves (their tree digest), or a rule's ``canonical_digest`` where the
bytes are not reproducible (``c`` + 31 hex digits); when the rule says its output does not name
its model (a recipe, a config), the model's identity is mixed in (``m`` + 31 hex digits,
``binding.with_identity``). A build (``actions.execute``), a restore from the remote cache and a
package import all compute it here; ``binding`` checks a manifest's digest against its files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from navbuild.engine import binding
from navbuild.engine.graph import Target
from navbuild.hashing import tree_digest


def output_digest(target: Target, out_dir: Path, files: dict[str, str], material: dict[str, Any]) -> str:
    rule = target.rule
    canonical = rule is not None and not rule.normalized and rule.canonical_digest is not None
    digest = rule.canonical_digest(out_dir) if canonical else tree_digest(files)
    if rule is not None and not rule.output_identifies_model:
        # A recipe or a config names no model: without the model's identity, two models with the same
        # options would share one digest, and one's checks and profiles be served for the other.
        return binding.with_identity(digest, material)
    return "c" + digest[:31] if canonical else digest
