"""Issue 14: a changed setting re-runs exactly the targets whose output it can change (and a target no
longer declared leaves navbuild-out/). Each test changes one setting of a warm tiny project with
profiles and asserts the set of targets that were built again."""
from __future__ import annotations

import json

import pytest

from .tiny import ARTIFACTS, CHECKS, PROFILES, built, copy_project, make_tiny_project

SAMPLES, REFERENCE = "mlp:samples", "mlp:reference"
ONNX = ["mlp:onnx", "mlp:onnx-fp16"]
ALL = {SAMPLES, REFERENCE, *ARTIFACTS, *CHECKS, *PROFILES}


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    project = make_tiny_project(tmp_path_factory.mktemp("keys") / "project")
    records = project.build()
    assert built(records) == ALL, records
    return project, records


@pytest.fixture
def project(warm, tmp_path):
    return copy_project(warm[0], tmp_path / "project")


def edit(project, old: str, new: str) -> None:
    text = project.config.read_text()
    assert old in text, old
    project.config.write_text(text.replace(old, new, 1))


def test_nothing_changed_nothing_rebuilt(project):
    assert built(project.build()) == set()


def test_max_batch_size_re_measures_every_profile_and_re_checks_no_identical_artifact(project, warm):
    # the profile's sweep follows the model's max_batch_size (its key lacked it: issue 14); exports
    # take it as an engine value; the samples check it; the reference does not depend on it. The
    # exports come out byte-identical (a batch axis either way), so no check runs again (issue 22)
    edit(project, "max_batch_size = 4", "max_batch_size = 2")
    records = project.build()
    assert built(records) == ALL - {REFERENCE} - set(CHECKS)
    assert all(records[name]["digest"] == warm[1][name]["digest"] for name in ARTIFACTS)
    for name in PROFILES:  # the sweep now ends at 2; a slow target may spend its 0.2 s budget on batch 1
        measured = [p["batch_size"] for p in records[name]["metadata"]["points"]]
        # a record keeps a profile's points only: why it stopped is in the profile's own file
        profile = json.loads((project.out(name.removesuffix(".profile")) / "profile.json").read_text())
        assert measured == [1, 2] or (measured == [1] and profile["stop_reason"] == "budget"), name


@pytest.mark.parametrize("old, new", [("budget_s = 0.2", "budget_s = 0.3"),
                                      ("budget_s = 0.2", "budget_s = 0.2\nbatch_sizes = [1, 2]"),
                                      ("budget_s = 0.2", "budget_s = 0.2\nstability_pct = 5"),
                                      ("budget_s = 0.2", "budget_s = 0.2\nmin_trials = 4"),
                                      ("budget_s = 0.2", "budget_s = 0.2\nsweep_up_to = 2"),
                                      ("budget_s = 0.2", "budget_s = 0.2\nmax_warmup_s = 2")])
def test_a_profile_option_re_measures_the_profiles_only(project, old, new):
    edit(project, old, new)
    assert built(project.build()) == set(PROFILES)


def test_strategies_rebuild_nothing(project):
    edit(project, "[profile]\n", '[profile]\nstrategies = ["min-latency", "latency-budget:5ms"]\n')
    assert built(project.build()) == set()
    from navbuild.deploy.package import read_package

    selected = read_package(project.root / "navbuild-out" / "tiny.nav").status["models"]["mlp"]["selected"]
    assert set(selected) == {"min-latency", "latency-budget:5ms"}  # the package follows the strategies


def test_the_tie_margin_rebuilds_nothing_but_re_selects(project):
    edit(project, "[profile]\n", "[profile]\ntie_margin_pct = 0\n")
    assert built(project.build()) == set()
    figures = json.loads((project.root / "navbuild-out" / "tiny.profile.json").read_text())
    selections = figures["models"]["mlp"]["selections"]
    assert {s["margin_pct"] for s in selections.values()} == {0.0}  # the package was chosen afresh with it


def test_a_tolerance_re_runs_the_checks_only(project):
    edit(project, "atol = 1e-4", "atol = 2e-4")  # [correctness] atol is the fp32 tolerance
    assert built(project.build()) == {"mlp:torchscript-trace.check", "mlp:onnx.check"}
    edit(project, "rtol = 1e-3", "rtol = 1e-3\n[correctness.precision.fp16]\natol = 2e-2")
    assert built(project.build()) == {"mlp:torchscript-trace-fp16.check", "mlp:onnx-fp16.check"}


def test_dynamic_axes_rebuild_what_declares_them_and_re_measure_what_changed(project):
    # the MLP takes 16 features only: the axis is pinned to that size (a wider range fails the
    # build, which runs every export at a second size)
    edit(project, 'max_batch_size = 4\n', 'max_batch_size = 4\n'
                                          'dynamic_axes = { x = { 1 = { name = "features", min = 16, max = 16 } } }\n')
    records = project.build()
    # every artifact's key holds the model's inputs and axes; only the ONNX files change with them,
    # so only their checks and profiles run again (TorchScript's bytes are the same: early cutoff)
    assert built(records) == {SAMPLES, REFERENCE, *ARTIFACTS, *[f"{n}.check" for n in ONNX],
                              *[f"{n}.profile" for n in ONNX]}


def test_renamed_outputs_re_check_everything_and_re_measure_the_changed_files(project, warm):
    edit(project, 'outputs = ["y"]', 'outputs = ["scores"]')
    records = project.build()
    assert built(records) == {SAMPLES, REFERENCE, *ARTIFACTS, *CHECKS, *[f"{n}.profile" for n in ONNX]}
    assert records["mlp:torchscript-trace"]["digest"] == warm[1]["mlp:torchscript-trace"]["digest"]


def test_a_format_option_that_gives_the_same_bytes_re_checks_and_re_measures_nothing(project, warm):
    # "auto" already picks the TorchScript-based exporter: the same file, and what a runner reads of
    # an option is in the files, so a check or a profile depends on the digest, not the option (issue 22)
    edit(project, 'precisions = ["fp32", "fp16"]\n', 'precisions = ["fp32", "fp16"]\n\n'
         '[models.mlp.targets.onnx]\nexporter = "torchscript"\n')
    records = project.build()
    assert built(records) == set(ONNX)
    assert records["mlp:onnx"]["digest"] == warm[1]["mlp:onnx"]["digest"]


def test_the_samples_function_is_part_of_the_samples_key(project):
    edit(project, 'samples = "model.py:make_samples"', 'samples = "model.py:make_other_samples"')
    assert built(project.build()) == ALL  # new samples: every output depends on them


def test_another_device_fingerprint_re_measures_the_profiles_only(project, monkeypatch):
    monkeypatch.setenv("NAVBUILD_DEVICE_FINGERPRINT", "another machine")
    assert built(project.build()) == set(PROFILES)  # portable artifacts and CPU checks are reused


def test_outputs_of_targets_no_longer_declared_are_removed(project, capsys):
    out = project.root / "navbuild-out" / "mlp"
    assert (out / "onnx-fp16" / "model.onnx").is_file()
    (project.root / "navbuild-out" / "gone" / "onnx").mkdir(parents=True)  # a model no longer declared
    (project.root / "navbuild-out" / "gone" / "onnx" / "build.log").write_text("old\n")
    (out / "notes").mkdir()  # not navbuild's: kept
    edit(project, 'precisions = ["fp32", "fp16"]', 'precisions = ["fp32"]')
    from navbuild.cli import main

    assert main(["--config", str(project.config)]) == 0
    assert "removed outputs of targets no longer declared: gone/onnx, mlp/onnx-fp16, mlp/torchscript-trace-fp16" \
        in capsys.readouterr().out.replace("\n", " ")
    kept = sorted(p.name for p in out.iterdir() if p.name != ".navbuild-output")  # its marker: navbuild made it
    assert kept == ["notes", "onnx", "reference", "samples", "torchscript-trace"]
    assert not (project.root / "navbuild-out" / "gone").exists()
    from navbuild.deploy.package import read_package

    targets = read_package(project.root / "navbuild-out" / "tiny.nav").status["models"]["mlp"]["targets"]
    assert sorted(targets) == ["onnx", "torchscript-trace"]  # the package follows, though nothing was built
