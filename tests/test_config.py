"""Every config error gives one message naming file, key and fix, and exit code 2; nothing is built."""
from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.cli import main
from tests.example_cnn import cnn_config, copy_vision

REPO = Path(__file__).resolve().parents[1]

GOOD = cnn_config("t", profile="", formats=("onnx",), outputs=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_vision(tmp_path)


def run(root: Path, text: str, capsys) -> tuple[int, str]:
    (root / "navbuild.toml").write_text(text)
    code = main(["--config", str(root / "navbuild.toml"), "all"])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


CASES = [
    ("malformed toml", GOOD + "\n[[[", "not valid TOML"),
    ("unknown top-level key", GOOD + "\nbogus = 1\n", "bogus: unknown key"),
    ("unknown model key", GOOD.replace('inputs = ["image"]', 'inputs = ["image"]\ncolour = "red"'),
     "models.cnn.colour: unknown key"),
    ("wrong type", GOOD.replace("max_batch_size = 16", 'max_batch_size = "16"'),
     "models.cnn.max_batch_size: must be an integer"),
    ("missing entry file", GOOD.replace("vision/model.py:build_model", "vision/nope.py:build_model"),
     "models.cnn.entry: file vision/nope.py does not exist"),
    ("missing entry function", GOOD.replace("build_model", "no_such_function"),
     "models.cnn.entry: vision/model.py defines no 'no_such_function'"),
    ("entry without function", GOOD.replace("vision/model.py:build_model", "vision/model.py"),
     "is not of the form"),
    ("missing model file", GOOD.replace("vision/model.py:build_model", "vision/model.onnx"),
     "models.cnn.entry: file vision/model.onnx does not exist"),
    ("unknown format", GOOD.replace('formats = ["onnx"]', 'formats = ["onix"]'),
     "models.cnn.targets.formats: unknown format 'onix'"),
    ("unknown precision", GOOD.replace('formats = ["onnx"]', 'formats = ["onnx"]\nprecisions = ["fp8"]'),
     "unknown precision 'fp8'"),
    ("missing formats", GOOD.replace('formats = ["onnx"]', ""), "models.cnn.targets.formats: is required"),
    ("no models", '[project]\nname = "x"\n', "models: is required"),
    ("source glob matches nothing", GOOD.replace('"vision/weights.pt"', '"vision/*.bin"'),
     "'vision/*.bin' matches no file"),
    ("bad device", GOOD.replace('name = "t"', 'name = "t"\ndevice = "tpu"'), "unknown device 'tpu'"),
    ("unknown format option", GOOD + "\n[models.cnn.targets.onnx]\nopsett = 17\n", "format onnx has no option 'opsett'"),
    ("negative tolerance", GOOD + "\n[correctness]\natol = -1.0\n", "tolerances must not be negative"),
    ("precision tolerance not a table", GOOD + "\n[correctness.precision]\nfp16 = 1\n",
     "correctness.precision.fp16: must be a table with atol, rtol and/or range_tol"),
    ("entry model file outside the project", GOOD.replace("vision/model.py:build_model", "../model.onnx"),
     "models.cnn.entry: '../model.onnx' is outside the project folder"),
    ("bad max batch", GOOD.replace("max_batch_size = 16", "max_batch_size = -1"), "must be 0 or more, not -1"),
    ("profile batch over max batch", GOOD + "\n[profile]\nbatch_sizes = [1, 32]\n",
     "profile.batch_sizes: batch size 32 is above max_batch_size 16 of model cnn"),
    ("profile sweep over max batch", GOOD + "\n[profile]\nsweep_up_to = 64\n",
     "profile.sweep_up_to: batch size 64 is above max_batch_size 16 of model cnn"),
    ("negative tie margin", GOOD + "\n[profile]\ntie_margin_pct = -5\n",
     "profile.tie_margin_pct: must be a percentage from 0 to below 100, not -5"),
    ("tie margin as text", GOOD + '\n[profile]\ntie_margin_pct = "10%"\n', "profile.tie_margin_pct: must be"),
]


@pytest.mark.parametrize("name,text,message", CASES, ids=[c[0] for c in CASES])
def test_config_error(root, capsys, name, text, message):
    code, output = run(root, text, capsys)
    assert code == 2, output
    assert message in output, output
    assert str(root / "navbuild.toml") in output
    assert not (root / "navbuild-out").exists()


def test_error_carries_a_fix(root, capsys):
    code, output = run(root, GOOD.replace('formats = ["onnx"]', 'formats = ["onix"]'), capsys)
    assert code == 2 and "fix: use one of:" in output


def test_int8_without_calibration_is_a_config_error(root, capsys):
    text = GOOD.replace('formats = ["onnx"]', 'formats = ["trt"]\nprecisions = ["int8"]')
    code, output = run(root, text, capsys)
    assert code == 2, output
    assert "calibration" in output


def test_missing_config_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["all"]) == 2
    assert "no navbuild.toml" in capsys.readouterr().err


def test_unknown_target_is_exit_2(root, capsys):
    (root / "navbuild.toml").write_text(GOOD)
    assert main(["--config", str(root / "navbuild.toml"), "cnn:nothing"]) == 2
    assert "unknown target or alias 'cnn:nothing'" in capsys.readouterr().err


def test_repository_config_is_valid():
    from navbuild.engine import config
    from navbuild.engine.registry import default_registry

    project = config.load(REPO / "navbuild.toml", default_registry().formats)
    assert set(project.models) == {"cnn", "encoder"}


def test_an_entry_may_name_a_model_file(root):
    """A model given as a file (an ONNX file): its path is the entry and, by default, its source."""
    from navbuild.engine import config

    (root / "navbuild.toml").write_text(GOOD.replace("vision/model.py:build_model", "vision/weights.pt")
                                        .replace('sources = ["vision/model.py", "vision/weights.pt"]\n', ""))
    model = config.load(root / "navbuild.toml").models["cnn"]
    assert model.sources == ["vision/weights.pt"]
    assert model.spec.load_entry() == (root / "vision" / "weights.pt").resolve()


def test_the_tie_margin_is_a_selection_setting_not_a_profile_option(root):
    """[profile] tie_margin_pct reaches the selection and no ProfileConfig (so no profile's key)."""
    from navbuild.engine.config import load
    from navbuild.measure.settings import ProfileConfig

    (root / "navbuild.toml").write_text(GOOD + "\n[profile]\ntie_margin_pct = 5\nbudget_s = 1\n")
    settings = load(root / "navbuild.toml").profile
    assert settings.tie_margin_pct == 5.0 and settings.measure == ProfileConfig(budget_s=1)
    assert "tie_margin_pct" not in settings.measure.as_key()
    (root / "navbuild.toml").write_text(GOOD)
    assert load(root / "navbuild.toml").profile.tie_margin_pct is None  # the device's default


def test_a_format_may_build_its_own_precisions(root, capsys):
    """[targets.<format>] precisions: that format's targets, instead of the model's precisions."""
    from navbuild.engine.graph import build_graph
    from navbuild.engine.registry import default_registry
    from navbuild.engine.config import load

    registry = default_registry()
    text = GOOD.replace('formats = ["onnx"]', 'formats = ["onnx", "torchscript-trace"]\nprecisions = ["fp16"]\n'
                        '[models.cnn.targets.onnx]\nprecisions = ["fp32"]')
    (root / "navbuild.toml").write_text(text)
    project = load(root / "navbuild.toml", registry.formats)
    assert project.models["cnn"].targets.format_options["onnx"] == {}  # the engine's key, not the rule's
    artifacts = {name for name in build_graph(project, registry).targets if name.count(":") == 1 and "." not in name}
    assert {"cnn:onnx", "cnn:torchscript-trace-fp16"} <= artifacts and "cnn:onnx-fp16" not in artifacts
    code, output = run(root, text.replace('precisions = ["fp32"]', 'precisions = ["int8"]'), capsys)
    assert code == 2 and "models.cnn.targets.onnx.precisions: format onnx builds none of ['int8']" in output


@pytest.mark.parametrize("line, message, fix", [
    ("max_batch_size = 8", "profile.max_batch_size: was renamed sweep_up_to", "write sweep_up_to = N"),
    ("slower_than_best = 0", "profile.slower_than_best: is no longer an option", "remove it"),
])
def test_a_retired_profile_key_names_what_to_write_instead(root, capsys, line, message, fix):
    code, output = run(root, GOOD + f"\n[profile]\n{line}\n", capsys)
    assert code == 2 and message in output and f"fix: {fix}" in output, output


def test_format_options_are_validated_against_the_models_engine_values(root, capsys):
    # trt reads the model's max_batch_size (Rule.uses): opt_batch_size may not pass it
    text = GOOD.replace('formats = ["onnx"]', 'formats = ["trt"]') + "\n[models.cnn.targets.trt]\nopt_batch_size = {}\n"
    code, output = run(root, text.format(32), capsys)
    assert code == 2 and "opt_batch_size 32 is larger than max_batch_size 16" in output, output
    from navbuild.engine.config import load
    from navbuild.engine.registry import default_registry

    (root / "navbuild.toml").write_text(text.format(8))
    assert load(root / "navbuild.toml", default_registry().formats).models["cnn"].targets.format_options == {
        "trt": {"opt_batch_size": 8}}
