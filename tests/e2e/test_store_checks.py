"""The store checks itself (issue 10, item 3): malformed manifests, flipped bytes that keep their
mtime, fsck and its repairs, temp files of killed builds, gc during a build, gc --max-size."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import pytest

from navbuild.cli import main
from navbuild.hashing import digest_file

from .conftest import Project, make_project, statuses


def store(project: Project) -> Path:
    return project.root / ".navbuild"


def manifest_of(project: Project, target: str) -> Path:
    record = msgpack.unpackb((store(project) / "targets" / target.replace(":", "--")).read_bytes())
    return store(project) / "actions" / record["key"][:2] / record["key"][2:]


def rewrite_manifest(path: Path, **changes) -> None:
    manifest = msgpack.unpackb(path.read_bytes())
    manifest.update(changes)
    path.write_bytes(msgpack.packb(manifest))


def flip(path: Path) -> None:
    """One byte changed in place, with its old mtime put back."""
    before = path.stat()
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def cli(project: Project, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), *words],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("changes", [{"files": ["model.onnx"]}, {"files": {"model.onnx": 3}},
                                     {"digest": "12345"}, {"files": {"/tmp/x": "0" * 32}}])
def test_a_malformed_manifest_is_absent_and_reported_never_a_crash(project, changes):
    path = manifest_of(project, "cnn:onnx")
    rewrite_manifest(path, **changes)
    for words in (["status"], ["gc"], ["cnn:onnx", "--force"]):
        result = cli(project, *words)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (words, result.stderr)
    rewrite_manifest(path, **changes)  # --force wrote a good one: spoil it again for `all`
    result = cli(project, "--json", str(project.root / "r.json"))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "is malformed" in result.stderr
    records = json.loads((project.root / "r.json").read_text())
    assert records["cnn:onnx"]["status"] == "built"  # rebuilt, not served
    assert records["cnn:onnx"]["digest"] != "12345"


def test_a_flipped_output_with_its_mtime_kept_is_restored(project):
    model = project.out("cnn:onnx") / "model.onnx"
    original = model.read_bytes()
    project.build()  # the stat cache now trusts the copy
    flip(model)
    records = statuses(project.build())
    assert records["cnn:onnx"] == "cached"
    assert model.read_bytes() == original


def test_a_flipped_store_object_with_its_mtime_kept_is_rebuilt(project):
    model = project.out("cnn:onnx") / "model.onnx"
    digest = digest_file(model)
    project.build()
    flip(store(project) / "objects" / digest[:2] / digest[2:])
    records = statuses(project.build())
    assert records["cnn:onnx"] == "built"
    assert digest_file(store(project) / "objects" / digest[:2] / digest[2:]) == digest


def test_fsck_lists_damage_and_repair_removes_it(project):
    onnx = digest_file(project.out("cnn:onnx") / "model.onnx")
    flip(store(project) / "objects" / onnx[:2] / onnx[2:])
    rewrite_manifest(manifest_of(project, "encoder:onnx"), files=[1])
    (store(project) / "targets" / "cnn--samples").write_bytes(b"\x93garbage")
    orphan = store(project) / "objects" / "ff" / ("f" * 30)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"no manifest reaches me")  # also corrupt: its name is not its digest
    result = cli(project, "fsck")
    assert result.returncode == 1, result.stdout
    for text in (f"object {onnx} is corrupt", "encoder:onnx", "files is list", "record cnn--samples",
                 f"object {'f' * 32} is corrupt"):
        assert text in result.stdout, (text, result.stdout)
    assert cli(project, "fsck", "--repair").returncode == 0
    assert "the store is sound" in cli(project, "fsck").stdout
    records = statuses(project.build())
    assert records["cnn:onnx"] == "built" and records["encoder:onnx"] == "built"
    assert "the store is sound" in cli(project, "fsck").stdout


def test_package_and_triton_rehash_what_they_ship(project, tmp_path):
    """A flip the stat cache cannot see (as bit rot would be) is never shipped."""
    model = project.out("cnn:onnx") / "model.onnx"
    digest = digest_file(model)
    flip(model)
    cache_path = store(project) / "filehash.msgpack"
    cache = msgpack.unpackb(cache_path.read_bytes())
    stat = model.stat()
    cache[str(model)] = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, digest]
    cache_path.write_bytes(msgpack.packb(cache))  # the stat cache now vouches for the flipped bytes
    result = cli(project, "package", "-o", str(tmp_path / "x.nav"))
    assert result.returncode != 0 and "does not match its digest" in result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "x.nav").exists()
    result = cli(project, "triton", "--model", "cnn", "--target", "onnx", "--repo", str(tmp_path / "repo"))
    assert result.returncode != 0 and "does not match its digest" in " ".join((result.stdout + result.stderr).split())
    assert not (tmp_path / "repo" / "cnn").exists()


SLOW_SAMPLES = '''
import importlib.util
import pathlib
import time


def make_samples_slowly():
    time.sleep({seconds})
    spec = importlib.util.spec_from_file_location("vision_model", pathlib.Path(__file__).with_name("model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_samples()
'''


def slow_project(root: Path, seconds: float) -> Project:
    project = make_project(root)
    (project.root / "vision" / "slow.py").write_text(SLOW_SAMPLES.format(seconds=seconds))
    text = project.config.read_text().replace('samples = "vision/model.py:make_samples"',
                                              'samples = "vision/slow.py:make_samples_slowly"')
    project.config.write_text(text)
    return project


def wait_for(condition, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_gc_during_a_build_waits_for_it(tmp_path):
    project = slow_project(tmp_path / "project", seconds=6)
    build = subprocess.Popen([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), "-q",
                              "cnn:onnx", "--json", str(tmp_path / "build.json")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (store(project) / "locks" / "store").exists() and list((store(project) / "tmp").iterdir()))
    gc = cli(project, "gc")
    output = build.communicate(timeout=600)[0]
    assert build.returncode == 0, output
    assert gc.returncode == 0 and "waiting for running builds" in gc.stdout, gc.stdout + gc.stderr
    records = json.loads((tmp_path / "build.json").read_text())
    assert all(r["status"] == "built" for r in records.values()), records
    assert "the store is sound" in cli(project, "fsck").stdout
    assert set(statuses(project.build("cnn:onnx")).values()) == {"cached"}


def test_a_killed_build_leaves_temp_files_that_the_next_build_removes(tmp_path):
    project = slow_project(tmp_path / "project", seconds=30)
    build = subprocess.Popen([sys.executable, "-m", "navbuild.cli", "--config", str(project.config), "-q",
                              "cnn:samples"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = store(project) / "tmp"
    wait_for(lambda: tmp.exists() and len(list(tmp.iterdir())) >= 2)  # the build's and its worker's
    time.sleep(1.0)  # the worker is in the samples function, its scratch folder written
    build.send_signal(signal.SIGKILL)
    build.wait()
    wait_for(lambda: not any(_alive(p.name.split("-")[0]) for p in tmp.iterdir()), timeout=30)  # worker saw it
    left = list(tmp.iterdir())
    assert left and any(list(p.rglob("*")) for p in left)  # scratch folders and temp files were left
    text = project.config.read_text().replace('"vision/slow.py:make_samples_slowly"',
                                              '"vision/model.py:make_samples"')
    project.config.write_text(text)
    assert cli(project, "cnn:samples").returncode == 0
    assert list(tmp.iterdir()) == []
    assert list((store(project) / "locks" / "owners").iterdir()) == []


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def test_gc_max_size_drops_least_recently_used_builds_and_keeps_current_ones(project):
    weights = project.root / "vision" / "weights.pt"
    original = weights.read_bytes()
    import torch

    state = torch.load(weights, weights_only=True)
    state["head.bias"] += 1.0
    torch.save(state, weights)
    project.build("cnn")  # a second generation of cnn's builds
    weights.write_bytes(original)
    for manifest in (store(project) / "actions").glob("*/*"):  # every build last used long ago...
        os.utime(manifest, (1, 1))
    assert set(statuses(project.build()).values()) == {"cached"}  # ...except the current ones now
    objects = store(project) / "objects"
    before = sum(p.stat().st_size for p in objects.glob("*/*"))
    assert main(["--config", str(project.config), "gc", "--max-size", "1K"]) == 0
    after = sum(p.stat().st_size for p in objects.glob("*/*"))
    assert after < before
    assert set(statuses(project.build()).values()) == {"cached"}  # nothing a current target needs went
    assert main(["--config", str(project.config), "gc", "--max-size", "lots"]) == 2


def swap_onnx_for_torchscript(project: Project, update_digest: bool) -> Path:
    """cnn:onnx's manifest pointed at cnn:torchscript-trace's object, an intact object of the store."""
    from navbuild.hashing import tree_digest

    torchscript = msgpack.unpackb(manifest_of(project, "cnn:torchscript-trace").read_bytes())
    path = manifest_of(project, "cnn:onnx")
    files = {"model.onnx": torchscript["files"]["model.pt"]}
    rewrite_manifest(path, files=files, **({"digest": tree_digest(files)} if update_digest else {}))
    return path


def test_a_manifest_swap_is_damage_for_fsck_and_never_served(project, tmp_path):
    """issue 21, item 3: a manifest naming another valid object, its digest left unchanged."""
    swap_onnx_for_torchscript(project, update_digest=False)
    result = cli(project, "fsck")
    assert result.returncode == 1, result.stdout
    assert "(cnn:onnx): not bound to its files: its files give digest" in " ".join(result.stdout.split())
    result = cli(project, "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not bound to its files" in result.stderr
    records = json.loads((tmp_path / "r.json").read_text())
    assert records["cnn:onnx"]["status"] == "built"  # rebuilt, not served
    assert project.out("cnn:onnx").joinpath("model.onnx").read_bytes()[:2] != b"PK"  # ONNX, not a TorchScript zip
    import zipfile

    shipped = zipfile.ZipFile(project.root / "navbuild-out" / "e2e.nav").read("cnn/onnx/model.onnx")
    assert shipped == project.out("cnn:onnx").joinpath("model.onnx").read_bytes()
    result = cli(project, "fsck")  # the rebuild replaced the manifest: no damage (its old log is garbage)
    assert result.returncode == 0 and "damage found" not in result.stdout, result.stdout


def test_a_consistent_swap_is_caught_by_the_lock(project, tmp_path):
    """Files and digest rewritten together: the manifest is self-consistent, navbuild.lock is not fooled."""
    swap_onnx_for_torchscript(project, update_digest=True)
    result = cli(project, "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not the one navbuild.lock records under its key" in result.stderr
    records = json.loads((tmp_path / "r.json").read_text())
    assert records["cnn:onnx"]["status"] == "built"
    assert project.out("cnn:onnx").joinpath("model.onnx").read_bytes()[:2] != b"PK"
