"""Hostile .nav packages: each one is refused by read_package with a message naming what is wrong,
before a single entry is extracted or stored (issue 10, item 1)."""
from __future__ import annotations

import json
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from navbuild.deploy.package import PACKAGE_FORMAT, Limits, PackageError, read_package
from navbuild.hashing import digest_bytes, tree_digest
from navbuild.ziputil import write_zip

ONNX = b"\x08\x07" + bytes(range(256)) * 8  # any bytes: only names, sizes and digests are looked at


def status(contents: dict[str, bytes] | None = None, **target_fields) -> dict:
    contents = {"model.onnx": ONNX} if contents is None else contents
    digests = {name: digest_bytes(data) for name, data in contents.items()}
    target = {"format": "onnx", "precision": "fp32", "status": "built", "packaged": True, "dir": "cnn/onnx",
              "files": digests, "digest": tree_digest(digests), "key": "0" * 32, "metadata": {}}
    target.update(target_fields)
    return {"schema": "navbuild-status/1", "package": {"format": PACKAGE_FORMAT},
            "models": {"cnn": {"samples": None, "reference": None, "targets": {"onnx": target}}}}


def _with_model(**fields) -> dict:
    doc = status()
    doc["models"]["cnn"].update(fields)
    return doc


def write(path: Path, entries: list[tuple[str, bytes]], doc: dict | bytes) -> Path:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    write_zip(path, [*entries, ("status.json", raw)], sort=False)
    return path


def good(tmp_path: Path) -> Path:
    return write(tmp_path / "good.nav", [("cnn/onnx/model.onnx", ONNX)], status())


def test_a_well_formed_package_is_read(tmp_path):
    contents = read_package(good(tmp_path))
    assert contents.names == ["cnn/onnx/model.onnx", "status.json"]
    extracted = contents.extract(tmp_path / "x")
    assert (tmp_path / "x" / "cnn" / "onnx" / "model.onnx").read_bytes() == ONNX
    assert extracted["models"]["cnn"]["targets"]["onnx"]["dir"] == str(tmp_path / "x" / "cnn" / "onnx")


def _symlink(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("cnn/onnx/model.onnx")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("status.json", json.dumps(status({"model.onnx": b"/etc/passwd"})))
    return path


def _bomb(path: Path) -> Path:
    """200 MB of zeros deflated into about 200 kB: a ratio of about 1000."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("cnn/onnx/model.onnx", "w") as entry:
            for _ in range(200):
                entry.write(bytes(1 << 20))
        archive.writestr("status.json", json.dumps(status()))
    return path


def _claims(path: Path, entry: str, size: int) -> Path:
    """A stored entry whose directory record claims ``size`` bytes (1 GiB status.json)."""
    data = bytearray(path.read_bytes())
    name = entry.encode()
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(name))  # central header of that entry
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))
    return path


def _nul(path: Path) -> Path:
    """A name with a NUL byte (zipfile cuts it there when reading: model.onnx twice)."""
    path.write_bytes(path.read_bytes().replace(b"model.onnx~.txt", b"model.onnx\0.txt"))
    return path


def _duplicate(path: Path) -> Path:
    with pytest.warns(UserWarning), zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cnn/onnx/model.onnx", ONNX)
        archive.writestr("cnn/onnx/model.onnx", b"other bytes")
        archive.writestr("status.json", json.dumps(status()))
    return path


HOSTILE = {
    # entry names and kinds
    "absolute entry name": (lambda p: write(p, [("/tmp/navbuild-x", ONNX)], status()), "is not a relative path"),
    "parent entry name": (lambda p: write(p, [("cnn/../../x", ONNX)], status()), "is not a relative path"),
    "backslash entry name": (lambda p: write(p, [("cnn\\..\\x", ONNX)], status()), "is not a relative path"),
    "empty component": (lambda p: write(p, [("cnn/onnx//tmp/x", ONNX)], status({"/tmp/x": ONNX})),
                        "is not a relative path"),
    "NUL in a name": (lambda p: _nul(write(p, [("cnn/onnx/model.onnx", ONNX), ("cnn/onnx/model.onnx~.txt", b"")],
                                           status())), "is not a relative path"),
    "symlink entry": (_symlink, "is a symbolic link"),
    "duplicate entry": (_duplicate, "appears twice"),
    "folder entry": (lambda p: write(p, [("cnn/onnx/", b""), ("cnn/onnx/model.onnx", ONNX)], status()),
                     "'cnn/onnx/' is not a relative path"),
    "unlisted entry": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX), ("cnn/evil.pth", b"import os")],
                                       status()), "does not describe: cnn/evil.pth"),
    "listed entry missing": (lambda p: write(p, [], status()), "missing from the zip: cnn/onnx/model.onnx"),
    # names inside status.json
    "absolute file name": (lambda p: write(p, [("cnn/onnx//tmp/x", ONNX)], status({"/tmp/x": ONNX})),
                           "is not a relative path"),
    "file name with ..": (lambda p: write(p, [("cnn/x", ONNX)], status({"../x": ONNX})), "is not a relative path"),
    "dir escaping": (lambda p: write(p, [("x", ONNX)], status(dir="cnn/../..")), "is not a relative path"),
    "model name with /": (lambda p: write(p, [], {**status(), "models": {"../cnn": {}}}), "is not a model name"),
    "target name with ..": (lambda p: write(p, [], {**status(), "models": {"cnn": {"targets": {"..": {}}}}}),
                            "is not a plain file or folder name"),
    "key with ../": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)], status(key="../../../../tmp/x")),
                     "key is not a digest"),
    "digest 12345": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)], status(digest="12345")),
                     "digest is not a digest"),
    "file digest upper case": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)],
                                               status(files={"model.onnx": "A" * 32})), "is not a digest"),
    # sizes
    "zip bomb": (_bomb, "over the compression ratio limit"),
    "1 GiB claimed status.json": (lambda p: _claims(good(p.parent), "status.json", 1 << 30),
                                  "status.json holds 1073741824 bytes, over the limit"),
    # malformed status.json
    "not JSON": (lambda p: write(p, [], b"{not json"), "status.json is not valid JSON"),
    "not UTF-8": (lambda p: write(p, [], b'{"a": "\xff"}'), "status.json is not UTF-8"),
    "deeply nested": (lambda p: write(p, [], b"[" * 100_000 + b"]" * 100_000), "status.json is not valid JSON"),
    "a JSON list": (lambda p: write(p, [], b"[]"), "package format None"),
    "no package field": (lambda p: write(p, [], {"models": {}}), "package format None"),
    "models is a list": (lambda p: write(p, [], {**status(), "models": []}), "models is not an object"),
    "model is a string": (lambda p: write(p, [], {**status(), "models": {"cnn": "x"}}), "is not an object"),
    "targets is a list": (lambda p: write(p, [], {**status(), "models": {"cnn": {"targets": [1]}}}),
                          "targets is not an object"),
    "files is a list": (lambda p: write(p, [], status(files=["model.onnx"])), "files is not an object"),
    "packaged is a string": (lambda p: write(p, [], status(packaged="yes")), "packaged is not true or false"),
    "samples is a number": (lambda p: write(p, [], {**status(), "models": {"cnn": {"samples": 3}}}),
                            "samples is not an object"),
    "metadata is a list": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)], status(metadata=[])),
                           "metadata is not an object"),
    # numbers a runner or Triton is given (issue 21): NaN is not JSON, sizes are bounded integers
    "NaN max_batch_size": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)], json.dumps(
        _with_model(max_batch_size=float("nan"))).encode()), "NaN is not a JSON number"),
    "max_batch_size 1e30": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)], _with_model(max_batch_size=10**30)),
                            "max_batch_size is not an integer from 0 to 2147483647"),
    "shape of text": (lambda p: write(p, [("cnn/onnx/model.onnx", ONNX)], _with_model(
        inputs=[{"name": "x", "dtype": "float32", "shape": [-1, "3"]}])), "shape is not an integer from -1"),
    "no status.json": (lambda p: (write_zip(p, [("cnn/onnx/model.onnx", ONNX)]), p)[1], "no status.json"),
    "not a zip": (lambda p: (p.write_bytes(b"PK\x03\x04 not really"), p)[1], "not a zip file"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_package_is_refused_before_anything_is_written(case, tmp_path):
    make, message = HOSTILE[case]
    path = make(tmp_path / "hostile.nav")
    with pytest.raises(PackageError, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        read_package(path)
    assert str(path) in str(caught.value)
    assert not Path("/tmp/navbuild-x").exists() and not (tmp_path / "x").exists()


def test_limits_refuse_sizes_and_can_be_raised(tmp_path):
    path = good(tmp_path)
    with pytest.raises(PackageError, match="holds 2050 bytes, over the limit of 1000"):
        read_package(path, Limits(entry=1000))
    with pytest.raises(PackageError, match="over the limit"):
        read_package(path, Limits(total=2000))
    with pytest.raises(PackageError, match="status.json holds .* over the limit of 100"):
        read_package(path, Limits(status=100))
    with pytest.raises(PackageError, match="2 entries, over the limit of 1"):
        read_package(path, Limits(entries=1))
    assert Limits.parse(["entry=1K", "ratio=5"]) == Limits(entry=1024, ratio=5)
    with pytest.raises(PackageError, match="NAME one of entries, entry, ratio, status, total"):
        Limits.parse(["size=1G"])
    with pytest.raises(PackageError, match="is not a size"):
        Limits.parse(["entry=lots"])
    bomb = _bomb(tmp_path / "bomb.nav")
    assert read_package(bomb, Limits(ratio=10_000)).names  # the ratio limit is what refused it


def test_extract_refuses_bytes_that_do_not_match_their_digest(tmp_path):
    doc = status()
    path = write(tmp_path / "flipped.nav", [("cnn/onnx/model.onnx", ONNX[:-1] + b"\0")], doc)
    with pytest.raises(PackageError, match="has digest .* but status.json records"):
        read_package(path).extract(tmp_path / "out")
    assert not (tmp_path / "out" / "cnn" / "onnx" / "model.onnx").exists()
    assert not [p for p in (tmp_path / "out" / "cnn" / "onnx").iterdir()]  # no temporary file left
