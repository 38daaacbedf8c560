"""The Hugging Face encoder and the torchvision classifier examples build end to end (issue 9, item 3).

Each example is copied as it is shipped (its own navbuild.toml) into a temporary folder; only
profiling is turned off, and the torchvision build keeps two formats, to keep CI short.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from navbuild.cli import main

REPO = Path(__file__).resolve().parents[2]


def _copy(name: str, tmp_path: Path, formats: str | None = None) -> Path:
    root = tmp_path / name
    shutil.copytree(REPO / "examples" / name, root,
                    ignore=shutil.ignore_patterns("__pycache__", "navbuild-out", ".navbuild", "*.nav"))
    config = root / "navbuild.toml"
    text = config.read_text()
    start = text.index("[profile]")
    text = text[:start] + "[profile]\nenabled = false\n" + text[text.index("\n[models.", start):]
    if formats is not None:
        head, _, rest = text.partition("formats = ")
        text = head + f"formats = {formats}\n" + rest.partition("\n")[2]
    config.write_text(text)
    return config


def _build(config: Path) -> dict[str, dict]:
    report = config.parent / "run.json"
    assert main(["--config", str(config), "--json", str(report), "-q"]) == 0
    return json.loads(report.read_text())


def test_hugging_face_encoder_example(tmp_path):
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers is not installed (pip install navbuild[hf])")
    config = _copy("hf_encoder", tmp_path)
    records = _build(config)
    for fmt in ("torch", "torchscript-trace", "torch-export", "onnx"):
        assert records[f"bert:{fmt}"]["status"] == "built"
        check = records[f"bert:{fmt}.check"]
        assert check["status"] == "built" and check["correctness"]["passed"]
        assert sorted(check["correctness"]["outputs"]) == ["last_hidden_state", "pooler_output"]
    repo = tmp_path / "repo"
    assert main(["--config", str(config), "triton", "--repo", str(repo), "--target", "bert:onnx"]) == 0
    pbtxt = (repo / "bert" / "config.pbtxt").read_text()
    for name in ("input_ids", "attention_mask", "last_hidden_state", "pooler_output"):
        assert f'name: "{name}"' in pbtxt


def test_torchvision_classifier_example(tmp_path):
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed (pip install navbuild[vision])")
    config = _copy("torchvision", tmp_path, formats='["torchscript-trace", "onnx"]')
    records = _build(config)
    for fmt in ("torchscript-trace", "onnx"):
        assert records[f"mobilenet:{fmt}"]["status"] == "built"
        assert records[f"mobilenet:{fmt}.check"]["correctness"]["passed"]
