"""`navbuild build --from PKG` with packages altered as an attacker would (issue 10, item 1): bytes and
digests changed together, pickle payloads in model.pt2, paths and keys that point out of the store."""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest

from navbuild.cli import main
from navbuild.hashing import digest_bytes, tree_digest
from navbuild.ziputil import write_zip

from .conftest import Project, make_project, statuses


class Payload:
    """Unpickling it creates a file: proof that a package reached an unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Project, Path]:
    """The example project with a torch.export target, built, and its package (every target)."""
    project = make_project(tmp_path_factory.mktemp("hostile") / "source")
    config = project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]',
                                                'formats = ["torch-export", "onnx"]', 1)
    project.config.write_text(config.split("[models.encoder]")[0])
    project.build("cnn:torch-export", "cnn:onnx")
    package = project.root / "all.nav"
    assert main(["--config", str(project.config), "package", "--all-targets", "-o", str(package)]) == 0
    return project, package


def other_checkout(source: Project, tmp_path: Path) -> Project:
    other = make_project(tmp_path / "other")
    other.config.write_text(source.config.read_text())
    return other


def repack(package: Path, dest: Path, changes: dict[str, bytes], *, update_files: bool = True,
           update_digest: bool = True, edit=None) -> Path:
    """``package`` with some entries replaced; status.json's digests updated to match, as asked."""
    with zipfile.ZipFile(package) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    entries.update(changes)
    status = json.loads(entries["status.json"])
    for model_name, model in status["models"].items():
        for short, target in model["targets"].items():
            if not target.get("packaged"):
                continue
            for file_name in target["files"]:
                name = f"{target['dir']}/{file_name}"
                if name in changes and update_files:
                    target["files"][file_name] = digest_bytes(entries[name])
            if update_digest:
                target["digest"] = tree_digest(target["files"])
    if edit:
        edit(status)
    entries["status.json"] = json.dumps(status).encode()
    write_zip(dest, sorted(entries.items()))
    return dest


def store_files(project: Project) -> set[str]:
    store = project.root / ".navbuild"
    return {str(p.relative_to(store)) for p in store.rglob("*") if p.is_file() and "tmp" not in p.parts
            and "locks" not in p.parts} if store.exists() else set()


def build_from(project: Project, package: Path, *words: str, expect: int, marker: Path | None = None) -> dict:
    report = project.root / "from.json"
    report.unlink(missing_ok=True)
    code = main(["--config", str(project.config), "--json", str(report), "-q", "build", *words, "--from",
                 str(package)])
    assert marker is None or not marker.exists(), "the package's pickle was unpickled"
    assert code == expect
    return json.loads(report.read_text()) if report.exists() else {}


def test_an_honest_package_is_imported_and_targets_after_the_option_work(exported, tmp_path):
    source, package = exported
    other = other_checkout(source, tmp_path)
    report = tmp_path / "from.json"
    assert main(["--config", str(other.config), "--json", str(report), "build", "--from", str(package),
                 "cnn:onnx"]) == 0  # the target after --from PKG
    records = json.loads(report.read_text())
    assert statuses(records)["cnn:onnx"] == "cached"  # imported
    assert statuses(records)["cnn:samples"] == "built"  # computed here, never imported
    assert records["cnn:onnx.check"]["status"] == "built" and records["cnn:onnx.check"]["correctness"]["passed"]


def test_flipped_byte_with_only_its_file_digest_updated_is_refused(exported, tmp_path, capsys):
    source, package = exported
    data = bytearray(zipfile.ZipFile(package).read("cnn/onnx/model.onnx"))
    data[len(data) * 3 // 4] ^= 0x40
    bad = repack(package, tmp_path / "bad.nav", {"cnn/onnx/model.onnx": bytes(data)}, update_digest=False)
    other = other_checkout(source, tmp_path)
    assert main(["--config", str(other.config), "build", "--from", str(bad)]) == 2
    assert "cnn:onnx records digest" in capsys.readouterr().err
    assert not store_files(other) or not list((other.root / ".navbuild" / "objects").rglob("*"))


def test_flipped_byte_with_every_digest_updated_is_caught_by_the_local_check(exported, tmp_path):
    source, package = exported
    import onnx

    data = bytearray(zipfile.ZipFile(package).read("cnn/onnx/model.onnx"))
    weights = max(onnx.load_from_string(bytes(data)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    start = data.find(weights)
    data[start + 3] ^= 0x40  # one float of the largest weight, scaled by 2**128 or so: still a valid model
    bad = repack(package, tmp_path / "bad.nav", {"cnn/onnx/model.onnx": bytes(data)})
    other = other_checkout(source, tmp_path)
    records = build_from(other, bad, "cnn:onnx", expect=1)
    assert records["cnn:onnx"]["digest"] == tree_digest({"model.onnx": digest_bytes(bytes(data))})
    assert records["cnn:onnx.check"]["status"] == "failed"  # against this machine's own reference outputs
    assert main(["--config", str(other.config), "triton", "--model", "cnn", "--target", "onnx",
                 "--repo", str(tmp_path / "repo")]) == 1  # never deployed


def pt2_with(package: Path, change) -> bytes:
    """The package's model.pt2 (a zip itself) with ``change(entries)`` applied to its entries."""
    import io

    with zipfile.ZipFile(package) as outer, zipfile.ZipFile(io.BytesIO(outer.read(PT2))) as inner:
        entries = {info.filename: inner.read(info) for info in inner.infolist()}
    change(entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


PT2 = "cnn/torch-export/model.pt2"


def test_pickle_payload_in_the_example_inputs_never_runs(exported, tmp_path):
    source, package = exported
    marker = tmp_path / "payload-ran"

    def plant(entries):
        name = next(n for n in entries if "/data/sample_inputs/" in n)
        entries[name] = pickle.dumps(Payload(marker))

    bad = repack(package, tmp_path / "bad.nav", {PT2: pt2_with(package, plant)})
    other = other_checkout(source, tmp_path)
    records = build_from(other, bad, "cnn:torch-export", expect=0, marker=marker)
    assert records["cnn:torch-export"]["status"] == "cached"  # imported: the program itself is intact
    assert records["cnn:torch-export.check"]["correctness"]["passed"]


def test_pickled_weights_are_refused_and_never_run(exported, tmp_path):
    source, package = exported
    marker = tmp_path / "payload-ran"

    def plant(entries):
        config_name = next(n for n in entries if n.endswith("_weights_config.json"))
        config = json.loads(entries[config_name])
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        entries[config_name] = json.dumps(config).encode()
        entries[config_name.rsplit("/", 1)[0] + "/" + first["path_name"]] = pickle.dumps(Payload(marker))

    bad = repack(package, tmp_path / "bad.nav", {PT2: pt2_with(package, plant)})
    other = other_checkout(source, tmp_path)
    records = build_from(other, bad, "cnn:torch-export", expect=1, marker=marker)
    check = records["cnn:torch-export.check"]
    assert check["status"] == "failed" and "pickled payloads are refused" in check["reason"]


@pytest.mark.parametrize("case", ["absolute file name", "key outside the store", "symlink"])
def test_paths_out_of_the_store_are_refused_before_anything_is_written(exported, tmp_path, case, capsys):
    source, package = exported
    outside = tmp_path / "outside.pth"

    def edit(status):
        target = status["models"]["cnn"]["targets"]["onnx"]
        if case == "absolute file name":
            target["files"][str(outside)] = target["files"]["model.onnx"]
        elif case == "key outside the store":
            target["key"] = "../../../../" + str(outside)

    changes = {f"cnn/onnx/{outside}": b"import os"} if case == "absolute file name" else {}
    bad = repack(package, tmp_path / "bad.nav", changes, edit=edit)
    if case == "symlink":
        with zipfile.ZipFile(bad, "a") as archive:
            link = zipfile.ZipInfo("cnn/onnx/link")
            link.create_system, link.external_attr = 3, (0o120777 << 16)
            archive.writestr(link, str(outside))
    other = other_checkout(source, tmp_path)
    assert main(["--config", str(other.config), "build", "--from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "navbuild: error:" in err and "Traceback" not in err
    assert not outside.exists()
    assert not (other.root / ".navbuild" / "objects").exists() or not list((other.root / ".navbuild" / "objects").rglob("*"))


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"package": {"format": "navbuild-package/1"}, "models": []}',
                                 b'{"package": {"format": "navbuild-package/1"}, "models": {"cnn": {"targets": 1}}}',
                                 b'{"package": {"format": "navbuild-package/1"}, "models": {"cnn": {"targets": '
                                 b'{"onnx": {"packaged": true, "files": {"model.onnx": 1}}}}}}', b"\xff\xfe"])
def test_malformed_status_json_is_a_clear_refusal(exported, tmp_path, raw, capsys):
    source, package = exported
    bad = tmp_path / "bad.nav"
    write_zip(bad, [("status.json", raw)])
    other = other_checkout(source, tmp_path)
    assert main(["--config", str(other.config), "build", "--from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "navbuild: error:" in err and str(bad) in err and "Traceback" not in err
