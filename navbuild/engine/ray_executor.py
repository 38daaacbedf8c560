"""``--executor ray``: targets run as Ray tasks on a cluster, artifacts travel through the remote cache.

The machine that runs ``navbuild`` schedules: it walks the selected targets in dependency order and
sends each one, once every target it needs has finished, as a Ray task with the resources it needs
(one CPU; a GPU, and the GPU type as Ray's ``accelerator_type`` when ``--gpu-type`` names one, for
a target bound to a CUDA device). On the node the task opens the project (Ray ships the project
folder as the task's working directory, without store, outputs or ``.git``), restores what the
target needs from the remote cache into a store of that node, builds the target in navbuild's own
worker processes (so timeouts and crashes behave as locally) and uploads it. Keys are computed on
the node, with the node's device fingerprint: a device-bound target belongs to the machine type
that built it.

Then the scheduler runs the ordinary local build in restore-only mode: every target whose key it
computes the same way is restored from the remote cache, materialized and packaged; what it cannot
restore (a device-bound target of another machine type) keeps the node's record. The summary says
on which node each target was built.

The remote cache must be writable by the nodes (the write token, if any, set in the nodes'
environment: navbuild never sends it).
"""
from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from navbuild.engine.graph import PROFILE
from navbuild.engine.records import BUILT, CACHED, FAILED, REMOTE, Record
from navbuild.engine.session import Session

NODE_STORE_ENV = "NAVBUILD_RAY_STORE"  # where a node keeps its store (default: <tmp>/navbuild-ray)
SHIPPED_EXCLUDES = (".git", "navbuild.lock", "__pycache__", "*.nav")
MISSING = "the Ray executor needs Ray: pip install 'navbuild[ray]'"


class ExecutorError(ValueError):
    """The executor cannot run this build (a usage error: exit 2)."""


@dataclass(frozen=True)
class RayExecutor:
    """``address``: None starts a local Ray instance (or joins RAY_ADDRESS); ``auto`` or
    ``HOST:PORT`` joins a running cluster as a driver; ``ray://HOST:PORT`` goes through Ray Client."""

    address: str | None = None
    gpu_type: str | None = None


def parse(text: str | None, gpu_type: str | None = None) -> RayExecutor | None:
    """``--executor``: ``local`` (None), ``ray``, ``ray:auto``, ``ray:HOST:PORT``, ``ray://HOST:PORT``."""
    if text is None or text == "local":
        if gpu_type:
            raise ExecutorError("--gpu-type only applies to --executor ray")
        return None
    if text == "ray":
        return RayExecutor(None, gpu_type)
    if text.startswith("ray://"):
        return RayExecutor(text, gpu_type)
    if text.startswith("ray:") and len(text) > 4:
        return RayExecutor(text[4:], gpu_type)
    raise ExecutorError(f"--executor {text!r}: use local, ray, ray:auto, ray:HOST:PORT or ray://HOST:PORT")


def build(session: Session, selected: list[str], executor: RayExecutor,
          say: Callable[[str], None] = lambda line: None) -> dict[str, Record]:
    """Run what the closure of ``selected`` lacks on the Ray cluster; returns the record of each
    target a node ran (and of each that this machine restored from the remote cache).

    A target is first looked for locally and in the remote cache (by the key this machine
    computes); only what neither has goes to a node, and what a node built is restored here at
    once, so that the keys of the targets after it can be computed."""
    remote = session.remote
    if remote is None or remote.settings.read_only:
        raise ExecutorError("--executor ray shares artifacts between nodes through the remote cache: set "
                            "[cache] remote in navbuild.toml or --remote-cache URL (writable)")
    ray = _ray()
    task = None  # Ray starts (or is joined) when the first target must go to a node
    description = _description(session)
    graph = session.graph
    waiting = graph.closure(selected)
    running: dict[Any, str] = {}
    finished: dict[str, str] = {}  # target -> status, as far as its dependents care
    on_nodes: dict[str, Record] = {}
    session.options.restore_only = True
    while waiting or running:
        for name in [n for n in waiting if all(d in finished for d in graph.targets[n].deps)]:
            waiting.remove(name)
            failed = [d for d in graph.targets[name].deps if finished[d] == FAILED]
            if failed:
                on_nodes[name] = Record(name, FAILED, reason=f"not run: {', '.join(failed)} failed")
                finished[name] = FAILED
            elif _restored_here(session, name):
                finished[name] = CACHED
                if session.records.get(name).origin == REMOTE:  # the summary says "remote", not "cached"
                    on_nodes[name] = session.records.get(name)
            else:
                if task is None:
                    _connect(ray, session, executor)
                    say(f"ray: {_cluster_text(ray)}")
                    task = ray.remote(run_on_node)
                    node_cpus = _smallest_node_cpus(ray)
                options = _resources(graph.targets[name], executor, node_cpus)
                running[task.options(**options).remote(description, name, name in session.forced)] = name
        if not running:
            continue
        ready, _ = ray.wait(list(running), num_returns=1)
        name = running.pop(ready[0])
        record = on_nodes[name] = _collect(ray, ready[0], name)
        finished[name] = record.status
        session.forced.discard(name)  # --force: the node rebuilt it, here it is restored
        if record.status in (BUILT, CACHED):
            _restored_here(session, name)  # the same key here: its dependents' keys can be computed
        say(f"{record.status:8} {name}" + (f" on {record.node}" if record.node else "")
            + (f": {record.reason}" if record.reason else ""))
    return on_nodes


def _restored_here(session: Session, name: str) -> bool:
    """Current in the local store, or restored from the remote cache (restore-only: never built here)."""
    if session.is_up_to_date(name):
        return True
    session.run(name)
    record = session.records.get(name)
    return record is not None and record.status == CACHED


def merge(local: dict[str, Record], on_nodes: dict[str, Record]) -> dict[str, Record]:
    """What the summary shows: a target a node ran keeps the node's status and node; when this
    machine could not restore it (another machine type's device-bound target, a failure), the
    node's record replaces the local one."""
    merged = dict(local)
    for name, node_record in on_nodes.items():
        mine = local.get(name)
        if mine is not None and mine.status == CACHED and mine.digest == node_record.digest:
            mine.status, mine.node, mine.origin = node_record.status, node_record.node, node_record.origin
            mine.seconds = node_record.seconds
        else:
            merged[name] = node_record
    return merged


# -- the scheduler's side -------------------------------------------------------------------------
def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(MISSING) from None
    return ray


def _connect(ray: Any, session: Session, executor: RayExecutor) -> None:
    if ray.is_initialized():
        return
    root = session.project.root
    excludes = [*SHIPPED_EXCLUDES, *(_relative(p, root) for p in (session.project.store, session.project.out))]
    code = _code_to_ship(session)
    runtime_env = {"working_dir": str(root), "excludes": [e for e in excludes if e], "py_modules": code}
    ray.init(address=executor.address, runtime_env=runtime_env, log_to_driver=False, include_dashboard=False,
             configure_logging=False)


def _code_to_ship(session: Session) -> list[str]:
    """navbuild and the packages of the project's rule modules, as this process loaded them: the
    nodes compute keys and build with exactly the scheduler's code."""
    tops = ["navbuild", *(name.split(".")[0] for name in session.registry.rule_modules)]
    folders = []
    for top in dict.fromkeys(tops):
        module = sys.modules.get(top)
        if module is not None and getattr(module, "__path__", None):
            folders.append(str(Path(list(module.__path__)[0])))
    return folders


def _relative(path: Path, root: Path) -> str | None:
    try:
        return "/" + str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return None


def _cluster_text(ray: Any) -> str:
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    return f"{len(nodes)} node(s), {int(resources.get('CPU', 0))} CPUs" + (f", {gpus} GPUs" if gpus else "")


def _description(session: Session) -> dict[str, Any]:
    description = session.describe()
    description["options"] = {**description["options"], "remote_cache": session.remote.settings.url,
                               "remote_read_only": False}
    return description


def _smallest_node_cpus(ray: Any) -> int:
    cpus = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return max(1, int(min((c for c in cpus if c), default=1)))


def _resources(target: Any, executor: RayExecutor, node_cpus: int = 1) -> dict[str, Any]:
    """One CPU; a GPU (of the named type) for a CUDA target. A CPU profile takes as many CPUs as
    the smallest node has: on a cluster of equal nodes it measures alone, as with -j."""
    if str(target.device).startswith("cuda"):
        options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1}
        if executor.gpu_type:
            options["accelerator_type"] = executor.gpu_type
        return options
    return {"num_cpus": node_cpus if target.kind == PROFILE else 1}


def _collect(ray: Any, ref: Any, name: str) -> Record:
    try:
        data = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a task that died (a node lost) fails its target
        cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps what the task raised
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return Record(name, FAILED, reason=f"the Ray task failed: {type(cause).__name__}: {first}")
    return Record(**data)


# -- the node's side ------------------------------------------------------------------------------
def run_on_node(description: dict[str, Any], name: str, forced: bool) -> dict[str, Any]:
    """Build ``name`` on this node: what it needs comes from the remote cache (or this node's store)."""
    from navbuild.engine.project import open_described

    store_root = Path(os.environ.get(NODE_STORE_ENV) or Path(tempfile.gettempdir()) / "navbuild-ray")
    project = Path(description["config"].get("project", {}).get("name") or "project").name
    out = Path(tempfile.mkdtemp(prefix="navbuild-ray-out-"))
    started = time.perf_counter()
    session = open_described({**description, "root": os.getcwd(), "store": str(store_root / project),
                               "out": str(out)})
    try:
        session.store.hold_shared()
        if forced:
            session.forced = {name}
        for each in session.graph.closure([name]):
            if not session.is_up_to_date(each):
                session.run(each)
        record = session.records.get(name) or Record(name, FAILED, reason="not run on the node")
        manifest = session.current_manifest(name) if record.status == CACHED and record.origin != REMOTE else None
        if manifest is not None and session.remote is not None:  # in this node's store only: share it
            session.remote.publish(session.store, session.graph.targets[name], manifest["key"], manifest)
    finally:
        session.close()
        shutil.rmtree(out, ignore_errors=True)
    record.node = _node_name()
    record.seconds = record.seconds or time.perf_counter() - started
    return record.to_dict()


def _node_name() -> str:
    """The host, and Ray's node id where one host runs several nodes."""
    try:
        import ray

        return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    except Exception:  # noqa: BLE001 - a name is only for the summary
        return socket.gethostname()
