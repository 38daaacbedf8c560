"""Action keys: the material that decides whether a target must be rebuilt, and its digest.

The material is a plain dict so that ``explain`` can diff it against the last build's. Paths in it
are relative to the project root, so a clone in another folder computes the same keys.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from navbuild import fingerprint
from navbuild.graph import CHECK, Target
from navbuild.hashing import digest_value
from navbuild.rule import SOURCE

CHECK_VERSION = "1"
PROFILE_VERSION = "1"


class Pending(Exception):
    """The key cannot be known yet: an upstream target has no current build."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.upstream = upstream


def source_digests(root: Path, patterns: list[str], digest_of: Callable[[Path], str]) -> dict[str, str]:
    files: dict[str, str] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = digest_of(path)
    return files


def model_io(target: Target) -> dict[str, Any]:
    spec = target.spec
    return {"framework": spec.framework, "inputs": list(spec.inputs), "outputs": list(spec.outputs),
            "batch_dim": spec.batch_dim,
            "dynamic_axes": {k: {str(a): v for a, v in axes.items()} for k, axes in spec.dynamic_axes.items()}}


def artifact_material(target: Target, *, sources: dict[str, str], samples_digest: str | None,
                      upstream_digest: str | None) -> dict[str, Any]:
    rule = target.rule
    material: dict[str, Any] = {
        "kind": "artifact", "rule": rule.name, "rule_version": rule.version,
        "precision": target.precision, "device": target.device, "params": dict(target.params),
        "model": model_io(target), "tools": fingerprint.tool_versions(tuple(rule.tools)),
    }
    if rule.consumes == SOURCE:
        material["entry"] = target.spec.entry
        material["sources"] = sources
    else:
        material["upstream"] = {"target": target.upstream.split(":", 1)[1], "digest": upstream_digest}
    if samples_digest is not None:
        material["samples"] = samples_digest
    if rule.name == "samples":
        material["max_batch_size"] = target.spec.max_batch_size
    if rule.device_bound:
        material["device_fingerprint"] = fingerprint.device(target.device)
    return material


def check_material(target: Target, *, artifact: Target, artifact_digest: str, reference_digest: str,
                   samples_digest: str, runner: str, runner_tools: tuple[str, ...],
                   tolerances: dict[str, Any]) -> dict[str, Any]:
    assert target.kind == CHECK
    material = {
        "kind": "check", "version": CHECK_VERSION, "artifact": {"target": artifact.short, "digest": artifact_digest},
        "reference": reference_digest, "samples": samples_digest, "runner": runner,
        "tools": fingerprint.tool_versions(tuple(runner_tools)), "device": target.device,
        "precision": target.precision, "tolerances": tolerances,
    }
    if artifact.rule.device_bound or target.device == "cuda":
        material["device_fingerprint"] = fingerprint.device(target.device)
    return material


def profile_material(target: Target, *, artifact: Target, artifact_digest: str, samples_digest: str, runner: str,
                     runner_tools: tuple[str, ...], config: dict[str, Any]) -> dict[str, Any]:
    """Figures are only true of the machine that measured them: always keyed by its fingerprint."""
    return {
        "kind": "profile", "version": PROFILE_VERSION,
        "artifact": {"target": artifact.short, "digest": artifact_digest}, "samples": samples_digest,
        "runner": runner, "tools": fingerprint.tool_versions(tuple(runner_tools)), "device": target.device,
        "precision": target.precision, "config": config, "device_fingerprint": fingerprint.device(target.device),
    }


def key_of(material: dict[str, Any]) -> str:
    return digest_value(material)


def diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Human-readable differences between two materials (for ``navbuild explain``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines = []
        for key in sorted(set(old) | set(new), key=str):
            where = f"{prefix}.{key}" if prefix else str(key)
            if key not in old:
                lines.append(f"{where}: added ({_short(new[key])})")
            elif key not in new:
                lines.append(f"{where}: removed (was {_short(old[key])})")
            else:
                lines.extend(diff(old[key], new[key], where))
        return lines
    if old != new:
        return [f"{prefix}: {_short(old)} -> {_short(new)}"]
    return []


def _short(value: Any) -> str:
    text = repr(value)
    if isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    return text if len(text) <= 80 else text[:77] + "..."
