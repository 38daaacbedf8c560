"""Bounded dynamic axes (issue 19): declared in navbuild.toml's long or short form, checked at config
time (exit 2 naming the key), resolved against the samples, in the artifacts' keys, refused for a
format that serves fixed sizes only; the samples rule covers declared bounds."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from navbuild import dynamic_axes
from navbuild.cli import main
from navbuild.dynamic_axes import AxisError, Range
from navbuild.engine.config import ConfigError, from_mapping
from navbuild.rule import ModelSpec

REPO = Path(__file__).resolve().parents[1]

TEXT = """
[project]
name = "t"

[models.enc]
framework = "torch"
entry = "text/model.py:build_model"
samples = "text/model.py:make_samples"
sources = ["text/model.py", "text/weights.pt"]
inputs = ["tokens"]
max_batch_size = 4
AXES

[models.enc.targets]
formats = ["onnx"]
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "examples" / "text", tmp_path / "text")
    return tmp_path


def tokens(*shapes: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    return [{"ids": np.arange(b * n).reshape(b, n), "mask": np.ones((b, n), np.int64)} for b, n in shapes]


# -- the declaration ---------------------------------------------------------------------------------
def test_long_and_short_forms_parse_to_labels_and_bounds():
    axes, bounds = dynamic_axes.parse({"ids": {"1": {"name": "seq", "min": 1, "max": 512}}, "mask": {"1": "seq"}})
    assert axes == {"ids": {1: "seq"}, "mask": {1: "seq"}}
    assert bounds == {"seq": {"min": 1, "max": 512}}
    assert dynamic_axes.to_table(axes, bounds) == {"ids": {"1": {"name": "seq", "min": 1, "max": 512}},
                                                   "mask": {"1": {"name": "seq", "min": 1, "max": 512}}}
    assert dynamic_axes.parse({"ids": {"1": {"name": "seq"}}}) == ({"ids": {1: "seq"}}, {})


@pytest.mark.parametrize("table, where, problem", [
    ({"ids": {"0": "batch"}}, "ids.0", "axis 0 is the batch dimension"),
    ({"ids": {"x": "seq"}}, "ids.x", "is not an integer"),
    ({"ids": {"-1": "seq"}}, "ids.-1", "is negative"),
    ({"ids": {"64": "seq"}}, "ids.64", "must be from 1 to 63, not 64"),
    ({"ids": "seq"}, "ids", "must be a table of axes"),
    ({"ids": {"1": 3}}, "ids.1", "must be a label or a table"),
    ({"ids": {"1": "two words"}}, "ids.1", "is not a name"),
    ({"ids": {"1": {"max": 8}}}, "ids.1", "has no name"),
    ({"ids": {"1": {"name": "seq", "max": 0}}}, "ids.1.max", "must be an integer >= 1"),
    ({"ids": {"1": {"name": "seq", "max": "8"}}}, "ids.1.max", "must be an integer >= 1"),
    ({"ids": {"1": {"name": "seq", "max": True}}}, "ids.1.max", "must be an integer >= 1"),
    ({"ids": {"1": {"name": "seq", "min": 9, "max": 8}}}, "ids.1", "min 9 is above max 8"),
    ({"ids": {"1": {"name": "seq", "maximum": 8}}}, "ids.1.maximum", "unknown key"),
    ({"ids": {"1": {"name": "seq", "max": 8}}, "mask": {"1": {"name": "seq", "max": 16}}}, "mask.1",
     "declared with bounds"),
])
def test_a_declaration_that_cannot_be_right_names_its_key(table, where, problem):
    with pytest.raises(AxisError) as caught:
        dynamic_axes.parse(table)
    assert caught.value.where == where and problem in caught.value.problem


@pytest.mark.parametrize("axes, message", [
    ('dynamic_axes = { tokens = { 0 = "batch" } }', "models.enc.dynamic_axes.tokens.0: axis 0 is the batch"),
    ('dynamic_axes = { words = { 1 = "seq" } }', "models.enc.dynamic_axes.words: is not an input of the model "
                                                 "(its inputs: tokens)"),
    ('dynamic_axes = { tokens = { 1 = { name = "seq", max = "128" } } }',
     "models.enc.dynamic_axes.tokens.1.max: must be an integer >= 1, not '128'"),
    ('dynamic_axes = { tokens = { 1 = { name = "seq", min = 64, max = 16 } } }', "min 64 is above max 16"),
    ('dynamic_axes = { tokens = { 1 = { label = "seq" } } }', "models.enc.dynamic_axes.tokens.1.label: unknown key"),
])
def test_config_errors_exit_2_before_anything_builds(root, capsys, axes, message):
    (root / "navbuild.toml").write_text(TEXT.replace("AXES", axes))
    code = main(["--config", str(root / "navbuild.toml"), "all"])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err + captured.out
    assert not (root / ".navbuild").exists()


def test_the_profile_may_sweep_only_a_declared_axis(root, capsys):
    text = TEXT.replace("AXES", 'dynamic_axes = { tokens = { 1 = "seq" } }') + '\n[profile]\naxis_sizes = { len = [8] }\n'
    (root / "navbuild.toml").write_text(text)
    assert main(["--config", str(root / "navbuild.toml"), "list"]) == 2
    assert "profile.axis_sizes.len: no model declares a dynamic axis named 'len'" in capsys.readouterr().err
    (root / "navbuild.toml").write_text(text.replace("len = [8]", "seq = [0]"))
    assert main(["--config", str(root / "navbuild.toml"), "list"]) == 2
    assert "axis_sizes.seq must be a list of sizes >= 1" in capsys.readouterr().err


def test_a_format_that_serves_fixed_sizes_only_is_refused_at_config_time(root):
    from dataclasses import replace

    from navbuild.engine.registry import default_registry

    formats = dict(default_registry().formats("torch"))
    formats["onnx"] = replace(formats["onnx"], serves_dynamic_axes=False)
    import tomllib

    data = tomllib.loads(TEXT.replace("AXES", 'dynamic_axes = { tokens = { 1 = "seq" } }'))
    with pytest.raises(ConfigError) as caught:
        from_mapping(data, root, formats)
    assert caught.value.key == "models.enc.targets.formats"
    assert "format onnx cannot serve the dynamic axes seq" in caught.value.problem
    data["models"]["enc"].pop("dynamic_axes")
    from_mapping(data, root, formats)  # without dynamic axes it is fine


# -- against the samples --------------------------------------------------------------------------------
def test_ranges_default_to_one_and_the_longest_sample():
    samples = tokens((1, 8), (2, 13))
    axes = {"ids": {1: "seq"}, "mask": {1: "seq"}}
    assert dynamic_axes.sizes(axes, samples) == {"seq": [8, 13]}
    assert dynamic_axes.ranges(axes, {}, samples) == {"seq": Range("seq", 1, 13, 13)}
    assert dynamic_axes.ranges(axes, {"seq": {"max": 512}}, samples) == {"seq": Range("seq", 1, 13, 512)}
    assert dynamic_axes.ranges(axes, {"seq": {"min": 16, "max": 32}}, samples)["seq"].opt == 16


def test_samples_that_contradict_the_axes():
    axes = {"ids": {1: "seq"}, "mask": {1: "seq"}}
    assert dynamic_axes.sample_problem(axes, {}, tokens((1, 8))) is None
    mixed = [{"ids": np.zeros((1, 8), np.int64), "mask": np.zeros((1, 9), np.int64)}]
    assert "axis 'seq' is 8 in ids but 9 in mask of sample 0" in dynamic_axes.sample_problem(axes, {}, mixed)
    assert "outside its declared bounds 1..6" in dynamic_axes.sample_problem(axes, {"seq": {"max": 6}}, tokens((1, 8)))


def test_an_unseen_length_lies_within_the_range_between_the_samples():
    assert dynamic_axes.unseen_length(Range("seq", 1, 13, 13), [8, 13]) == 10
    assert dynamic_axes.unseen_length(Range("seq", 1, 32, 32), [1, 8, 13, 32]) == 22
    assert dynamic_axes.unseen_length(Range("seq", 1, 8, 8), [8]) == 7
    assert dynamic_axes.unseen_length(Range("seq", 8, 8, 8), [8]) is None
    assert dynamic_axes.other_size(Range("seq", 1, 13, 13), 8, [8, 13]) == 13


def test_resizing_cuts_or_repeats_every_axis_with_the_label():
    sample = tokens((1, 4))[0]
    longer = dynamic_axes.resized(sample, {"ids": {1: "seq"}, "mask": {1: "seq"}}, "seq", 6)
    assert longer["ids"].tolist() == [[0, 1, 2, 3, 0, 1]] and longer["mask"].shape == (1, 6)
    assert dynamic_axes.resized(sample, {"ids": {1: "seq"}}, "seq", 2)["ids"].tolist() == [[0, 1]]


def test_output_axes_that_vary_between_samples():
    outputs = [{"hidden": np.zeros((1, 8, 4)), "pooled": np.zeros((1, 4))},
               {"hidden": np.zeros((2, 13, 4)), "pooled": np.zeros((2, 4))}]
    assert dynamic_axes.varying_axes(outputs) == {"hidden": [1]}


def test_the_samples_rule_adds_a_sample_at_each_bound_no_sample_reaches(tmp_path):
    from navbuild_rules import samples as samples_rule
    from tests.rules._ctx import make_ctx

    model = ModelSpec(name="enc", framework="torch", entry="m.py:f", root=tmp_path, inputs=("ids", "mask"),
                      max_batch_size=2, dynamic_axes={"ids": {1: "seq"}, "mask": {1: "seq"}},
                      axis_bounds={"seq": {"min": 2, "max": 16}})
    ctx = make_ctx(tmp_path, model, "samples", samples=[])
    given = tokens((1, 8), (2, 16))
    covered = samples_rule.with_bounds_covered(ctx, given)
    assert [sample["ids"].shape for sample in covered] == [(1, 8), (2, 16), (1, 2)]  # 16 was there already
    with pytest.raises(ValueError, match="outside its declared bounds 2..16"):
        samples_rule.check_axes("enc", tokens((1, 20)), model.dynamic_axes, model.axis_bounds, ())
    with pytest.raises(ValueError, match="dynamic_axes names 'words', which is not an input of the samples"):
        samples_rule.check_axes("enc", tokens((1, 8)), {"words": {1: "seq"}}, {}, ())


# -- keys ----------------------------------------------------------------------------------------------
def test_bounds_enter_the_artifact_keys_and_an_undeclared_bound_changes_nothing(root):
    from navbuild.engine.project import open_project

    def onnx_material(axes: str) -> dict:
        (root / "navbuild.toml").write_text(TEXT.replace("AXES", axes))
        session = open_project(root / "navbuild.toml")
        try:
            from navbuild.engine.keys import model_io

            return model_io(session.graph.targets["enc:onnx"])
        finally:
            session.close()

    short = onnx_material('dynamic_axes = { tokens = { 1 = "seq" } }')
    named = onnx_material('dynamic_axes = { tokens = { 1 = { name = "seq" } } }')
    bounded = onnx_material('dynamic_axes = { tokens = { 1 = { name = "seq", max = 64 } } }')
    assert short == named and "axis_bounds" not in short
    assert bounded["axis_bounds"] == {"seq": {"max": 64}} and bounded["dynamic_axes"] == short["dynamic_axes"]


def test_a_profile_that_sweeps_an_axis_keys_its_bounds_and_one_that_does_not_keeps_them_out(root):
    # a profile's key holds what it measures, not the artifact's parameters (issue 22); the bounds
    # pick the sizes that [profile] axis_sizes measures, so a sweeping profile keys them
    from navbuild.engine import keys
    from navbuild.engine.project import open_project

    def profile_model(axes: str, profile: str = "") -> dict:
        (root / "navbuild.toml").write_text(TEXT.replace("AXES", axes) + profile)
        session = open_project(root / "navbuild.toml")
        try:
            target = session.graph.targets["enc:onnx.profile"]
            material = keys.profile_material(
                target, artifact=session.graph.targets[target.artifact], artifact_digest="same bytes",
                samples_digest="same samples", runner="onnxruntime", runner_tools=(),
                config=session.project.profile.measure.as_key(), resolved={})
            return material["model"]
        finally:
            session.close()

    sweep = "\n[profile]\naxis_sizes = { seq = [8] }\n"
    wide, narrow = ('dynamic_axes = { tokens = { 1 = { name = "seq", max = %d } } }' % n for n in (64, 32))
    assert profile_model(wide) == profile_model(narrow)  # the same bytes measured the same way
    assert "axis_bounds" not in profile_model(wide)
    assert profile_model(wide, sweep)["axis_bounds"] == {"seq": {"max": 64}}
    assert profile_model(wide, sweep) != profile_model(narrow, sweep)
