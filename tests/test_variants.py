"""Build variants: a searchable option as "search" or a list expands into one target per value.

Graph and config only: nothing is built, no framework is imported.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from navbuild.cli import main
from navbuild.engine import variants
from navbuild.engine.config import load
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, build_graph
from navbuild.engine.keys import artifact_material, key_of
from navbuild.engine.registry import default_registry
from navbuild.rule import Rule
from tests.example_cnn import cnn_config, copy_vision

CONFIG = cnn_config("t", profile="[profile]\nbatch_sizes = [1, 24]", formats="FORMATS", max_batch_size=32,
                    targets='precisions = ["fp32", "fp16"]\nOPTIONS')


def project(tmp_path: Path, formats: str = '["torch-compile"]', options: str = ""):
    copy_vision(tmp_path)
    path = tmp_path / "navbuild.toml"
    path.write_text(CONFIG.replace("FORMATS", formats).replace("OPTIONS", options))
    return path


def graph_of(path: Path):
    registry = default_registry()
    return build_graph(load(path, registry.formats), registry)  # each model's framework's formats


def _rule(**variants_: dict) -> Rule:
    return Rule(name="fmt", version="1", build=lambda ctx: None, params={"a": False, "b": "x", "c": [1]},
                variants=variants_)


# -- expansion, engine side ---------------------------------------------------------------------
def test_search_and_lists_expand_into_the_product_in_declaration_order():
    rule = _rule(a={False: "", True: "A"}, b={"x": "", "y": "Y", "z": "Z"})
    found = variants.expand(rule, {"b": ["y", "x"], "a": "search", "c": [1, 2]})
    assert [v.suffix for v in found] == ["+Y", "", "+A+Y", "+A"]
    assert found[2].options == {"a": True, "b": "y", "c": [1, 2]}  # a list of a non-searchable option stays a value
    assert [v.suffix for v in variants.expand(rule, {"a": True})] == [""]  # one plain value: no search
    assert [v.suffix for v in variants.expand(rule, {"b": ["y"]})] == ["+Y"]
    assert [v.suffix for v in variants.expand(rule, {})] == [""]


@pytest.mark.parametrize("options, option, message", [
    ({"c": "search"}, "c", "format fmt cannot search 'c'"),
    ({"b": ["x", "w"]}, "b", "format fmt cannot search b = 'w'"),
    ({"a": [1]}, "a", "format fmt cannot search a = 1"),  # TOML's 1 is not true
    ({"b": []}, "b", "an empty list searches nothing"),
])
def test_bad_searches_name_the_option(options, option, message):
    rule = _rule(a={False: "", True: "A"}, b={"x": "", "y": "Y"})
    with pytest.raises(variants.VariantError, match=message) as caught:
        variants.expand(rule, options)
    assert caught.value.option == option


# -- the graph ------------------------------------------------------------------------------------
def test_torch_compile_variants_are_targets_with_checks_profiles_and_aliases(tmp_path):
    graph = graph_of(project(tmp_path, options='[models.cnn.targets.torch-compile]\n'
                                               'mode = ["default", "max-autotune-no-cudagraphs"]\n'
                                               'channels_last = "search"\n'))
    fp16 = sorted(n for n, t in graph.targets.items() if t.kind == ARTIFACT and n.startswith("cnn:torch-compile-fp16"))
    assert fp16 == ["cnn:torch-compile-fp16", "cnn:torch-compile-fp16+autotune-nocg", "cnn:torch-compile-fp16+cl",
                    "cnn:torch-compile-fp16+cl+autotune-nocg"]
    for name in fp16:
        assert graph.targets[f"{name}.check"].kind == CHECK and graph.targets[f"{name}.profile"].kind == PROFILE
    assert sorted(graph.aliases["torch-compile-fp16"]) == fp16
    assert set(fp16) <= set(graph.aliases["torch-compile"]) and set(fp16) <= set(graph.aliases["fp16"])
    assert len(graph.aliases["torch-compile"]) == 8  # fp32 and fp16, four variants each
    params = graph.targets["cnn:torch-compile-fp16+cl+autotune-nocg"].params
    assert params["mode"] == "max-autotune-no-cudagraphs" and params["channels_last"] is True
    # "auto" buckets are resolved into the key: powers of two to 32 and the profile's 24
    assert params["buckets"] == [1, 2, 4, 8, 16, 24, 32] and "profile_batch_sizes" not in params
    keys = {key_of(artifact_material(graph.targets[n], sources={}, samples_digest="s", upstream_digest=None))
            for n in fp16}
    assert len(keys) == 4


def test_a_single_value_is_no_search_and_keeps_the_plain_name(tmp_path):
    graph = graph_of(project(tmp_path, options='[models.cnn.targets.torch-compile]\nchannels_last = true\n'
                                               'buckets = [1, 8]\n'))
    target = graph.targets["cnn:torch-compile"]
    assert target.params["channels_last"] is True and target.params["buckets"] == [1, 8]
    assert not any("+" in name for name in graph.targets)


def test_dynamic_variant_has_no_buckets(tmp_path):
    graph = graph_of(project(tmp_path, options='[models.cnn.targets.torch-compile]\ndynamic = "search"\n'))
    assert graph.targets["cnn:torch-compile+dyn"].params["buckets"] is None
    assert graph.targets["cnn:torch-compile"].params["buckets"] == [1, 2, 4, 8, 16, 24, 32]


def test_channels_last_search_on_torch_family_and_onnx(tmp_path):
    graph = graph_of(project(tmp_path, formats='["torch", "torchscript-trace", "onnx"]',
                             options='[models.cnn.targets.torch]\nchannels_last = "search"\n'
                                     '[models.cnn.targets.onnx]\nchannels_last = [true]\n'))
    artifacts = sorted(n for n, t in graph.targets.items() if t.kind == ARTIFACT)
    assert "cnn:torch+cl" in artifacts and "cnn:torch-fp16+cl" in artifacts and "cnn:torch" in artifacts
    assert "cnn:onnx+cl" in artifacts and "cnn:onnx" not in artifacts and "cnn:torchscript-trace" in artifacts


def test_a_consumer_of_a_format_declared_only_as_variants_reads_the_first(tmp_path):
    graph = graph_of(project(tmp_path, formats='["onnx", "trt"]',
                             options='[models.cnn.targets.onnx]\nchannels_last = [true]\n'))
    trt = graph.targets["cnn:trt-fp16"]
    assert trt.upstream == "cnn:onnx+cl" and "cnn:onnx+cl" in trt.deps and "cnn:onnx" not in trt.deps


@pytest.mark.parametrize("options, message", [
    ('buckets = "search"', "models.cnn.targets.torch-compile.buckets: format torch-compile cannot search 'buckets'"),
    ('mode = ["default", "fastest"]', "models.cnn.targets.torch-compile.mode: format torch-compile cannot search "
                                      "mode = 'fastest'"),
    ("channels_last = []", "models.cnn.targets.torch-compile.channels_last: an empty list searches nothing"),
    ('buckets = [0, 4]', "models.cnn.targets.torch-compile: buckets must be \"auto\" or a list of batch sizes"),
    ('channels_last = "yes"', "channels_last must be true or false"),
])
def test_bad_variant_options_are_config_errors(tmp_path, capsys, options, message):
    path = project(tmp_path, options=f"[models.cnn.targets.torch-compile]\n{options}\n")
    code = main(["--config", str(path), "list"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err


def test_variants_build_check_and_are_selected_among(tmp_path):
    """Through the real CLI: both channels_last variants of the eager target are built, checked,
    profiled and stored under their own names; selection ranks them like any targets."""
    pytest.importorskip("torch")
    import json

    path = project(tmp_path, formats='["torch"]', options='[models.cnn.targets.torch]\nchannels_last = "search"\n')
    text = path.read_text().replace('precisions = ["fp32", "fp16"]', 'precisions = ["fp32"]')
    text = text.replace("batch_sizes = [1, 24]", "batch_sizes = [1]\nmin_window_runs = 3\nwindow_s = 0.0\n"
                        "stabilization_windows = 1\nmin_trials = 1\nmax_trials = 2\nwarmup_runs = 1\nwarmup_s = 0.0")
    path.write_text(text)
    report = tmp_path / "run.json"
    assert main(["--config", str(path), "--json", str(report), "-q", "torch"]) == 0
    records = json.loads(report.read_text())
    for name in ("cnn:torch", "cnn:torch+cl"):
        assert records[name]["status"] == "built" and records[f"{name}.check"]["status"] == "built"
        assert records[f"{name}.profile"]["status"] == "built"
    assert records["cnn:torch+cl"]["metadata"]["memory_format"] == "channels_last"
    assert records["cnn:torch"]["metadata"]["memory_format"] == "contiguous"
    assert (tmp_path / "navbuild-out" / "cnn" / "torch+cl" / "recipe.json").is_file()
    from navbuild.deploy import status
    from navbuild.engine.project import open_project

    session = open_project(path)
    selected = status.collect_all(session, ["cnn"])[1]["models"]["cnn"]["selections"]["max-throughput"]  # the figures
    session.close()
    assert {row["target"] for row in selected["ranking"]} == {"torch", "torch+cl"}


def test_ties_between_variants_go_by_their_declared_order(tmp_path):
    """Selection's tie order (issue 14) over variant targets (issue 15): precisions, then formats,
    then a format's variants in the order their values are listed, never by name."""
    from navbuild.deploy.status import select, tie_order

    options = ('[models.cnn.targets.torch-compile]\nmode = ["reduce-overhead", "default"]\n'
               'channels_last = "search"\n')
    graph = graph_of(project(tmp_path, formats='["torch-compile", "onnx"]', options=options))
    artifacts = [t for t in graph.targets.values() if t.kind == ARTIFACT and t.rule.role is None]
    model = artifacts[0].model
    order = tie_order(model, artifacts)
    compiled = [name for name in order if name.startswith("torch-compile-fp16")]
    # fp16 variants: listed mode values first ("reduce-overhead" before "default"), channels_last's
    # declared values (false, then true) outside them, as the names are built
    assert compiled == ["torch-compile-fp16+cudagraphs", "torch-compile-fp16",
                        "torch-compile-fp16+cl+cudagraphs", "torch-compile-fp16+cl"], order
    assert order.index("onnx") < order.index("torch-compile-fp16+cudagraphs")  # fp32 first
    assert order.index("torch-compile+cudagraphs") < order.index("onnx")  # then the declared formats

    # four variants measured alike: the first in that order wins, whatever the names' sort order
    profile = {"format": "navbuild-profile/2", "runner": "torch-compile", "device": "cpu", "points": [
        {"batch_size": 1, "mean_ms": 1.0, "std_ms": 0.0, "min_ms": 1.0, "max_ms": 1.0, "p50_ms": 1.0,
         "p90_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "throughput": 1000.0, "windows": 3, "runs": 30,
         "stable": True, "spread_pct": 1.0, "ended": "stable"}]}
    targets = {name: {"profile": profile, "correctness": {"passed": True}} for name in compiled}
    selected, details = select(targets, ["max-throughput"], order=order)
    assert selected == {"max-throughput": "torch-compile-fp16+cudagraphs"}
    assert details["max-throughput"]["tied"] == sorted(compiled)
    assert select(targets, ["max-throughput"], order=order[::-1])[0] == {"max-throughput": "torch-compile-fp16+cl"}
