"""Correctness messages that say what is wrong (issue 9, item 4): a source that disagrees with itself,
NaN in the reference, a trace of data-dependent code, a model left in training mode, and what
`navbuild triton` and `navbuild report` say when no target of a model is correct."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from navbuild.cli import main
from tests.rules.conftest import build, context, write_model

COMMON = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from torch import nn


    def make_samples():
        return [torch.full((1, 4), 1.0), torch.full((2, 4), -1.0)]
''')

MODELS = {
    # random draws in forward: two runs of the source differ
    "dropout": '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return F.dropout(self.linear(x), 0.5, training=True)
''',
    # log of a negative number: the reference itself holds NaN
    "nan": '''
class Net(nn.Module):
    def forward(self, x):
        return torch.log(x)
''',
    # a branch on a tensor's value: the trace keeps the branch of its example (batch 2, negative)
    "branchy": '''
class Net(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x - 1
''',
    # returned in training mode: navbuild puts it in eval mode and says so
    "training": '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.norm(x))
''',
}


def _project(root: Path) -> Path:
    config = ["[project]\nname = \"messages\"\n", "[profile]\nbatch_sizes = [1]\nwindow_size = 3\n"
              "min_window_s = 0.001\nmin_trials = 3\nmax_trials = 3\n"]
    for name, body in MODELS.items():
        (root / name).mkdir(parents=True)
        seed = "torch.manual_seed(0)\n    " if name != "dropout" else ""
        (root / name / "model.py").write_text(COMMON + body + f"\n\ndef build_model():\n    {seed}return Net()\n")
        config.append(textwrap.dedent(f'''
            [models.{name}]
            framework = "torch"
            entry = "{name}/model.py:build_model"
            samples = "{name}/model.py:make_samples"
            inputs = ["x"]
            outputs = ["y"]
            max_batch_size = 2

            [models.{name}.targets]
            formats = ["torchscript-trace", "onnx"]
        '''))
    path = root / "navbuild.toml"
    path.write_text("\n".join(config))
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("messages")
    config = _project(root)
    report = root / "run.json"
    assert main(["--config", str(config), "--json", str(report), "-q"]) == 1
    return config, json.loads(report.read_text())


def test_a_source_that_disagrees_with_itself_is_named_instead_of_every_format(built):
    _, records = built
    assert records["dropout:reference"]["status"] == "built"
    for fmt in ("torchscript-trace", "onnx"):
        reason = records[f"dropout:{fmt}.check"]["reason"]
        assert reason.startswith("the source model is not deterministic"), reason
        assert "atol >= " in reason and "for y (it has 0.0001)" in reason


def test_nan_in_the_reference_is_said_once_for_the_model(built):
    _, records = built
    reason = records["nan:reference"]["reason"]
    assert records["nan:reference"]["status"] == "failed"
    assert "the reference itself is unstable: output y of sample 1: 8 of 8 values are NaN" in reason
    assert "(the first at index (0, 0))" in reason
    for fmt in ("torchscript-trace", "onnx"):
        assert records[f"nan:{fmt}"]["reason"] == "not run: nan:reference failed"


def test_a_trace_of_data_dependent_code_fails_its_check_with_the_tracer_warning(built):
    _, records = built
    reason = records["branchy:torchscript-trace.check"]["reason"]
    assert "exceeds atol" in reason
    assert 'torch.jit.trace warned "TracerWarning: Converting a tensor to a Python boolean' in reason
    assert "use torchscript-script, or torch-export with the branch written as torch.cond" in reason


def test_a_model_in_training_mode_is_put_in_eval_mode_with_a_warning(built):
    config, records = built
    assert records["training:onnx.check"]["status"] == "built"
    log = (config.parent / "navbuild-out" / "training" / "reference" / "build.log").read_text()
    assert "warning: model training was in training mode (BatchNorm1d, Dropout)" in log


def test_triton_and_report_say_that_no_target_is_correct(built, tmp_path, capsys):
    config, _ = built
    capsys.readouterr()
    assert main(["--config", str(config), "triton", "--repo", str(tmp_path / "repo"), "--model", "dropout"]) == 1
    err = capsys.readouterr().err
    assert "model dropout: no target passed its correctness check (onnx: the source model is not" in err
    assert "run the profile/select step" not in err
    assert main(["--config", str(config), "report", "dropout"]) == 0
    out = capsys.readouterr().out
    assert "dropout: no target passed its correctness check" in out and "only correct targets are profiled" in out
    assert "navbuild profile dropout" not in out


def test_torch_export_of_data_dependent_code_fails_with_a_hint(tmp_path):
    source = COMMON + MODELS["branchy"] + "\n\ndef build_model():\n    return Net()\n"
    spec = write_model(tmp_path / "src", source, name="branchy", max_batch_size=2)
    with pytest.raises(RuntimeError) as failure:
        build("torch-export", context(tmp_path, spec, [{"x": np.ones((2, 4), np.float32)}]))
    headline = str(failure.value).splitlines()[0]
    assert "GuardOnDataDependentSymNode" in headline
    assert "write the branch as torch.cond, or use torchscript-script" in headline
