"""The output digest of an artifact: its bytes, its canonical digest, and the model's identity mixed
in when neither tells which model it was built from (docs/architecture.md, "What identifies a model")."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from navbuild.engine.actions import output_digest
from navbuild.hashing import tree_digest
from navbuild.rule import Rule


def _rule(**fields) -> Rule:
    return Rule(name="r", version="1", build=lambda ctx: None, **fields)


def _digest(rule: Rule, material: dict, tmp_path: Path) -> str:
    (tmp_path / "recipe.json").write_text('{"mode": "default"}')
    files = {"recipe.json": "0" * 32}
    return output_digest(SimpleNamespace(rule=rule), tmp_path, files, material)


MODEL_A = {"entry": "a.py:build", "sources": {"a.py": "1" * 32}}
MODEL_B = {"entry": "a.py:build", "sources": {"a.py": "2" * 32}}


def test_a_canonical_digest_that_names_no_model_carries_the_models_identity(tmp_path):
    recipe = _rule(normalized=False, canonical_digest=lambda out: "f" * 32)
    assert not recipe.output_identifies_model
    assert _digest(recipe, MODEL_A, tmp_path) != _digest(recipe, MODEL_B, tmp_path)
    upstream = {"upstream": {"target": "onnx", "digest": "3" * 32}}
    other = {"upstream": {"target": "onnx", "digest": "4" * 32}}
    assert _digest(recipe, upstream, tmp_path) != _digest(recipe, other, tmp_path)


def test_a_digest_that_identifies_the_model_keeps_early_cutoff(tmp_path):
    export = _rule(normalized=False, canonical_digest=lambda out: "f" * 32, identifies_model=True)
    assert _digest(export, MODEL_A, tmp_path) == _digest(export, MODEL_B, tmp_path) == "c" + "f" * 31
    normalized = _rule()
    assert normalized.output_identifies_model
    assert _digest(normalized, MODEL_A, tmp_path) == tree_digest({"recipe.json": "0" * 32})


def test_a_normalized_recipe_can_ask_for_the_models_identity(tmp_path):
    recipe = _rule(identifies_model=False)
    assert _digest(recipe, MODEL_A, tmp_path) != _digest(recipe, MODEL_B, tmp_path)
