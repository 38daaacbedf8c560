"""Rules declare their outputs, their Triton mapping and their role; the engine and the deployment
code follow the declarations and know no format.

The project here uses a framework and formats that navbuild has never heard of (a "numpy" model
whose reference rule writes ``expected.tensors``, a ``scaled`` format served by a made-up Triton
backend): built, checked, described in the status, packaged and laid out for Triton, through a
registry that holds only those rules and the samples rule.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from navbuild import tensors
from navbuild.engine import config
from navbuild.engine.graph import build_graph
from navbuild.engine.records import FAILED
from navbuild.engine.registry import Registry, RegistryError, default_registry
from navbuild.engine.scheduler import Scheduler
from navbuild.engine.session import Session
from navbuild.rule import ROLE_REFERENCE, ROLE_SAMPLES, SOURCE, BuildContext, Rule, TritonModel
from navbuild.runner import Runner

MODEL = textwrap.dedent('''
    import numpy as np


    def build_model():
        return {"scale": 3.0}


    def make_samples():
        rng = np.random.default_rng(0)
        return [{"x": rng.standard_normal((b, 4)).astype(np.float32)} for b in (1, 2)]
''')

CONFIG = textwrap.dedent('''
    [project]
    name = "declared"

    [profile]
    enabled = false

    [models.m]
    framework = "numpy"
    entry = "model.py:build_model"
    samples = "model.py:make_samples"
    inputs = ["x"]
    outputs = ["y"]
    max_batch_size = 4

    [models.m.targets]
    formats = {formats}
''')


def _scale(ctx: BuildContext) -> float:
    return float(ctx.model.load_entry()["scale"])


def build_reference(ctx: BuildContext) -> dict[str, Any]:
    tensors.save(ctx.out_dir / "expected.tensors", [{"y": s["x"] * _scale(ctx)} for s in ctx.samples])
    return {"outputs": ["y"]}


def build_scaled(ctx: BuildContext) -> dict[str, Any]:
    np.save(ctx.out_dir / "scale.npy", np.float32(_scale(ctx)))
    (ctx.out_dir / "notes").mkdir()
    (ctx.out_dir / "notes" / "how.txt").write_text("y = x * scale\n")
    return {}


def build_copied(ctx: BuildContext) -> dict[str, Any]:
    ctx.copy_input("scale.npy")
    return {}


def build_batched(ctx: BuildContext) -> dict[str, Any]:
    build_scaled(ctx)
    return {"max_batch_size": ctx.max_batch_size, "normalize": ctx.normalize}


def build_sloppy(ctx: BuildContext) -> dict[str, Any]:
    build_scaled(ctx)
    return {"normalize": ctx.normalize}  # an engine value its rule does not declare


def build_untidy(ctx: BuildContext) -> dict[str, Any]:
    build_scaled(ctx)
    (ctx.out_dir / "stray.tmp").write_text("left behind")
    return {}


class ScaleRunner(Runner):
    name = "scale"

    def activate_impl(self) -> None:
        self.scale = float(np.load(Path(self.artifact_dir) / "scale.npy"))

    def infer_impl(self, feed):
        return {"y": feed["x"] * self.scale}


WIDGET = TritonModel(backend="widget", platform="widget_npy", files={"scale.npy": "model.npy", "notes/": "notes/"})


def rules() -> list[Rule]:
    return [
        Rule(name="expected", version="1", build=build_reference, frameworks=("numpy",), role=ROLE_REFERENCE,
             outputs=("expected.tensors",)),
        Rule(name="scaled", version="1", build=build_scaled, frameworks=("numpy",), runner="scale",
             outputs=("scale.npy", "notes/*"), triton=WIDGET, base=True),
        Rule(name="copied", version="1", build=build_copied, consumes="scaled", runner="scale",
             outputs=("scale.npy",)),
        Rule(name="untidy", version="1", build=build_untidy, frameworks=("numpy",), runner="scale",
             outputs=("scale.npy", "notes/*")),
        Rule(name="batched", version="1", build=build_batched, frameworks=("numpy",), runner="scale",
             outputs=("scale.npy", "notes/*"), uses=("max_batch_size", "normalize")),
        Rule(name="sloppy", version="1", build=build_sloppy, frameworks=("numpy",), runner="scale",
             outputs=("scale.npy", "notes/*"), uses=("max_batch_size",)),
        # the same format name for another framework: a separate rule
        Rule(name="scaled", version="1", build=build_scaled, frameworks=("other",), runner="scale",
             outputs=("scale.npy",)),
    ]


def registry() -> Registry:
    found = Registry()
    found.add_module("navbuild_rules.samples")
    for rule in rules():
        found.add_rule(rule, __name__)
    found.runners[ScaleRunner.name] = ScaleRunner
    return found


def open_session(tmp_path: Path, formats: list[str]) -> Session:
    (tmp_path / "model.py").write_text(MODEL)
    (tmp_path / "navbuild.toml").write_text(CONFIG.format(formats=json.dumps(formats)))
    reg = registry()
    project = config.load(tmp_path / "navbuild.toml", reg.formats)
    return Session(project, reg, build_graph(project, reg))


def build_all(session: Session) -> dict[str, bool]:
    records = Scheduler(session).build(session.graph.resolve(["all"]))
    return {name: record.status != FAILED for name, record in records.items()}


def test_an_unknown_framework_builds_checks_and_deploys_from_declarations(tmp_path):
    from navbuild.deploy import package, status as status_module, triton_repo

    session = open_session(tmp_path, ["scaled", "copied"])
    assert build_all(session) == {name: True for name in session.graph.targets}
    records = session.collect_records(list(session.graph.targets))
    assert records["m:scaled.check"].correctness["passed"] and records["m:copied.check"].correctness["passed"]

    status = status_module.collect(session)
    model = status["models"]["m"]
    assert model["reference"]["path"].endswith("expected.tensors")  # the role rule's declared file
    assert model["outputs"] == [{"name": "y", "dtype": "float32", "shape": [-1, 4]}]
    assert model["targets"]["scaled"]["triton"] == WIDGET.to_dict() and model["targets"]["scaled"]["base"]
    assert model["targets"]["copied"]["triton"] is None and not model["targets"]["copied"]["base"]

    folder = triton_repo.write_model_repository(status, "m", tmp_path / "repo", target="scaled")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1/model.npy", "1/notes/how.txt", "config.pbtxt"]
    text = (folder / "config.pbtxt").read_text()
    assert 'backend: "widget"' in text and 'platform: "widget_npy"' in text
    python = triton_repo.write_model_repository(status, "m", tmp_path / "repo", target="copied",
                                                triton_name="m_copied")
    assert 'backend: "python"' in (python / "config.pbtxt").read_text()

    # a base format travels in the package whatever was selected; the reference under its own name
    names = package.read_package(package.write_package(status, tmp_path / "m.nav", strategies=())).names
    assert "m/scaled/scale.npy" in names and "m/expected.tensors" in names
    assert not any(name.startswith("m/copied/") for name in names)


def test_a_build_that_writes_an_undeclared_file_fails(tmp_path):
    session = open_session(tmp_path, ["untidy"])
    results = build_all(session)
    assert results["m:untidy"] is False
    reason = session.collect_records(["m:untidy"])["m:untidy"].reason
    assert "rule untidy wrote stray.tmp, which its outputs (scale.npy, notes/*) do not declare" in reason


def test_one_format_name_has_a_rule_per_framework():
    reg = registry()
    assert reg.rule("scaled", "numpy").frameworks == ("numpy",)
    assert reg.rule("scaled", "other").frameworks == ("other",)
    assert reg.rule("copied", "numpy").consumes == "scaled"
    with pytest.raises(RegistryError, match="has a rule per framework"):
        reg.rule("scaled")
    with pytest.raises(RegistryError, match="format 'scaled' is not available for torch models"):
        reg.rule("scaled", "torch")
    # formats per framework follow the upstream: copied reads scaled, which both frameworks have
    assert sorted(reg.formats("numpy")) == ["batched", "copied", "scaled", "sloppy", "untidy"]
    assert sorted(reg.formats("other")) == ["copied", "scaled"]
    assert reg.role(ROLE_REFERENCE, "numpy").name == "expected" and reg.role(ROLE_REFERENCE, "other") is None
    with pytest.raises(RegistryError, match="rule 'scaled' for numpy models is declared by both"):
        reg.add_rule(Rule(name="scaled", version="2", build=build_scaled, frameworks=("numpy", "jax")), "elsewhere")
    with pytest.raises(RegistryError, match="rule 'copied' for any models is declared by both"):
        reg.add_rule(Rule(name="copied", version="2", build=build_copied, consumes="scaled"), "elsewhere")


def test_a_format_of_another_framework_is_refused_with_the_reason(tmp_path):
    with pytest.raises(config.ConfigError, match="unknown format 'torchscript-trace'"):
        open_session(tmp_path, ["torchscript-trace"])


def test_every_builtin_rule_declares_what_the_engine_relies_on():
    reg = default_registry()
    every = [rule for rules in reg.by_name.values() for rule in rules]
    for rule in every:
        assert rule.outputs, f"{rule.name} declares no outputs"
        if rule.triton is not None:
            for source in rule.triton.files:
                name = source.rstrip("/") + ("/x" if source.endswith("/") else "")
                assert not rule.undeclared_outputs([name]), f"{rule.name}: Triton file {source} is not an output"
    samples = [rule for rule in every if rule.role == ROLE_SAMPLES]
    assert len(samples) == 1 and not samples[0].frameworks
    for rule in every:
        if rule.role is not None:
            assert rule.outputs[0].endswith(".tensors"), rule.name  # its tensors file comes first
    assert reg.role(ROLE_REFERENCE, "torch") is not None
    assert all(rule.consumes == SOURCE for rule in every if rule.role)


def test_the_machine_facts_come_from_the_declarations(monkeypatch):
    """The GPU fingerprint holds the versions of the tools rules declare part of the device (as
    before: TensorRT), -j watches the modules rules need, the status lists the tools they use."""
    from navbuild.engine import fingerprint

    reg = default_registry()
    assert reg.device_tools() == ("tensorrt",)
    monkeypatch.delenv(fingerprint.OVERRIDE_ENV, raising=False)
    assert set(fingerprint.device("cuda")) == {"gpu", "tensorrt"}
    assert {"torch", "onnxruntime"} <= set(reg.modules())
    assert {"torch", "onnx", "onnxruntime"} <= set(reg.tools())


# -- engine values (navbuild.rule.ENGINE_VALUES) -----------------------------------------------------
def test_a_rule_reads_the_engine_values_it_declares_through_its_context(tmp_path):
    session = open_session(tmp_path, ["batched", "sloppy"])
    results = build_all(session)
    assert results["m:batched"] is True and results["m:sloppy"] is False
    assert session.current_manifest("m:batched")["metadata"] == {"max_batch_size": 4, "normalize": True}
    assert "max_batch_size" not in session.key("m:batched")[1]["params"]  # no engine value among the parameters
    assert session.key("m:batched")[1]["engine_values"] == {"max_batch_size": 4, "normalize": True}
    reason = session.collect_records(["m:sloppy"])["m:sloppy"].reason
    assert "reads ctx.normalize but does not declare it: add 'normalize' to its Rule's uses" in reason


def test_the_keys_hold_exactly_the_engine_values_each_rule_declares(tmp_path):
    def keys(text_change: tuple[str, str] = ("", "")) -> dict[str, str]:
        config_file = tmp_path / "navbuild.toml"
        if text_change[0]:
            config_file.write_text(config_file.read_text().replace(*text_change))
        reg = registry()
        project = config.load(config_file, reg.formats)
        session = Session(project, reg, build_graph(project, reg))
        Scheduler(session).build(["m:samples"])
        return {name: session.key(name)[0] for name in ("m:samples", "m:reference", "m:scaled", "m:batched")}

    open_session(tmp_path, ["scaled", "batched"])
    before = keys()
    wider = keys(("max_batch_size = 4", "max_batch_size = 2"))
    assert {n for n in before if wider[n] != before[n]} == {"m:samples", "m:batched"}
    plain = keys(("[models.m.targets]", "[models.m.targets]\nnormalize = false"))
    assert {n for n in before if plain[n] != wider[n]} == {"m:batched"}  # only it declares normalize


def test_an_engine_value_is_never_a_parameter_and_uses_names_only_engine_values():
    with pytest.raises(ValueError, match=r"\['max_batch_size'\] are engine values, not parameters: declare them "
                                         r"in uses=\(...\) and read ctx.max_batch_size"):
        Rule(name="bad", version="1", build=build_scaled, params={"max_batch_size": 1})
    with pytest.raises(ValueError, match=r"uses \['batch'\], which the engine does not supply"):
        Rule(name="bad", version="1", build=build_scaled, uses=("batch",))


# -- a rule is chosen by what it consumes --------------------------------------------------------------
def test_a_converter_serves_every_framework_whose_chain_reaches_what_it_consumes():
    """One format name: a framework's own rule from the source, and a converter for any framework from
    another format (tf2onnx's onnx reads any savedmodel): each model gets the one its chain reaches."""
    reg = registry()
    reg.add_rule(Rule(name="raw", version="1", build=build_scaled, frameworks=("third",), runner="scale",
                      outputs=("scale.npy",)), "third_family")
    reg.add_rule(Rule(name="scaled", version="1", build=build_copied, consumes="raw", runner="scale",
                      outputs=("scale.npy",)), "converters")
    assert reg.rule("scaled", "numpy").consumes == SOURCE and reg.rule("scaled", "third").consumes == "raw"
    assert reg.rule("copied", "third").consumes == "scaled"  # and what reads scaled follows
    assert sorted(reg.formats("third")) == ["copied", "raw", "scaled"]
    assert reg.rule("expected", "numpy").role == ROLE_REFERENCE  # a role's rule by name too, never a format
    assert "expected" not in reg.formats("numpy")


def test_no_builtin_rule_lists_another_familys_framework():
    reg = default_registry()
    every = [rule for rules in reg.by_name.values() for rule in rules]
    assert all(len(rule.frameworks) <= 1 for rule in every), [(r.name, r.frameworks) for r in every]
    tf2onnx = reg.rule("onnx", "jax")  # a JAX model's savedmodel (jax2tf) converts like TensorFlow's
    assert tf2onnx is reg.rule("onnx", "tensorflow") and tf2onnx.frameworks == () and tf2onnx.consumes == "savedmodel"
    assert reg.rule("tf-trt", "jax") is reg.rule("tf-trt", "tensorflow")
    assert reg.rule("onnx", "torch").consumes == SOURCE and "savedmodel" not in reg.formats("torch")
