"""``--executor ray`` on a node with two GPUs (fake ones, ``NAVBUILD_FAKE_GPUS``, and Ray told it has
two): one Ray task per GPU target with ``num_gpus=1``, and the worker that builds it on the node is
pinned to the card Ray assigned the task (``ray.get_gpu_ids()``), even where Ray itself leaves the
task's ``CUDA_VISIBLE_DEVICES`` alone."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.e2e.test_gpu_cards import H100, ROOT, toy_project
from tests.plugins import install

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (the ray extra)")


@pytest.fixture(scope="module")
def gpu_node(tmp_path_factory):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    from navbuild.engine import ray_executor

    monkeypatch = pytest.MonkeyPatch()  # what the node's processes inherit
    monkeypatch.setenv(ray_executor.NODE_STORE_ENV, str(tmp_path_factory.mktemp("node-store")))
    monkeypatch.setenv("NAVBUILD_FAKE_GPUS", json.dumps([H100, H100]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    # Ray then leaves every card visible to a task: the pin is navbuild's own, from ray.get_gpu_ids()
    monkeypatch.setenv("RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES", "1")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 4, "num_gpus": 2, "include_dashboard": False})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()
    monkeypatch.undo()


@needs_ray
def test_each_gpu_target_is_a_task_whose_worker_is_pinned_to_rays_card(gpu_node, tmp_path):
    config = toy_project(tmp_path / "project", models=2, sleep=1.0)
    report = tmp_path / "records.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(install(tmp_path / "plugin"))]),
           "NAVBUILD_FAKE_GPUS": json.dumps([H100, H100])}
    result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), "--json", str(report),
                             "-q", "all", "--executor", f"ray:{gpu_node.address}",
                             "--remote-cache", f"file://{tmp_path / 'cache'}"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    records = json.loads(report.read_text())
    on_gpu = {name: r for name, r in records.items() if not name.endswith((":samples", ":reference"))}
    assert len(on_gpu) == 8
    for name, record in on_gpu.items():
        assert record["status"] == "built" and record["node"], (name, record)
        given = record["metadata"] if record["correctness"] is None else record["correctness"]["runner_info"]
        assert given["cuda_visible_devices"] == str(record["gpu"]), (name, record)
    assert {r["gpu"] for r in on_gpu.values()} == {0, 1}  # Ray gave two tasks a card each at once
