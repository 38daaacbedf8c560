"""Issue 23: a profile's figures follow its key alone. It reads no other target's figures, so the
order in which a model's profiles run changes nothing (before, a target far slower than one
profiled earlier stopped after two windows at its first batch size: ``slower_than_best``)."""
from __future__ import annotations

import textwrap
import time

from navbuild.engine import actions
from navbuild.engine import config
from navbuild.engine.graph import build_graph
from navbuild.engine.session import Session
from navbuild.rule import Rule
from tests.test_rule_declarations import MODEL, ScaleRunner, build_scaled, registry

CONFIG = textwrap.dedent('''
    [project]
    name = "order"

    [profile]
    batch_sizes = [1, 2]
    budget_s = 0
    warmup_runs = 1
    warmup_s = 0
    window_s = 0.001
    min_window_runs = 3
    min_trials = 3
    max_trials = 3

    [models.m]
    framework = "numpy"
    entry = "model.py:build_model"
    samples = "model.py:make_samples"
    inputs = ["x"]
    outputs = ["y"]
    max_batch_size = 4

    [models.m.targets]
    formats = ["scaled", "sluggish"]
''')


class SluggishRunner(ScaleRunner):
    """The same artifact, a thousand times slower than ``ScaleRunner``."""

    name = "sluggish"

    def run_prepared_impl(self, prepared):
        time.sleep(0.005)
        return self.infer_impl(prepared)


def open_session(root) -> Session:
    (root / "model.py").write_text(MODEL)
    (root / "navbuild.toml").write_text(CONFIG)
    reg = registry()
    reg.add_rule(Rule(name="sluggish", version="1", build=build_scaled, frameworks=("numpy",), runner="sluggish",
                      outputs=("scale.npy", "notes/*")), __name__)
    reg.runners[SluggishRunner.name] = SluggishRunner
    project = config.load(root / "navbuild.toml", reg.formats)
    return Session(project, reg, build_graph(project, reg))


def test_a_far_slower_target_profiled_after_a_fast_one_is_measured_in_full(tmp_path):
    session = open_session(tmp_path)
    for name in session.graph.closure(["m:scaled.profile", "m:sluggish.profile"]):  # the fast one first
        assert session.run(name, lambda target, key, material: actions.execute(session, target, key, material)), name
    fast, slow = (session.current_manifest(f"m:{fmt}.profile")["metadata"] for fmt in ("scaled", "sluggish"))
    assert fast["points"][0]["throughput"] > 20 * slow["points"][0]["throughput"]
    assert [p["batch_size"] for p in slow["points"]] == [1, 2] and slow["stop_reason"] == "batch_sizes"
    assert all(p["windows"] == 3 for p in slow["points"])
    # nothing of another target is in its key: what it measures is decided by its own inputs
    material = session.key("m:sluggish.profile")[1]
    assert "scaled" not in repr(material)
