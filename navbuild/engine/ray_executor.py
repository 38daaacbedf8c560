"""``--executor ray``: targets run as Ray tasks on a cluster, artifacts travel through the remote cache.

``RayExecutor`` is an executor of the one scheduler (``engine/scheduler.py``): the machine that
runs ``navbuild`` walks the selected targets in dependency order, as for a local build, and a
target that is neither current in the local store nor in the remote cache (by the key this machine
computes) goes to the cluster, once every target it needs is done, as a Ray task with the
resources it needs (one CPU; a GPU, and the GPU type as Ray's ``accelerator_type`` when
``--gpu-type`` names one, for a target bound to a CUDA device; a CPU profile as many CPUs as the
smallest node has, so that it measures alone). On the node the task opens the project (Ray ships
the project folder as the task's working directory, without store, outputs or ``.git``) and
builds the target with the same scheduler and navbuild's own worker processes (so timeouts and
crashes behave as locally), restoring what it needs from the remote cache into a store of that
node, and uploads it. Keys are computed on the node, with the node's device fingerprint: a
device-bound target belongs to the machine type that built it.

What a node built is restored here at once (never built here: the session settles it with no
action), so that the keys of the targets after it can be computed, and materialized and packaged
like any other; what cannot be restored here (a device-bound target of another machine type)
keeps the node's record. The summary says on which node each target was built.

The remote cache must be writable by the nodes (the write token, if any, set in the nodes'
environment: navbuild never sends it).

Nothing waits in silence: an address where nothing answers is given up after ``connect_timeout``
seconds (``--ray-timeout``, default 30) with one message naming it, before Ray's own retries start;
a task that fails on a node keeps its error's type, message, the file and line it came from and its
last frames (in the target's build.log), not only a first line.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from navbuild.engine import actions, cards, fingerprint
from navbuild.engine.graph import PROFILE
from navbuild.engine.project import open_described
from navbuild.engine.records import BUILT, CACHED, FAILED, REMOTE, Record
from navbuild.engine.scheduler import Scheduler
from navbuild.engine.session import Session
from navbuild.engine.slots import on_gpu

NODE_STORE_ENV = "NAVBUILD_RAY_STORE"  # where a node keeps its store (default: <tmp>/navbuild-ray)
SHIPPED_EXCLUDES = (".git", "navbuild.lock", "__pycache__", "*.nav")
MISSING = "the Ray executor needs Ray: pip install 'navbuild[ray]'"
CONNECT_TIMEOUT_S = 30.0  # --ray-timeout: how long an address may stay silent before the build gives up
LAST_FRAMES = 3  # of a failed task's traceback, kept in its record (the whole of it goes to build.log)


class ExecutorError(ValueError):
    """The executor cannot run this build (a usage error: exit 2)."""


@dataclass
class RayExecutor:
    """``address``: None starts a local Ray instance (or joins RAY_ADDRESS); ``auto`` or
    ``HOST:PORT`` joins a running cluster as a driver; ``ray://HOST:PORT`` goes through Ray Client.
    ``say`` receives a line when Ray is joined; ``connect_timeout``: seconds an address may stay
    silent before the build gives up."""

    address: str | None = None
    gpu_type: str | None = None
    connect_timeout: float = field(default=CONNECT_TIMEOUT_S, compare=False)
    say: Callable[[str], None] = field(default=lambda line: None, compare=False, repr=False)

    # -- the scheduler's executor ------------------------------------------------------------------
    def open(self, scheduler: Scheduler) -> None:
        session = self.session = scheduler.session
        remote = session.remote
        if remote is None or remote.settings.read_only:
            raise ExecutorError("--executor ray shares artifacts between nodes through the remote cache: set "
                                "[cache] remote in navbuild.toml or --remote-cache URL (writable)")
        self.ray = _ray()
        self.task = None  # Ray starts (or is joined) when the first target must go to a node
        self.description = _description(session)
        self.running: dict[Any, str] = {}
        self.restored: list[Record] = []

    def fits(self, name: str) -> bool:
        return True  # Ray queues what its nodes cannot take yet

    def submit(self, name: str) -> None:
        """Restored here from the remote cache, or sent to a node."""
        session = self.session
        forced = name in session.forced
        if not forced and _restored_here(session, name):  # the scheduler found it not current: try the cache
            self.restored.append(session.records.get(name))
            return
        if self.task is None:
            _connect(self.ray, session, self)
            self.say(f"ray: {_cluster_text(self.ray)}")
            self.task = self.ray.remote(run_on_node)
            self.node_cpus = _smallest_node_cpus(self.ray)
        options = _resources(session.graph.targets[name], self, self.node_cpus)
        self.running[self.task.options(**options).remote(self.description, name, forced)] = name

    def collect(self) -> list[Record]:
        if self.restored:
            done, self.restored = self.restored, []
            return done
        ready, _ = self.ray.wait(list(self.running), num_returns=1)
        name = self.running.pop(ready[0])
        node_record = _collect(self.ray, ready[0], name, self.session)
        self.session.forced.discard(name)  # --force: the node rebuilt it, here it is restored
        mine = None
        if node_record.status in (BUILT, CACHED) and _restored_here(self.session, name):
            mine = self.session.records.get(name)  # the same key here: its dependents' keys can be computed
        return [_merged(mine, node_record)]

    def close(self) -> None:
        pass


def parse(text: str | None, gpu_type: str | None = None,
          connect_timeout: float = CONNECT_TIMEOUT_S) -> RayExecutor | None:
    """``--executor``: ``local`` (None: ``--gpu-type`` then chooses this machine's cards,
    ``cards.narrow_to_type``), ``ray``, ``ray:auto``, ``ray:HOST:PORT``, ``ray://HOST:PORT``."""
    if text is None or text == "local":
        return None
    if not connect_timeout > 0:
        raise ExecutorError(f"--ray-timeout must be a number of seconds above 0, got {connect_timeout}")
    if text == "ray":
        return RayExecutor(None, gpu_type, connect_timeout=connect_timeout)
    if text.startswith("ray://"):
        return RayExecutor(text, gpu_type, connect_timeout=connect_timeout)
    if text.startswith("ray:") and len(text) > 4:
        return RayExecutor(text[4:], gpu_type, connect_timeout=connect_timeout)
    raise ExecutorError(f"--executor {text!r}: use local, ray, ray:auto, ray:HOST:PORT or ray://HOST:PORT")


def _restored_here(session: Session, name: str) -> bool:
    """Restored from the remote cache into the local store (the session runs no action)."""
    session.run(name, None)
    record = session.records.get(name)
    return record is not None and record.status == CACHED


def merge(local: dict[str, Record], on_nodes: dict[str, Record]) -> dict[str, Record]:
    """What the summary shows of each target a node ran (``_merged``), beside the local records."""
    merged = dict(local)
    for name, node_record in on_nodes.items():
        merged[name] = _merged(local.get(name), node_record)
    return merged


def _merged(mine: Record | None, node_record: Record) -> Record:
    """A target a node ran keeps the node's status and node; when this machine could not restore
    it (another machine type's device-bound target, a failure), the node's record replaces the
    local one."""
    if mine is not None and mine.status == CACHED and mine.digest == node_record.digest:
        mine.status, mine.node, mine.origin = node_record.status, node_record.node, node_record.origin
        mine.gpu = node_record.gpu
        mine.seconds = node_record.seconds
        return mine
    return node_record


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
    reach(executor.address, executor.connect_timeout, executor.say)
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
    description.pop("gpu_present")  # a node resolves "auto" devices by its own GPUs
    description["options"] = {**description["options"], "remote_cache": session.remote.settings.url,
                               "remote_read_only": False}
    return description


def _smallest_node_cpus(ray: Any) -> int:
    cpus = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    return max(1, int(min((c for c in cpus if c), default=1)))


def _resources(target: Any, executor: RayExecutor, node_cpus: int = 1) -> dict[str, Any]:
    """One CPU; a GPU (of the named type) for a CUDA target, which the node's worker is pinned to.
    A CPU profile takes as many CPUs as the smallest node has: on a cluster of equal nodes it
    measures alone, as with -j."""
    if on_gpu(target):
        options: dict[str, Any] = {"num_cpus": 1, "num_gpus": 1}
        if executor.gpu_type:
            options["accelerator_type"] = executor.gpu_type
        return options
    return {"num_cpus": node_cpus if target.kind == PROFILE else 1}


def _collect(ray: Any, ref: Any, name: str, session: Session | None = None) -> Record:
    try:
        data = ray.get(ref)
    except Exception as exc:  # noqa: BLE001 - a task that died (a node lost) fails its target
        return task_failure(name, exc, session)
    return Record(**data)


def task_failure(name: str, exc: BaseException, session: Session | None = None) -> Record:
    """The record of a target whose Ray task raised: the error's type and message, where it was
    raised (file, line, function) and its last frames; the whole traceback in the target's build.log."""
    cause = getattr(exc, "cause", None) or exc  # a RayTaskError wraps what the task raised
    text = str(getattr(exc, "traceback_str", "") or "") or "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    message = _own_message(cause)
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', text)
    where = f" (at {frames[-1][0]}:{frames[-1][1]} in {frames[-1][2]})" if frames else ""
    reason = f"the Ray task failed: {type(cause).__name__}: {message}{where}"
    metadata: dict[str, Any] = {"traceback": _last_frames(text)}
    if session is not None and name in session.graph.targets:
        target = session.graph.targets[name]
        actions.write_failure_log(session, target, f"{text}\nnavbuild: {name}: {reason}\n")
        metadata["log"] = str(session.outputs.log_path(target))
    return Record(name, FAILED, reason=reason, metadata=metadata)


def _own_message(cause: BaseException) -> str:
    """What the task's exception said, without the traceback that Ray's wrapper adds to it."""
    args = getattr(cause, "args", ())
    text = str(args[0]) if len(args) == 1 and isinstance(args[0], str) else str(cause)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("ray::"):  # "ray::run_on_node() (pid=..)" then the traceback
        lines = lines[-1:]
    return " ".join(lines) if len(lines) <= 3 else " ".join(lines[:3]) + " ..."


def _last_frames(text: str) -> str:
    """The last ``LAST_FRAMES`` frames of a traceback and the error line after them."""
    lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    return "\n".join(lines[starts[-LAST_FRAMES]:] if len(starts) >= LAST_FRAMES else lines[-12:])


# -- reaching the cluster ---------------------------------------------------------------------------
def reach(address: str | None, timeout: float, say: Callable[[str], None] = lambda line: None) -> None:
    """Wait until something answers at the cluster's address, for at most ``timeout`` seconds, then
    give up with one message (Ray itself retries for minutes, silently). A head that is starting is
    waited for; ``None`` (a local instance) and ``auto`` with no address recorded are Ray's to find."""
    host_port = _host_port(address)
    if host_port is None:
        return
    host, port = host_port
    deadline = time.monotonic() + timeout
    tries = 0
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
        tries += 1
        if tries == 1:
            say(f"ray: nothing answers at {host}:{port} yet ({why}); waiting up to {timeout:g} s")
        if time.monotonic() >= deadline:
            raise ExecutorError(f"--executor ray: nothing answers at {host}:{port} ({why}) after {timeout:g} s; "
                                f"start the cluster's head there (ray start --head --port {port}) or name the "
                                f"right address; --ray-timeout S waits longer")
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


def _host_port(address: str | None) -> tuple[str, int] | None:
    """``HOST:PORT`` of ``HOST:PORT``, ``ray://HOST:PORT``, or ``auto`` (from ``RAY_ADDRESS`` or the
    address file of the cluster started last on this machine)."""
    if address == "auto":
        recorded = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        address = os.environ.get("RAY_ADDRESS") or (recorded.read_text().strip() if recorded.is_file() else None)
    if not address or address == "auto":
        return None
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]") or "127.0.0.1", int(port)


# -- the node's side ------------------------------------------------------------------------------
def run_on_node(description: dict[str, Any], name: str, forced: bool) -> dict[str, Any]:
    """Build ``name`` on this node, through the same scheduler: what it needs comes from the remote
    cache (or this node's store)."""

    store_root = Path(os.environ.get(NODE_STORE_ENV) or Path(tempfile.gettempdir()) / "navbuild-ray")
    project = Path(description["config"].get("project", {}).get("name") or "project").name
    out = Path(tempfile.mkdtemp(prefix="navbuild-ray-out-"))
    started = time.perf_counter()
    with _ray_cards():
        session = open_described({**description, "root": os.getcwd(), "store": str(store_root / project),
                                   "out": str(out)})
        record = _build_on_node(session, name, forced, out)
    record.node = _node_name()
    record.seconds = record.seconds or time.perf_counter() - started
    return record.to_dict()


def _build_on_node(session: Session, name: str, forced: bool, out: Path) -> Record:
    try:
        if forced:
            session.forced = {name}
        record = Scheduler(session).build([name])[name]
        manifest = session.current_manifest(name) if record.status == CACHED and record.origin != REMOTE else None
        if manifest is not None and session.remote is not None:  # in this node's store only: share it
            session.remote.publish(session.store, session.graph.targets[name], manifest["key"], manifest)
    finally:
        session.close()
        shutil.rmtree(out, ignore_errors=True)
    return record


@contextlib.contextmanager
def _ray_cards() -> Iterator[None]:
    """The cards Ray assigned this task (``num_gpus=1``: one) are the only ones this task sees, so
    the worker that builds the target is pinned to Ray's card, whatever Ray left in the
    environment. Ray reuses its worker processes for other tasks: the environment is put back."""
    import ray

    ids = [str(gpu) for gpu in ray.get_gpu_ids()]
    saved = {name: os.environ.get(name) for name in (fingerprint.VISIBLE_ENV, cards.ORDER_ENV)}
    if ids:  # Ray's ids are the node's card indices, as nvidia-smi numbers them
        os.environ.update({fingerprint.VISIBLE_ENV: ",".join(ids), cards.ORDER_ENV: cards.PCI_ORDER})
    fingerprint.gpus.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        fingerprint.gpus.cache_clear()


def _node_name() -> str:
    """The host, and Ray's node id where one host runs several nodes."""
    try:
        import ray

        return f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    except Exception:  # noqa: BLE001 - a name is only for the summary
        return socket.gethostname()
