"""What a target's rule declared for deployment, read from the build status: its Triton mapping
(``triton``) and whether it is a base format (``base``).

A status written before these keys existed (an older package, a hand-made status) is answered by
the rule registered here for the target's format and the model's framework.
"""
from __future__ import annotations

from typing import Any, Mapping

from navbuild.rule import Rule, TritonModel


def triton_model(target: Mapping[str, Any], framework: str | None) -> TritonModel | None:
    """The Triton mapping of the target's rule, or None (served through the python backend)."""
    if "triton" in target:
        data = target["triton"]
        return TritonModel.from_dict(data) if data else None
    rule = registered_rule(target, framework)
    return rule.triton if rule else None


def is_base(target: Mapping[str, Any], framework: str | None) -> bool:
    if "base" in target:
        return bool(target["base"])
    rule = registered_rule(target, framework)
    return bool(rule and rule.base)


def registered_rule(target: Mapping[str, Any], framework: str | None) -> Rule | None:
    from navbuild.engine.registry import RegistryError, default_registry

    try:
        return default_registry().rule(str(target.get("format")), framework or None)
    except RegistryError:
        return None
