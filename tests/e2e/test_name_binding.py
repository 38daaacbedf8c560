"""Names through the engine (issue 9, item 2): a model that declares no outputs is checked under its
forward's keys, and a model whose inputs do not match forward fails once, at its reference."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from navbuild.cli import main
from tests.rules.test_name_binding import TWO_HEADS

SAMPLES = textwrap.dedent('''

    def make_samples():
        generator = torch.Generator().manual_seed(0)
        samples = []
        for batch in (1, 2):
            ids = torch.randint(2, 50, (batch, 6), generator=generator)
            mask = (torch.rand(batch, 6, generator=generator) > 0.3).long()
            mask[:, 0] = 1
            samples.append({"attention_mask": mask, "input_ids": ids})
        return samples
''')


def _project(root: Path, inputs: list[str]) -> Path:
    (root / "heads").mkdir(parents=True)
    (root / "heads" / "model.py").write_text(TWO_HEADS + SAMPLES)
    config = root / "navbuild.toml"
    config.write_text(textwrap.dedent(f'''
        [project]
        name = "heads"

        [profile]
        enabled = false

        [models.heads]
        framework = "torch"
        entry = "heads/model.py:build_model"
        samples = "heads/model.py:make_samples"
        inputs = {json.dumps(inputs)}
        max_batch_size = 2

        [models.heads.targets]
        formats = ["torchscript-trace", "torch-export", "onnx"]
    '''))
    return config


def _build(config: Path, expect: int) -> dict[str, dict]:
    report = config.parent / "run.json"
    assert main(["--config", str(config), "--json", str(report), "-q"]) == expect
    return json.loads(report.read_text())


def test_a_model_without_declared_outputs_is_checked_under_its_keys(tmp_path):
    """Used to crash every check (``TypeError: unhashable type: 'dict'``) when no outputs were declared."""
    config = _project(tmp_path, ["attention_mask", "input_ids"])
    records = _build(config, expect=0)
    for fmt in ("torchscript-trace", "torch-export", "onnx"):
        check = records[f"heads:{fmt}.check"]
        assert check["status"] == "built", check
        assert sorted(check["correctness"]["outputs"]) == ["joint", "text"]


def test_inputs_that_do_not_match_forward_fail_once_before_any_artifact_builds(tmp_path):
    config = _project(tmp_path, ["ids", "attention_mask"])
    text = (tmp_path / "heads" / "model.py").read_text().replace('{"attention_mask": mask, "input_ids": ids}',
                                                                 '{"ids": ids, "attention_mask": mask}')
    (tmp_path / "heads" / "model.py").write_text(text)
    records = _build(config, expect=1)
    reference = records["heads:reference"]
    assert reference["status"] == "failed"
    assert "inputs ['ids', 'attention_mask'] do not match forward's parameters" in reference["reason"]
    for fmt in ("torchscript-trace", "torch-export", "onnx"):
        assert records[f"heads:{fmt}"]["status"] == "failed"
        assert records[f"heads:{fmt}"]["reason"] == "not run: heads:reference failed"
    assert not (tmp_path / "navbuild-out" / "heads" / "onnx").exists()


def test_triton_takes_a_qualified_target_and_says_how_torchscript_tensors_are_named(project, tmp_path, capsys):
    repo = tmp_path / "repo"
    args = ["--config", str(project.config), "triton", "--repo", str(repo)]
    assert main([*args, "--target", "cnn:torchscript-trace"]) == 0
    out = capsys.readouterr().out
    assert (repo / "cnn" / "1" / "model.pt").is_file()
    assert "clients use the names image -> image__0, logits -> logits__0" in out
    assert main([*args, "--target", "encoder:onnx"]) == 0
    assert "clients use the names" not in capsys.readouterr().out  # onnxruntime keeps the names
    assert main([*args, "--model", "cnn", "--target", "encoder:onnx"]) == 2
