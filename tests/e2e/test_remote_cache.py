"""The remote cache end to end: real builds (the CLI in a subprocess) against Debian's nginx with
WebDAV PUT, a folder through fsspec, a server that is killed mid-build and one that stalls.

Most tests start from ``seeded``: a cache folder filled once by a real build of a small project
(the example CNN, TorchScript and ONNX); nginx serves a copy of it, since nginx's document root
and a file:// cache have the same layout (``ac/``, ``cas/``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from navbuild.engine import lockfile
from navbuild.engine.remote import entry_name
from navbuild.hashing import digest_file
from tests.example_cnn import cnn_config, copy_vision
from tests.remote_util import NginxCache, StallingCache, require_nginx

REPO = Path(__file__).resolve().parents[2]

CONFIG = cnn_config("remote-e2e", profile="{profile}", after="{cache}")
NO_PROFILE = "[profile]\nenabled = false"
TINY_PROFILE = "[profile]\nbatch_sizes = [1]\nmin_window_runs = 5\nwindow_s = 0.002\nmin_trials = 3\nmax_trials = 3"


@dataclass
class Run:
    code: int
    records: dict[str, dict]
    stdout: str
    stderr: str

    def statuses(self) -> dict[str, str]:
        return {name: record["status"] for name, record in self.records.items()}

    def origins(self) -> dict[str, str | None]:
        return {name: record.get("origin") for name, record in self.records.items()}

    def remote_warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "remote cache" in line]


def small_project(root: Path, profile: str = NO_PROFILE, cache: str = "") -> Path:
    root.mkdir(parents=True)
    copy_vision(root)
    (root / "navbuild.toml").write_text(CONFIG.format(profile=profile, cache=cache))
    return root


def navbuild(root: Path, *words: str, env: dict[str, str] | None = None, quiet: bool = True,
             config: Path | None = None, popen: bool = False):
    """The CLI in a child process (its own environment: tokens, fingerprints)."""
    report = root / f"run-{uuid.uuid4().hex[:8]}.json"
    child_env = {k: v for k, v in os.environ.items()
                 if not k.startswith("NAVBUILD_REMOTE_CACHE") and k != "NAVBUILD_DEVICE_FINGERPRINT"}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    child_env.update(env or {})
    command = [sys.executable, "-m", "navbuild.cli", "--config", str(config or root / "navbuild.toml"),
               "--json", str(report), *(["-q"] if quiet else []), *words]
    process = subprocess.Popen(command, cwd=root, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    if popen:
        return process, report
    return finish(process, report)


def finish(process: subprocess.Popen, report: Path) -> Run:
    stdout, stderr = process.communicate(timeout=600)
    records = json.loads(report.read_text()) if report.exists() else {}
    return Run(process.returncode, records, stdout, stderr)


def tree_sha256(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_store_consistent(store: Path) -> None:
    """Every object is what its name says, and nothing is left half-written in tmp/."""
    for path in (store / "objects").glob("*/*"):
        assert digest_file(path) == path.parent.name + path.name, path
    leftovers = [p.name for p in (store / "tmp").glob("remote-*")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, Path]:
    """(a cache folder holding every target of the small project, the project that filled it)."""
    base = tmp_path_factory.mktemp("seed")
    folder = base / "cache"
    project = small_project(base / "project")
    run = navbuild(project, "all", "--remote-cache", folder.as_uri())
    assert run.code == 0, run.stderr
    assert set(run.statuses().values()) == {"built"}
    return folder, project


@pytest.fixture
def nginx(tmp_path):
    require_nginx()
    server = NginxCache(tmp_path / "nginx").start()
    yield server
    server.stop()


def _seed(nginx: NginxCache, seeded: tuple[Path, Path]) -> None:
    shutil.rmtree(nginx.folder)
    shutil.copytree(seeded[0], nginx.folder)


# -- the key test: two clones, one cache --------------------------------------------------------------
def test_two_clones_of_the_repository_share_every_artifact_through_nginx(tmp_path, nginx):
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout of navbuild")
    clones = []
    for name in ("first", "second"):
        subprocess.run(["git", "clone", "-q", str(REPO), str(tmp_path / name)], check=True)
        clones.append(tmp_path / name)
    # the repository's own navbuild.toml; checks are selected directly, so nothing is profiled
    words = ["cnn:onnx.check", "encoder:torchscript-trace.check"]
    first = navbuild(clones[0], *words, "--remote-cache", nginx.url)
    assert first.code == 0, first.stderr
    assert set(first.statuses().values()) == {"built"}, first.statuses()
    puts = [r for r in nginx.requests() if r.startswith("PUT")]
    assert any("/ac/" in r for r in puts) and any("/cas/" in r for r in puts)

    second = navbuild(clones[1], *words, "--remote-cache", nginx.url, quiet=False)
    assert second.code == 0, second.stderr
    assert set(second.statuses().values()) == {"cached"}, second.statuses()
    assert set(second.origins().values()) == {"remote"}, second.origins()  # restored, none built
    assert len(second.records) == len(first.records) == 8
    assert " remote " in second.stdout and "6 remote" in second.stdout  # the summary says so
    assert [r for r in nginx.requests() if r.startswith("PUT")] == puts  # the second uploaded nothing

    for name, record in first.records.items():
        assert second.records[name]["digest"] == record["digest"], name
        assert second.records[name]["key"] == record["key"], name
    assert tree_sha256(clones[0] / "navbuild-out") == tree_sha256(clones[1] / "navbuild-out")
    assert (clones[0] / "navbuild.lock").read_text() == (clones[1] / "navbuild.lock").read_text()
    assert_store_consistent(clones[1] / ".navbuild")


# -- what the cache sends is checked ----------------------------------------------------------------------
def test_a_tampered_object_on_the_server_is_refused_rebuilt_and_repaired(tmp_path, nginx, seeded):
    _seed(nginx, seeded)
    model = seeded[1] / "navbuild-out" / "cnn" / "onnx" / "model.onnx"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    tampered = nginx.folder / "cas" / sha
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))

    project = small_project(tmp_path / "project")
    run = navbuild(project, "all", "--remote-cache", nginx.url)
    assert run.code == 0, run.stderr
    assert run.statuses()["cnn:onnx"] == "built"
    others = {n: o for n, o in run.origins().items() if n != "cnn:onnx"}
    assert set(others.values()) == {"remote"}, run.origins()  # its check's key is unchanged: restored
    warnings = run.remote_warnings()
    assert len(warnings) == 1 and "cnn:onnx" in warnings[0] and "does not match its digest" in warnings[0]
    assert (project / "navbuild-out/cnn/onnx/model.onnx").read_bytes() == model.read_bytes()
    assert_store_consistent(project / ".navbuild")
    assert tampered.read_bytes() == model.read_bytes()  # the rebuild uploaded the good bytes again


# -- failures of the server -------------------------------------------------------------------------------
def test_a_server_killed_mid_build_degrades_to_a_local_build_with_one_warning(tmp_path, nginx):
    project = small_project(tmp_path / "project")
    process, report = navbuild(project, "cnn:reference", "--remote-cache", nginx.url, popen=True)
    killed_while_building = threading.Event()

    def kill_after_first_upload() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if nginx.entries():
                if process.poll() is None:
                    nginx.kill()
                    killed_while_building.set()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_after_first_upload)
    killer.start()
    run = finish(process, report)
    killer.join()
    assert killed_while_building.is_set()
    assert run.code == 0, run.stderr
    assert set(run.statuses().values()) == {"built"}, run.statuses()
    warnings = run.remote_warnings()
    assert len(warnings) == 1 and "unavailable" in warnings[0], run.stderr
    assert_store_consistent(project / ".navbuild")


def test_a_server_that_stalls_mid_transfer_times_out_once_and_the_build_goes_on(tmp_path, seeded):
    server = StallingCache(seeded[0]).start()
    try:
        project = small_project(tmp_path / "project", cache="[cache]\ntimeout = 1")
        started = time.monotonic()
        run = navbuild(project, "cnn:reference", "--remote-cache", server.url)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert run.code == 0, run.stderr
    assert set(run.statuses().values()) == {"built"}, run.statuses()
    warnings = run.remote_warnings()
    assert len(warnings) == 1 and "timed out" in warnings[0], run.stderr
    assert server.stalled == 1  # after the first stall the cache is off for the run
    assert elapsed < 300
    assert_store_consistent(project / ".navbuild")


# -- trust: tokens and read-only builds -------------------------------------------------------------------
def test_the_write_token_is_sent_to_the_server_and_never_written_down(tmp_path):
    require_nginx()
    token = f"tok-{uuid.uuid4().hex}"
    server = NginxCache(tmp_path / "nginx", token=token).start()
    try:
        without = small_project(tmp_path / "without")
        refused = navbuild(without, "cnn:reference", "--remote-cache", server.url)
        assert refused.code == 0, refused.stderr
        warnings = refused.remote_warnings()
        assert len(warnings) == 1 and "HTTP 401" in warnings[0] and "NAVBUILD_REMOTE_CACHE_TOKEN" in warnings[0]
        assert not server.entries()

        trusted = small_project(tmp_path / "trusted")
        accepted = navbuild(trusted, "cnn:reference", "--remote-cache", server.url, "-v",
                            env={"NAVBUILD_REMOTE_CACHE_TOKEN": token}, quiet=False)
        assert accepted.code == 0, accepted.stderr
        assert not accepted.remote_warnings()
        # samples and reference, each with the list of files its build discovered (under its declared key)
        kinds = sorted("key" if "key" in json.loads(path.read_bytes()) else "discovered" for path in server.entries())
        assert kinds == ["discovered", "discovered", "key", "key"]
    finally:
        server.stop()
    for run in (refused, accepted):
        assert token not in run.stdout + run.stderr
    for folder in (without, trusted, server.folder):
        for path in folder.rglob("*"):
            if path.is_file():
                assert token.encode() not in path.read_bytes(), path


def test_read_only_restores_but_never_uploads(tmp_path, nginx, seeded):
    _seed(nginx, seeded)
    lock = lockfile.read(seeded[1] / "navbuild.lock")
    (nginx.folder / "ac" / entry_name(lock["cnn:onnx.check"].key)).unlink()

    project = small_project(tmp_path / "project")
    run = navbuild(project, "all", "--remote-cache", nginx.url, "--remote-cache-read-only")
    assert run.code == 0, run.stderr
    assert run.statuses()["cnn:onnx.check"] == "built"
    assert {n: o for n, o in run.origins().items() if n != "cnn:onnx.check"} == \
        {n: "remote" for n in run.records if n != "cnn:onnx.check"}
    assert not [r for r in nginx.requests() if not r.startswith("GET")]  # not a PUT, not even a HEAD
    assert not (nginx.folder / "ac" / entry_name(lock["cnn:onnx.check"].key)).exists()


# -- device-bound targets ----------------------------------------------------------------------------------
def test_device_bound_targets_are_shared_only_between_machines_with_the_same_fingerprint(tmp_path):
    cache = f'[cache]\nremote = "{(tmp_path / "cache").as_uri()}"'  # through fsspec this time
    runs = {}
    for name, fingerprint in (("a", "fleet-a"), ("b", "fleet-b"), ("c", "fleet-a")):
        project = small_project(tmp_path / name, profile=TINY_PROFILE, cache=cache)
        runs[name] = navbuild(project, "cnn:onnx", env={"NAVBUILD_DEVICE_FINGERPRINT": fingerprint})
        assert runs[name].code == 0, runs[name].stderr
    profiles = {"cnn:onnx.profile"}
    assert profiles <= set(runs["a"].records)
    assert set(runs["a"].statuses().values()) == {"built"}
    for name, record in runs["b"].records.items():  # another GPU: the figures are measured again
        assert (record["status"], record.get("origin")) == (("built", None) if name in profiles else ("cached", "remote")), name
    assert set(runs["c"].origins().values()) == {"remote"}  # the same GPU: everything, figures too
    for name in profiles:
        assert runs["c"].records[name]["digest"] == runs["a"].records[name]["digest"]
        assert runs["b"].records[name]["key"] != runs["a"].records[name]["key"]
