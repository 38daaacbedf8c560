"""Issue 22: the files a model imports are found by the build, and each edit rebuilds exactly what it
touched. A tiny project whose model imports a helper package that ``sources`` does not list (through
a module that imports another), beside a second model that does not import it; samples from a file
of their own. Profiles are off: these tests are about what is rebuilt."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from navbuild.cli import main

from .conftest import Project
from .tiny import built

MODEL = '''
import torch
from torch import nn

from helpers.layers import Scaled


def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), Scaled(nn.Linear(32, 4))).eval()
'''
LAYERS = '''
from torch import nn

from helpers import scale


class Scaled(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * scale.SCALE
'''
OTHER = '''
import torch
from torch import nn


def build_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(16, 4)).eval()
'''
SAMPLES = '''
import torch


def make_samples():
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch, 16, generator=generator) for batch in (1, 2)]
'''
CONFIG = '''
[project]
name = "discovery"

[profile]
enabled = false

[models.mlp]
framework = "torch"
entry = "model.py:build_model"
samples = "samples.py:make_samples"
inputs = ["x"]
outputs = ["y"]
max_batch_size = 4

[models.mlp.targets]
formats = ["torchscript-trace", "onnx"]

[models.other]
framework = "torch"
entry = "other.py:build_model"
samples = "samples.py:make_samples"
inputs = ["x"]
outputs = ["y"]
max_batch_size = 4

[models.other.targets]
formats = ["torchscript-trace", "onnx"]
'''
EXPORTS = ["mlp:torchscript-trace", "mlp:onnx"]
MLP_CODE = {"mlp:reference", *EXPORTS, *(f"{name}.check" for name in EXPORTS)}  # what runs the model's code


def make_project(root: Path, package: str = "helpers") -> Project:
    """The project, its helper package named ``package`` (a name a user's project may well use)."""
    (root / package).mkdir(parents=True)
    (root / package / "scale.py").write_text("SCALE = 1.0\n")
    (root / package / "layers.py").write_text(LAYERS.replace("from helpers", f"from {package}"))
    model = MODEL.replace("from helpers", f"from {package}")
    for name, text in (("model.py", model), ("other.py", OTHER), ("samples.py", SAMPLES),
                       ("navbuild.toml", CONFIG)):
        (root / name).write_text(text)
    return Project(root)


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("discovery") / "project")
    records = project.build()
    assert {r["status"] for r in records.values()} == {"built"}, records
    return project, records


@pytest.fixture
def project(warm, tmp_path):
    dest = tmp_path / "project"
    shutil.copytree(warm[0].root, dest, symlinks=True)
    return Project(dest)


def set_scale(project: Project, text: str) -> None:
    (project.root / "helpers" / "scale.py").write_text(text)


def test_an_unlisted_helper_edit_rebuilds_exactly_the_targets_that_run_the_models_code(project, warm):
    set_scale(project, "SCALE = 2.0\n")
    records = project.build()
    assert built(records) == MLP_CODE  # not its samples (their file imports no helper), nothing of `other`
    for name in EXPORTS:
        assert records[name]["digest"] != warm[1][name]["digest"], name
    assert built(project.build()) == set()


def test_a_comment_in_the_helper_rebuilds_the_exports_with_the_same_digest_and_stops(project, warm):
    set_scale(project, "# the scale of the output\nSCALE = 1.0\n")
    records = project.build()
    assert built(records) == {"mlp:reference", *EXPORTS}  # early cutoff: the checks are current
    for name in EXPORTS:
        assert records[name]["digest"] == warm[1][name]["digest"], name


def test_what_the_build_found_is_in_the_key_material_with_the_libraries_the_code_imports(project):
    from navbuild.engine.project import open_project

    session = open_project(project.config)
    try:
        _, material = session.key("mlp:onnx")
        assert set(material["discovered"]["sources"]) == {"helpers/layers.py", "helpers/scale.py"}
        assert "model.py" in material["sources"]  # the entry file: declared by default, not discovered too
        assert "torch" in material["discovered"]["tools"]
        _, samples = session.key("mlp:samples")
        assert samples["discovered"]["sources"] == {}
        assert samples["discovered"]["tools"] == {"torch": material["discovered"]["tools"]["torch"]}
    finally:
        session.close()


def test_the_samples_key_holds_the_version_of_the_framework_its_function_uses(project, monkeypatch):
    from navbuild.commands.status_cmd import state
    from navbuild.engine import fingerprint
    from navbuild.engine.project import open_project

    real = fingerprint.tool_version
    monkeypatch.setattr(fingerprint, "tool_version", lambda name: "99.0" if name == "torch" else real(name))
    session = open_project(project.config)
    try:
        current, why = state(session, "mlp:samples")
    finally:
        session.close()
    assert current == "stale" and "discovered.tools.torch" in why and "99.0" in why


def test_status_says_stale_for_own_inputs_and_may_rebuild_behind_them(project, capsys):
    set_scale(project, "SCALE = 2.0\n")
    assert main(["--config", str(project.config), "status"]) == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 3}
    out = "\n".join(rows.values())
    for name in ("mlp:reference", *EXPORTS):
        assert "stale" in rows[name] and "helpers/scale.py" in rows[name], rows[name]
    for name in (f"{n}.check" for n in EXPORTS):
        assert "may rebuild" in rows[name], rows[name]
    assert "built" in rows["mlp:samples"] and "built" in rows["other:onnx"], out


def test_status_mentions_a_discovered_file_not_in_sources_once(project, capsys):
    assert main(["--config", str(project.config), "status"]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert out.count("helpers/scale.py") == 1 and "mlp: helpers/layers.py, helpers/scale.py" in out
    config = project.config.read_text().replace('entry = "model.py:build_model"',
                                                'entry = "model.py:build_model"\nsources = ["model.py", "helpers/*.py"]')
    project.config.write_text(config)
    project.build()
    assert main(["--config", str(project.config), "status"]) == 0
    assert "helpers/" not in capsys.readouterr().out  # declared now: nothing to mention


def test_explain_names_the_changed_file_for_the_target_asked(project, capsys):
    set_scale(project, "SCALE = 2.0\n")
    assert main(["--config", str(project.config), "explain", "mlp:onnx"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mlp:onnx: stale (discovered.sources.helpers/scale.py:"), lines
    assert lines[1].strip().startswith("mlp:onnx: changed discovered.sources.helpers/scale.py:"), lines
    assert not any("waits for mlp:samples" in line for line in lines)  # the samples are current


def test_a_renamed_model_keeps_its_builds_and_explain_names_the_earlier_name(project, capsys):
    project.config.write_text(project.config.read_text().replace("models.mlp", "models.net"))
    assert built(project.build()) == set()
    assert main(["--config", str(project.config), "explain", "net:onnx"]) == 0
    out = capsys.readouterr().out
    assert "net:onnx: built" in out and "built as mlp:onnx" in out


def test_a_failure_is_replayed_until_a_helper_it_imports_changes(project):
    set_scale(project, "SCALE = undefined_name\n")
    failed = project.build("mlp", expect=1)
    assert failed["mlp:reference"]["status"] == "failed" and "NameError" in failed["mlp:reference"]["reason"]
    again = project.build("mlp", expect=1)
    assert "failed before with the same inputs" in again["mlp:reference"]["reason"]
    set_scale(project, "SCALE = 1.0\n")
    records = project.build("mlp")
    assert records["mlp:reference"]["status"] == "cached"  # the build of that helper was never lost


def test_force_rebuilds_the_named_target_only_and_force_downstream_what_follows(project):
    assert built(project.build("mlp:onnx", "--force")) == {"mlp:onnx"}
    assert built(project.build("mlp:onnx", "--force-downstream")) == {"mlp:onnx", "mlp:onnx.check"}
    assert built(project.build("mlp", "--force")) == {*EXPORTS}  # a model's alias names its artifacts


def test_a_remote_cache_restores_the_model_only_where_the_helper_matches(warm, tmp_path):
    cache = (tmp_path / "cache").as_uri()
    first = make_project(tmp_path / "first")
    assert {r["status"] for r in first.build("--remote-cache", cache).values()} == {"built"}
    same = make_project(tmp_path / "same")
    records = same.build("--remote-cache", cache)
    assert built(records) == set() and {r.get("origin") for r in records.values()} == {"remote"}
    edited = make_project(tmp_path / "edited")
    set_scale(edited, "SCALE = 2.0\n")
    records = edited.build("--remote-cache", cache)
    assert built(records) == MLP_CODE, built(records)
    assert all(records[name]["origin"] == "remote" for name in records if name not in MLP_CODE)


def test_a_package_brings_the_model_only_where_the_helper_matches(warm, tmp_path):
    package = str(warm[0].root / "navbuild-out" / "discovery.nav")
    same = make_project(tmp_path / "same")
    records = same.build("build", "--from", package, "mlp")
    imported = {name for name, record in records.items() if record.get("origin") == "imported"}
    assert imported and imported <= set(EXPORTS) and not built(records) & imported, records
    edited = make_project(tmp_path / "edited")
    set_scale(edited, "SCALE = 2.0\n")
    records = edited.build("build", "--from", package, "mlp")
    assert built(records) == {"mlp:samples", *MLP_CODE}  # built here: its helper is not the package's
    assert not any(record.get("origin") == "imported" for record in records.values())
