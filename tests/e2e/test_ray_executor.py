"""``--executor ray`` on a real Ray cluster of two nodes (two raylets on this machine, started by
the test through Ray's own ``cluster_utils``), artifacts shared through a ``file://`` remote cache.

The scheduler (the ``navbuild`` process) sends each target to the cluster; the nodes build in their
own stores; the scheduler restores, materializes and packages. A second clone with the same cache
sends nothing to Ray."""
from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest

from navbuild.engine import ray_executor
from navbuild.engine.records import BUILT, CACHED, FAILED, REMOTE, Record
from tests.e2e.conftest import REPO as ROOT, make_project

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (the ray extra)")
ARTIFACTS = ("cnn:samples", "cnn:reference", "cnn:onnx", "cnn:torchscript-trace",
             "encoder:onnx", "encoder:torchscript-trace")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # the nodes' stores (inherited by the raylets): this module's own, so the first build is cold
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv(ray_executor.NODE_STORE_ENV, str(tmp_path_factory.mktemp("node-stores")))

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()
    monkeypatch.undo()


def run(project, *words):
    proc, report = project.build_subprocess(*words)
    output, _ = proc.communicate(timeout=900)
    return proc.returncode, output, (json.loads(report.read_text()) if report.exists() else {})


@needs_ray
def test_a_cold_build_runs_on_the_nodes_and_a_second_clone_sends_nothing(cluster, tmp_path):
    cache = f"file://{tmp_path / 'cache'}"
    first = make_project(tmp_path / "first")
    code, output, records = run(first, "all", "--executor", f"ray:{cluster.address}", "--remote-cache", cache)
    assert code == 0, output
    nodes = {records[name]["node"] for name in records}
    for name in ARTIFACTS:
        assert records[name]["status"] == BUILT and records[name]["node"], records[name]
    for name in ARTIFACTS[2:]:
        assert records[f"{name}.check"]["status"] == BUILT and records[f"{name}.check"]["node"]
        assert any(first.out(name).iterdir())  # restored here and materialized
    assert len(nodes - {None}) == 2, nodes  # both nodes took targets (one CPU each)
    assert (first.root / "navbuild-out" / "e2e.nav").exists()  # restored here, then packaged
    digests = {name: records[name]["digest"] for name in ARTIFACTS}

    second = make_project(tmp_path / "second")
    code, output, again = run(second, "all", "--executor", f"ray:{cluster.address}", "--remote-cache", cache)
    assert code == 0, output
    for name in ARTIFACTS:
        assert again[name]["status"] == CACHED and again[name]["origin"] == REMOTE, again[name]
        assert again[name]["node"] is None and again[name]["digest"] == digests[name]
    assert "ray:" not in output  # nothing was sent: Ray was not even joined


@needs_ray
def test_a_failure_on_a_node_is_its_targets_own(cluster, tmp_path):
    project = make_project(tmp_path / "broken")
    model = project.root / "text" / "model.py"
    model.write_text(model.read_text().replace("def build_model(", "def build_model(*_, **__):\n"
                                               "    raise RuntimeError('broken on purpose')\n\n\ndef _unused(", 1))
    code, output, records = run(project, "all", "--executor", f"ray:{cluster.address}",
                                "--remote-cache", f"file://{tmp_path / 'cache'}")
    assert code == 1
    reference = records["encoder:reference"]
    assert reference["status"] == FAILED and "broken on purpose" in reference["reason"]
    assert reference["node"]  # the node's record: this machine has nothing to restore
    assert records["encoder:onnx.check"]["status"] == FAILED  # not run: what it needs failed
    # the nodes' stores already hold cnn's targets (the test before): found there, shared, restored here
    assert records["cnn:onnx"]["status"] in (BUILT, CACHED) and records["cnn:onnx"]["node"]
    assert (project.out("cnn:onnx") / "model.onnx").exists() or any(project.out("cnn:onnx").iterdir())


def test_ray_needs_a_writable_remote_cache(tmp_path):
    project = make_project(tmp_path / "p")
    assert project.build("all", "--executor", "ray", expect=2) == {}
    project.config.write_text(project.config.read_text().replace(
        "[project]", f'[cache]\nremote = "file://{tmp_path}/c"\nread_only = true\n\n[project]'))
    assert project.build("all", "--executor", "ray", expect=2) == {}


def test_executor_words():
    assert ray_executor.parse(None) is None and ray_executor.parse("local") is None
    assert ray_executor.parse("ray") == ray_executor.RayExecutor(None)
    assert ray_executor.parse("ray:auto").address == "auto"
    assert ray_executor.parse("ray:10.0.0.2:6379", "H100") == ray_executor.RayExecutor("10.0.0.2:6379", "H100")
    assert ray_executor.parse("ray://head:10001").address == "ray://head:10001"
    for bad in ("dask", "ray:", "rays"):
        with pytest.raises(ray_executor.ExecutorError):
            ray_executor.parse(bad)
    assert ray_executor.parse("local", "H100") is None  # --gpu-type then narrows this machine's cards


def test_gpu_targets_go_to_gpu_nodes_of_the_named_type():
    gpu, cpu = SimpleNamespace(device="cuda", kind="artifact"), SimpleNamespace(device="cpu", kind="artifact")
    profile = SimpleNamespace(device="cpu", kind="profile")
    assert ray_executor._resources(profile, ray_executor.RayExecutor(None), node_cpus=8) == {"num_cpus": 8}
    assert ray_executor._resources(gpu, ray_executor.RayExecutor(None, "H100")) == {
        "num_cpus": 1, "num_gpus": 1, "accelerator_type": "H100"}
    assert ray_executor._resources(gpu, ray_executor.RayExecutor(None)) == {"num_cpus": 1, "num_gpus": 1}
    assert ray_executor._resources(cpu, ray_executor.RayExecutor(None, "H100")) == {"num_cpus": 1}


def test_the_summary_keeps_the_nodes_status_for_what_was_restored_here():
    local = {"a": Record("a", CACHED, digest="d1"), "b": Record("b", "skipped", reason="no CUDA GPU"),
             "c": Record("c", CACHED, digest="d3")}
    on_nodes = {"a": Record("a", BUILT, digest="d1", node="n1", seconds=2.0),
                "b": Record("b", BUILT, digest="d2", node="gpu-node")}
    merged = ray_executor.merge(local, on_nodes)
    assert (merged["a"].status, merged["a"].node, merged["a"].seconds) == (BUILT, "n1", 2.0)
    assert merged["b"] is on_nodes["b"]  # a device-bound target of another machine type
    assert merged["c"].status == CACHED and merged["c"].node is None


@needs_ray
def test_an_address_where_nothing_listens_is_given_up_with_one_message(tmp_path):
    """A closed loopback port: the build gives up after --ray-timeout seconds, naming the address
    and what to do (Ray alone retries for minutes, printing nothing)."""
    import os
    import socket
    import subprocess
    import sys

    from tests.e2e.tiny import make_tiny_project

    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project = make_tiny_project(tmp_path / "project", precisions='["fp32"]')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), "mlp:samples",
                             "--executor", f"ray:127.0.0.1:{port}", "--ray-timeout", "2",
                             "--remote-cache", f"file://{tmp_path / 'cache'}"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("navbuild: error:")]
    assert errors == [f"navbuild: error: --executor ray: nothing answers at 127.0.0.1:{port} (Connection refused) "
                      f"after 2 s; start the cluster's head there (ray start --head --port {port}) or name the "
                      f"right address; --ray-timeout S waits longer"], result.stderr


def test_a_failed_task_keeps_its_type_message_place_and_last_frames(tmp_path):
    """What a Ray task raised (a RayTaskError as ray.get raises it), kept whole enough to act on."""
    pytest.importorskip("ray")
    from ray.exceptions import RayTaskError

    remote_traceback = (
        "ray::run_on_node() (pid=4242, ip=10.0.0.2)\n"
        "Traceback (most recent call last):\n"
        '  File "/opt/ray/_private/worker.py", line 900, in main_loop\n    task()\n'
        '  File "/tmp/ray/session/navbuild/engine/ray_executor.py", line 280, in run_on_node\n'
        "    session = open_described(description)\n"
        '  File "/tmp/ray/session/navbuild/engine/project.py", line 61, in open_described\n'
        "    project = from_mapping(config, root)\n"
        '  File "/tmp/ray/session/navbuild/engine/config.py", line 190, in from_mapping\n'
        "    raise ValueError(\"models.cnn.entry: vision/model.py does not exist on this node\")\n"
        "ValueError: models.cnn.entry: vision/model.py does not exist on this node")
    cause = ValueError("models.cnn.entry: vision/model.py does not exist on this node")
    error = RayTaskError("run_on_node", remote_traceback, cause)

    class Cluster:  # what the executor asks of Ray here: the task's result, which raises
        @staticmethod
        def get(ref):
            raise error.as_instanceof_cause()

    project = make_project(tmp_path / "p")
    from navbuild.engine.project import open_project

    session = open_project(project.config)
    record = ray_executor._collect(Cluster, object(), "cnn:onnx", session)
    assert record.status == FAILED
    assert record.reason == ("the Ray task failed: ValueError: models.cnn.entry: vision/model.py does not exist on "
                             "this node (at /tmp/ray/session/navbuild/engine/config.py:190 in from_mapping)")
    assert record.metadata["traceback"].splitlines()[0].strip().startswith(
        'File "/tmp/ray/session/navbuild/engine/ray_executor.py", line 280')
    assert record.metadata["traceback"].splitlines()[-1].startswith("ValueError: models.cnn.entry")
    log = project.out("cnn:onnx") / "build.log"
    assert record.metadata["log"] == str(log) and "open_described" in log.read_text()
