"""A real tritonserver on loopback: found, started on a model repository, asked, stopped.

Which server: ``tritonserver`` on PATH (a Triton install: ``<prefix>/bin/tritonserver`` beside
``<prefix>/backends``), else the one nvidia-pytriton bundles (``pytriton/tritonserver``), which
carries the python backend only. To run the bundled one under this interpreter:

* the backend folder is a copy of its ``backends/python`` plus the python backend stub built for this
  Python (``python_backend_stubs/<X.Y>/triton_python_backend_stub``);
* LD_LIBRARY_PATH holds the interpreter's LIBDIR (the stub links ``libpython<X.Y>.so``, and another
  Python's copy would be found first otherwise) and site-packages' ``nvidia_pytriton.libs``;
* PYTHONPATH lets the stub import navbuild (and the runner a python-backend model names).

The server is started with ``--exit-on-error false``, so a model it cannot load (a backend it lacks)
is reported by name (``model_states``) while the others serve. Nothing here imports a framework.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


class ServerError(RuntimeError):
    """No server to start, or it did not come up; the message says which and how to fix it."""


@dataclass(frozen=True)
class Install:
    """Where a tritonserver lives: its binary, its backend folder, the libraries it needs."""

    binary: Path
    backends: Path
    libraries: tuple[Path, ...] = ()
    bundled: bool = False  # nvidia-pytriton's copy (the python backend only, prepared per interpreter)

    @property
    def label(self) -> str:
        return "the tritonserver bundled with nvidia-pytriton" if self.bundled else f"the tritonserver at {self.binary}"


def find() -> Install | None:
    """The tritonserver on PATH, else the one nvidia-pytriton bundles; None when there is neither."""
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        return Install(binary=binary, backends=binary.parent.parent / "backends")
    bundled = bundled_dirs()
    if bundled is None:
        return None
    server, libs = bundled
    return Install(binary=server / "bin" / "tritonserver", backends=server / "backends", libraries=(libs,),
                   bundled=True)


def bundled_dirs() -> tuple[Path, Path] | None:
    """``(pytriton/tritonserver, nvidia_pytriton.libs)`` of the installed nvidia-pytriton, found
    without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    server = package / "tritonserver"
    if not (server / "bin" / "tritonserver").is_file():
        return None
    return server, package.parent / "nvidia_pytriton.libs"


def backends(install: Install) -> set[str]:
    """The backends the server can load: the folders of its backend directory."""
    if not install.backends.is_dir():
        return set()
    return {path.name for path in install.backends.iterdir() if path.is_dir()}


def python_stub(install: Install) -> Path | None:
    """The bundled python backend stub built for this interpreter (None: none for this Python)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = install.binary.parent.parent / "python_backend_stubs" / version / "triton_python_backend_stub"
    return stub if stub.exists() else None


def prepare_backends(install: Install, dest: Path) -> Path:
    """The backend folder to start with: a server on PATH uses its own; the bundled one a copy of its
    python backend with the stub for this interpreter (ServerError when it has none)."""
    if not install.bundled:
        return install.backends
    stub = python_stub(install)
    if stub is None:
        raise ServerError(f"nvidia-pytriton ships no python backend stub for Python "
                          f"{sys.version_info.major}.{sys.version_info.minor}; install a tritonserver on PATH")
    folder = dest / "backends"
    shutil.copytree(install.backends / "python", folder / "python", ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    shutil.copy2(stub, folder / "python" / "triton_python_backend_stub")
    return folder


def library_path(install: Install | None) -> str:
    """LD_LIBRARY_PATH for the server and the python backend stub under this interpreter."""
    parts = [sysconfig.get_config_var("LIBDIR") or ""]
    if install is not None:
        parts.extend(str(p) for p in install.libraries)
    if os.environ.get("LD_LIBRARY_PATH"):
        parts.append(os.environ["LD_LIBRARY_PATH"])
    return ":".join(p for p in parts if p)


def environment(install: Install | None, pythonpath: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = library_path(install)
    env["PYTHONPATH"] = ":".join([*(str(p) for p in pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve(repo: Path, workdir: Path, *, pythonpath: list[Path], install: Install | None = None,
          strict: bool = True) -> Iterator[str]:
    """Run tritonserver on ``repo`` (127.0.0.1 only) until it is ready; yields the HTTP address
    ``127.0.0.1:<port>``. ``strict``: ready means every model loaded, and a model that fails stops
    the server; else it serves the models that loaded (``model_states`` says why others did not).
    The server's process group is killed on exit, whatever happens."""
    install = install or find()
    if install is None:
        raise ServerError("no tritonserver: put one on PATH, or install nvidia-pytriton (which bundles one): "
                          "pip install -e '.[triton]'")
    workdir.mkdir(parents=True, exist_ok=True)
    backend_dir = prepare_backends(install, workdir)
    port = free_port()
    log_path = workdir / "tritonserver.log"
    command = [str(install.binary), "--model-repository", str(repo), "--backend-directory", str(backend_dir),
               "--http-address", "127.0.0.1", "--http-port", str(port), "--allow-grpc", "false",
               "--allow-metrics", "false", "--exit-timeout-secs", "5",
               "--strict-readiness", "true" if strict else "false", "--exit-on-error", "true" if strict else "false"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=environment(install, pythonpath), start_new_session=True)
    try:
        _wait_ready(process, port, log_path)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


def model_states(url: str) -> dict[str, dict[str, str]]:
    """Every model of the repository with its state (``READY``, ``UNAVAILABLE``...) and the reason
    the server gives, from its repository index."""
    request = urllib.request.Request(f"http://{url}/v2/repository/index", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        index = json.loads(response.read() or b"[]")
    return {str(entry.get("name")): {"state": str(entry.get("state") or "UNKNOWN"),
                                     "reason": str(entry.get("reason") or "")} for entry in index}


def log_tail(log_path: Path, lines: int = 40) -> str:
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def _wait_ready(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    url = f"http://127.0.0.1:{port}/v2/health/ready"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(f"tritonserver exited with {process.returncode}:\n{log_tail(log_path)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.25)
    raise ServerError(f"tritonserver not ready after {START_TIMEOUT_S:g} s:\n{log_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server (it stops its python backend stubs), then SIGKILL to its process
    group (the server and any stub left behind)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # stubs left behind, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_S)
