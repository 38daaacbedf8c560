"""Config and paths (issue 10, item 4): paths that leave the project are refused at config time with
exit code 2 and the key named; the inputs that gave tracebacks give one clear message."""
from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.cli import main
from navbuild.engine.config import load

from tests.example_cnn import copy_vision

from .test_config import GOOD


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_vision(tmp_path / "project")


def run(root: Path, text: str | bytes, capsys, *words: str) -> tuple[int, str]:
    config = root / "navbuild.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["--config", str(config), *(words or ["list"])])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


ESCAPES = [
    ("project.name", GOOD.replace('name = "t"', 'name = "../../X"')),
    ("project.name", GOOD.replace('name = "t"', 'name = "a/b"')),
    ("project.out", GOOD.replace('name = "t"', 'name = "t"\nout = "../X"')),
    ("project.out", GOOD.replace('name = "t"', 'name = "t"\nout = "/tmp/navbuild-out"')),
    ("project.store", GOOD.replace('name = "t"', 'name = "t"\nstore = "a/../../X"')),
    ("models.cnn.sources", GOOD.replace('"vision/weights.pt"]', '"../../../etc/passwd"]')),
    ("models.cnn.sources", GOOD.replace('"vision/weights.pt"]', '"/etc/passwd"]')),
    ("models.cnn.samples", GOOD.replace('samples = "vision/model.py:make_samples"',
                                        'samples = "../../../etc/passwd"')),
    ("models.cnn.samples", GOOD.replace('samples = "vision/model.py:make_samples"',
                                        'samples = "../outside.py:make"')),
    ("models.cnn.entry", GOOD.replace('entry = "vision/model.py:build_model"', 'entry = "/etc/x.py:build"')),
    ("project.out", GOOD.replace('name = "t"', 'name = "t"\nout = "."')),
    ("project.out", GOOD.replace('name = "t"', 'name = "t"\nout = ".navbuild"')),
]


@pytest.mark.parametrize("key,text", ESCAPES, ids=[f"{key}-{i}" for i, (key, _) in enumerate(ESCAPES)])
def test_paths_out_of_the_project_are_refused_with_the_key(root, capsys, key, text):
    code, output = run(root, text, capsys)
    assert code == 2, output
    assert f"{root / 'navbuild.toml'}: {key}:" in output and "Traceback" not in output


def test_store_and_out_outside_the_project_need_the_option(root, tmp_path, capsys):
    shared = tmp_path / "shared-store"
    text = GOOD.replace('name = "t"', f'name = "t"\nstore = "{shared}"\nout = "../out"')
    code, output = run(root, text, capsys)
    assert code == 2 and "project.store" in output and "allow_paths_outside = true" in output
    code, output = run(root, text.replace('name = "t"', 'name = "t"\nallow_paths_outside = true'), capsys)
    assert code == 0, output
    project = load(root / "navbuild.toml")
    assert project.store == shared and project.out == root / "../out"


def test_inputs_that_gave_tracebacks(root, capsys):
    code, output = run(root, GOOD.encode() + b"\n# caf\xe9 in latin-1\n", capsys)
    assert code == 2 and "is not UTF-8 text" in output
    (root / "empty").mkdir()
    assert main(["--config", str(root / "empty"), "list"]) == 2
    assert "is a folder with no navbuild.toml" in capsys.readouterr().err
    (root / "navbuild.toml").write_text(GOOD)
    assert main(["--config", str(root), "list"]) == 0  # a folder holding navbuild.toml is taken for it
    capsys.readouterr()
    code, output = run(root, GOOD.replace('"vision/weights.pt"]', '"vision/**x"]'), capsys)
    assert code == 2 and "models.cnn.sources" in output and "Traceback" not in output
    code, output = run(root, GOOD.replace('entry = "vision/model.py:build_model"', 'entry = "vision/b\\u0000d.py:f"'),
                       capsys)
    assert code == 2 and "models.cnn.entry" in output


def test_timeouts_are_read_per_project_model_and_format(root):
    text = GOOD.replace('name = "t"', 'name = "t"\ntimeout = 60').replace(
        'max_batch_size = 16', 'max_batch_size = 16\ntimeout = 30') + "\n[models.cnn.targets.onnx]\ntimeout = 5\n"
    (root / "navbuild.toml").write_text(text)
    from navbuild.engine.project import open_project

    graph = open_project(root / "navbuild.toml").graph
    assert graph.targets["cnn:onnx"].seconds_allowed == 5
    assert graph.targets["cnn:onnx.check"].seconds_allowed == 5
    assert graph.targets["cnn:reference"].seconds_allowed == 30
    for bad in ('timeout = 0', 'timeout = -1', 'timeout = "5"', 'timeout = nan', 'timeout = inf'):
        (root / "navbuild.toml").write_text(GOOD.replace('name = "t"', f'name = "t"\n{bad}'))
        with pytest.raises(Exception, match="project.timeout"):
            load(root / "navbuild.toml")
