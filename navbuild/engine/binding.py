"""A manifest bound to its bytes: its output digest must follow from the digests of the files it names.

An artifact's output digest is one of (``digests.output_digest``):

- the tree digest of its files (``hashing.tree_digest``): a normalized output;
- ``m`` + the digest of that tree digest and the model's identity (``model_identity``): an output
  whose bytes do not name the model (a recipe);
- a rule's canonical digest (``c``), or ``m`` over one: bytes that differ from build to build (a
  TensorRT plan). Its manifest then records the files' tree digest beside it, as ``bytes``.

``problem`` recomputes what can be recomputed, so a manifest whose ``files`` were pointed at other
objects (each one valid) is caught on every restore and by ``fsck``, not served. Manifests written
before ``bytes`` existed (schema 1), with a canonical digest, cannot be checked and are taken as they are.
"""
from __future__ import annotations

from typing import Any, Mapping

from navbuild.hashing import digest_value, tree_digest

PREFIXED = "cm"  # a canonical digest, or one with the model's identity mixed in
BOUND_SCHEMA = 2  # manifests of this schema and later record ``bytes`` wherever their digest is not the tree's


def model_identity(material: Mapping[str, Any]) -> dict[str, Any]:
    """What in an artifact's key material names its model: the entry and source digests (declared,
    and discovered when the build found any: a helper module the model imports), or the upstream
    artifact's digest."""
    if "sources" in material:
        identity = {"entry": material.get("entry"), "sources": material["sources"]}
        discovered = (material.get("discovered") or {}).get("sources")
        return {**identity, "discovered": discovered} if discovered else identity
    return {"upstream": material["upstream"]["digest"]}


def with_identity(output: str, material: Mapping[str, Any]) -> str:
    """An output digest with the model's identity mixed in (``m`` and 31 hex digits)."""
    return "m" + digest_value({"output": output, "model": model_identity(material)})[:31]


def files_digest(manifest: Mapping[str, Any]) -> str:
    return tree_digest(manifest["files"])


def bytes_field(digest: str, files: Mapping[str, str]) -> dict[str, str]:
    """What a manifest records beside a digest that its files' tree digest is not: ``{"bytes": ...}``."""
    tree = tree_digest(files)
    return {} if digest == tree else {"bytes": tree}


def problem(manifest: Mapping[str, Any]) -> str | None:
    """Why ``manifest``'s digest does not follow from its files (None when it does, or cannot be told)."""
    digest, tree = manifest["digest"], files_digest(manifest)
    if digest == tree:
        return None
    material = manifest.get("material")
    if digest.startswith("m") and isinstance(material, Mapping) and _identity_known(material) \
            and digest == with_identity(tree, material):
        return None
    recorded = manifest.get("bytes")
    if digest[:1] in PREFIXED and recorded is not None:
        return None if recorded == tree else f"its files give {tree[:12]}, not the {str(recorded)[:12]} recorded"
    if digest[:1] in PREFIXED and manifest.get("schema", 1) < BOUND_SCHEMA:
        return None  # a canonical digest written before manifests recorded their bytes: not checkable
    return f"its files give digest {tree[:12]}, not its digest {digest[:12]}"


def _identity_known(material: Mapping[str, Any]) -> bool:
    upstream = material.get("upstream")
    return "sources" in material or (isinstance(upstream, Mapping) and "digest" in upstream)
