"""One schema, one validator: navbuild.toml and OptimizeConfig go through engine.config.from_mapping,
and OptimizeConfig's errors name its own fields."""
from __future__ import annotations

import tomllib

import pytest

import navbuild
from navbuild.api.project import format_rules, reads_framework
from navbuild.engine.config import ConfigError, from_mapping
from tests.test_config import CASES

FAST = {"batch_sizes": [1]}


@pytest.mark.parametrize("label, text, expected", [c for c in CASES if c[0] != "malformed toml"],
                         ids=[c[0] for c in CASES if c[0] != "malformed toml"])
def test_a_mapping_gives_the_errors_navbuild_toml_gives(vision, label, text, expected):
    data = tomllib.loads(text)
    with pytest.raises(ConfigError) as error:
        from_mapping(data, vision, format_rules("torch"), label=vision / "navbuild.toml")
    assert expected in str(error.value)
    assert str(error.value).startswith(str(vision / "navbuild.toml"))


def test_a_mapping_that_is_not_a_table_is_refused(vision):
    with pytest.raises(ConfigError, match="must be a table"):
        from_mapping(["models"], vision, label="OptimizeConfig")


CONFIG_CASES = [
    (dict(target_formats=("onix",)), "target_formats", "unknown format 'onix'"),
    (dict(target_precisions=("fp8",)), "target_precisions", "unknown precision 'fp8'"),
    (dict(target_device="tpu"), "target_device", "unknown device 'tpu'"),
    (dict(max_batch_size=-1), "max_batch_size", "must be 0 or more"),
    (dict(optimization_profile={"batch_sizes": [1, 32]}), "optimization_profile",
     "batch size 32 is above max_batch_size 16 of model cnn"),
    (dict(custom_configs={"onnx": {"opsett": 18}}), "custom_configs['onnx']", "has no option 'opsett'"),
    (dict(target_formats=("onnx",), custom_configs={"trt": {}}), "custom_configs['trt']", "unknown key"),
    (dict(optimization_profile={"windw": 3}), "optimization_profile", "unknown profile option"),
    (dict(atol=-1.0), "correctness", "must not be negative"),
    (dict(correctness={"outputs": {"logits": 3}}), "correctness", "must be a table"),
    (dict(sources=["vision/nope.py"]), "sources", "matches no file"),
    (dict(sample_count=0), "sample_count", "must be a positive integer"),
    (dict(batching="yes"), "batching", "must be true or false"),
    (dict(target_formats="onnx"), "target_formats", "not the string"),
    (dict(verify_func=3), "verify_func", "must be a function"),
]


@pytest.mark.parametrize("fields, name, expected", CONFIG_CASES, ids=[c[1] + ":" + c[2] for c in CONFIG_CASES])
def test_optimize_config_errors_name_the_field_and_build_nothing(vision, fields, name, expected):
    config = navbuild.OptimizeConfig(workspace=vision, max_batch_size=16, optimization_profile=FAST).clone(**fields)
    with pytest.raises(ConfigError) as error:
        navbuild.torch.optimize("vision/model.py:build_model", "vision/model.py:make_samples", config, name="cnn")
    message = str(error.value)
    assert message.startswith("OptimizeConfig"), message
    assert f": {name}: " in message and expected in message, message
    assert not list((vision / ".navbuild" / "actions").glob("*/*"))


def test_entry_and_samples_errors_name_the_arguments(vision):
    config = navbuild.OptimizeConfig(workspace=vision)
    with pytest.raises(ConfigError, match=r": model: .*defines no 'nope'"):
        navbuild.torch.optimize("vision/model.py:nope", "vision/model.py:make_samples", config)
    with pytest.raises(ConfigError, match=r": dataloader: file vision/none.tensors does not exist"):
        navbuild.torch.optimize("vision/model.py:build_model", "vision/none.tensors", config)


def test_formats_and_strategies_as_names_and_as_enums():
    config = navbuild.OptimizeConfig(
        target_formats=(navbuild.Format.ONNX, "torchscript-trace", navbuild.Format.TORCHSCRIPT))
    rules = format_rules("torch")
    assert config.formats(rules) == ["onnx", "torchscript-trace"]
    filtered = navbuild.OptimizeConfig(target_formats=("onnx", "torch", "trt"), runners=("onnxruntime",))
    assert filtered.formats(rules) == ["onnx"]
    assert str(navbuild.MaxThroughputStrategy()) == "max-throughput"
    assert str(navbuild.MinLatencyStrategy()) == "min-latency"
    assert str(navbuild.MaxThroughputWithLatencyBudgetStrategy(5)) == "latency-budget:5ms"


def test_onnx_sources_need_a_rule_family_that_reads_them(vision):
    if reads_framework("onnx"):
        pytest.skip("a rule family reading ONNX-file sources is installed")
    (vision / "model.onnx").write_bytes(b"")
    with pytest.raises(ConfigError, match="no installed rule family reads ONNX files as source models"):
        navbuild.onnx.optimize(vision / "model.onnx", [], navbuild.OptimizeConfig(workspace=vision))
