"""The .nav package: reproducible bytes, no machine paths, digests checked on the way back in."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from navbuild import tensors
from navbuild.hashing import digest_bytes, digest_file
from navbuild.deploy.package import (PackageError, figures_path, import_package, read_package, write_figures,
                                     write_package)
from navbuild.deploy.status import split_measured
from navbuild.deploy.triton_repo import write_model_repository
from navbuild.ziputil import write_zip
from tests.triton_util import ROOT, built_status, status  # noqa: F401  (fixtures)


def moved(status: dict, old: Path, new: Path) -> dict:
    """The same status after its output folder was copied to ``new`` (another checkout)."""
    shutil.copytree(old, new)
    return json.loads(json.dumps(status).replace(str(old), str(new)))


def out_dir(status: dict) -> Path:
    return Path(status["models"]["cnn"]["samples"]["path"]).parents[2]


def test_same_status_same_bytes_wherever_it_was_built(status, tmp_path):
    first = write_package(status, tmp_path / "a" / "cnn.nav")
    second = write_package(status, tmp_path / "b" / "cnn.nav")
    assert digest_file(first) == digest_file(second)
    elsewhere = moved(status, out_dir(status), tmp_path / "elsewhere" / "navbuild-out")
    elsewhere["root"] = str(tmp_path / "elsewhere")
    third = write_package(elsewhere, tmp_path / "c" / "cnn.nav")
    assert digest_file(first) == digest_file(third)


def test_no_absolute_path_in_any_entry(status, tmp_path):
    status["models"]["cnn"]["targets"]["trt-fp16"]["reason"] = (
        f'Traceback:\n  File "{ROOT}/navbuild_rules/tensorrt/build.py", line 3\n'
        f'  File "/usr/lib/python3/dist-packages/tensorrt/__init__.py", line 9')
    path = write_package(status, tmp_path / "cnn.nav")
    forbidden = [str(ROOT).encode(), str(tmp_path).encode(), str(out_dir(status)).encode(), b"/usr/lib"]
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            assert not info.filename.startswith("/") and ".." not in info.filename.split("/")
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            data = archive.read(info)
            for text in forbidden:
                assert text not in data, f"{info.filename} holds {text!r}"
    reason = read_package(path).status["models"]["cnn"]["targets"]["trt-fp16"]["reason"]
    assert 'File "navbuild_rules/tensorrt/build.py"' in reason and 'File ".../__init__.py"' in reason


def test_layout_base_formats_and_selected_targets(status, tmp_path):
    contents = read_package(write_package(status, tmp_path / "cnn.nav"))
    assert sorted(contents.names) == [
        "cnn/onnx/model.onnx", "cnn/reference.tensors", "cnn/samples.tensors",
        "cnn/torch-export/model.pt2", "cnn/torchscript-trace/model.pt", "status.json"]
    packed = contents.status
    assert packed["schema"] == "navbuild-status/2" and "root" not in packed and "machine" not in packed
    assert packed["package"] == {"format": "navbuild-package/1", "strategies": ["max-throughput"],
                                 "include_all": False}
    targets = packed["models"]["cnn"]["targets"]
    assert {name: t["packaged"] for name, t in targets.items()} == {
        "onnx": True, "torchscript-trace": True, "torch-export": True, "torch": False, "trt-fp16": False}
    assert targets["onnx"]["dir"] == "cnn/onnx" and "dir" not in targets["trt-fp16"]
    assert "profile" not in targets["onnx"]  # measured: beside the package (write_figures), not in it
    assert packed["models"]["cnn"]["samples"]["path"] == "cnn/samples.tensors"
    assert packed["models"]["cnn"]["selected"] == status["models"]["cnn"]["selected"]
    # JSON with sorted keys and fixed separators
    raw = contents.read("status.json").decode()
    assert raw == json.dumps(json.loads(raw), sort_keys=True, indent=2, separators=(",", ": ")) + "\n"


def test_selected_non_base_target_travels(status, tmp_path):
    model = status["models"]["cnn"]
    model["targets"]["onnx"]["format"] = "onnx-custom"  # no longer a base format
    model["selected"]["min-latency"] = "onnx"
    only_latency = read_package(write_package(status, tmp_path / "a.nav", strategies=("min-latency",)))
    assert "cnn/onnx/model.onnx" in only_latency.names
    none = read_package(write_package(status, tmp_path / "b.nav", strategies=()))
    assert "cnn/onnx/model.onnx" not in none.names
    everything = read_package(write_package(status, tmp_path / "c.nav", strategies=(), include_all=True))
    assert "cnn/onnx/model.onnx" in everything.names


def test_extract_gives_a_usable_status(status, tmp_path):
    contents = read_package(write_package(status, tmp_path / "cnn.nav"))
    extracted = contents.extract(tmp_path / "x")
    model = extracted["models"]["cnn"]
    samples = tensors.load(model["samples"]["path"])
    original = tensors.load(status["models"]["cnn"]["samples"]["path"])
    assert [s["image"].tolist() for s in samples] == [s["image"].tolist() for s in original]
    assert Path(model["targets"]["onnx"]["dir"]) == tmp_path / "x" / "cnn" / "onnx"
    folder = write_model_repository(extracted, "cnn", tmp_path / "repo")
    assert (folder / "1" / "model.onnx").read_bytes() == (tmp_path / "x" / "cnn" / "onnx" / "model.onnx").read_bytes()


def test_import_hands_every_file_to_the_store(status, tmp_path):
    path = write_package(status, tmp_path / "cnn.nav")
    stored: dict[str, bytes] = {}

    def put_stream(stream, expected: str, label: str) -> None:
        data = stream.read()
        assert digest_bytes(data) == expected, label
        stored[expected] = data

    imported = import_package(path, put_stream)
    targets = imported["models"]["cnn"]["targets"]
    expected = {d for t in targets.values() if t["packaged"] for d in t["files"].values()}
    expected |= {imported["models"]["cnn"][k]["digest"] for k in ("samples", "reference")}
    assert set(stored) == expected
    assert imported == read_package(path).status


def test_a_tampered_entry_is_named(status, tmp_path):
    path = write_package(status, tmp_path / "cnn.nav")
    with zipfile.ZipFile(path) as archive:
        entries = [(name, archive.read(name)) for name in archive.namelist()]
    entries = [(n, d[:-1] + bytes([d[-1] ^ 1]) if n == "cnn/onnx/model.onnx" else d) for n, d in entries]
    write_zip(tmp_path / "bad.nav", entries)
    with pytest.raises(PackageError, match="cnn/onnx/model.onnx \\(cnn:onnx\\) has digest .* status.json records"):
        read_package(tmp_path / "bad.nav").extract(tmp_path / "y")
    assert not (tmp_path / "y" / "cnn" / "onnx").exists() or not list((tmp_path / "y" / "cnn" / "onnx").iterdir())
    with pytest.raises(PackageError, match="cnn/onnx/model.onnx"):
        read_package(tmp_path / "bad.nav").extract(tmp_path / "x")


def test_bad_inputs_are_clear(status, tmp_path):
    status["models"]["cnn"]["targets"]["onnx"]["files"]["model.onnx"] = "0" * 32
    with pytest.raises(PackageError, match="cnn:onnx: .*model.onnx does not match its digest"):
        write_package(status, tmp_path / "a.nav")
    with pytest.raises(PackageError, match="not a navbuild build status"):
        write_package({"schema": "other"}, tmp_path / "b.nav")
    (tmp_path / "c.nav").write_bytes(b"not a zip")
    with pytest.raises(PackageError, match="not a zip file"):
        read_package(tmp_path / "c.nav")
    write_zip(tmp_path / "d.nav", [("status.json", b'{"schema": "navbuild-status/1", "models": {}}')])
    with pytest.raises(PackageError, match="package format None"):
        read_package(tmp_path / "d.nav")
    write_zip(tmp_path / "e.nav", [("../evil", b""), ("status.json", b"{}")])
    with pytest.raises(PackageError, match="'../evil' is not a relative path"):
        read_package(tmp_path / "e.nav")
    assert not (tmp_path / "a.nav").exists()


def test_measured_figures_never_change_the_bytes(status, tmp_path):
    first = write_package(status, tmp_path / "a.nav")
    noisier = json.loads(json.dumps(status))
    noisier["machine"]["cpu"] = "another cpu"
    for target in noisier["models"]["cnn"]["targets"].values():
        for point in (target.get("profile") or {}).get("points", []):
            point["throughput"] *= 1.5
        target["metadata"]["compile_seconds"] = 12.5  # a rule's timing
    noisier["models"]["cnn"]["selections"] = {"max-throughput": {"ranking": []}}
    second = write_package(noisier, tmp_path / "b.nav")
    assert digest_file(first) == digest_file(second)
    _, figures = split_measured(noisier)
    assert figures["machine"]["cpu"] == "another cpu"
    assert figures["models"]["cnn"]["targets"]["onnx"]["timings"] == {"compile_seconds": 12.5}
    assert figures["models"]["cnn"]["targets"]["onnx"]["profile"]["points"]
    path = write_figures(figures, figures_path(second))
    assert path == tmp_path / "b.profile.json" and json.loads(path.read_text()) == figures
