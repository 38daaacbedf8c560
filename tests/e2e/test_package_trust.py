"""Imported artifacts are proven or marked, and graphs that reach the file system are refused before
they load (issue 21, items 1 and 2): what `build --from`, `navbuild.package.load`, the summary,
`status`, the lock, `verify` and `package` do with a package's artifacts, signed or not."""
from __future__ import annotations

import io
import json
import re
import tomllib
import warnings
import zipfile
from pathlib import Path

import pytest

import navbuild.package
from navbuild.cli import main
from navbuild.deploy.package import PackageError

from .conftest import Project, make_project
from .test_hostile_packages import build_from, other_checkout, pt2_with, repack, store_files

TARGETS = ("cnn:torchscript-trace", "cnn:onnx")


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> tuple[Project, Path]:
    """The example CNN with its TorchScript and ONNX targets built, and its package (every target)."""
    project = make_project(tmp_path_factory.mktemp("trust") / "source")
    project.config.write_text(project.config.read_text().split("[models.encoder]")[0])
    project.build(*TARGETS)
    package = project.root / "all.nav"
    assert main(["--config", str(project.config), "package", "--all-targets", "-o", str(package)]) == 0
    return project, package


def cli(project: Project, *words: str) -> int:
    return main(["--config", str(project.config), *words])


def lock_of(project: Project) -> dict:
    return tomllib.loads((project.root / "navbuild.lock").read_text())


# -- graphs that reach the file system ---------------------------------------------------------------
class FromFile:
    """The issue's wrapper: the package's own model, and a file outside the project overwritten per call."""

    @staticmethod
    def wrap(model_pt: bytes, victim: Path) -> bytes:
        import torch

        inner = torch.jit.load(io.BytesIO(model_pt))

        class Wrapper(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = inner

            def forward(self, image):
                shared = torch.from_file(str(victim), shared=True, size=4)
                shared.fill_(66.0)
                return self.inner(image) + shared.sum() * 0

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(Wrapper(), torch.randn(2, 3, 32, 32))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        return buffer.getvalue()


def test_a_torchscript_wrapper_that_writes_a_file_is_refused_before_it_runs(traced, tmp_path, capsys):
    source, package = traced
    victim = tmp_path / "outside" / "victim.bin"
    victim.parent.mkdir()
    victim.write_bytes(bytes(16))
    entry = "cnn/torchscript-trace/model.pt"
    evil = FromFile.wrap(zipfile.ZipFile(package).read(entry), victim)
    victim.write_bytes(bytes(16))  # tracing ran it once, here
    bad = repack(package, tmp_path / "evil.nav", {entry: evil})  # every digest in status.json updated
    other = other_checkout(source, tmp_path)
    assert cli(other, "build", "--from", str(bad)) == 2
    err = capsys.readouterr().err
    assert "cnn:torchscript-trace: model.pt:" in err and "operator aten::from_file, which reads or writes a file" in err
    assert "the package is refused" in err and "Traceback" not in err
    assert not list((other.root / ".navbuild" / "objects").rglob("*")) if (other.root / ".navbuild").exists() else True
    with pytest.raises(PackageError, match="aten::from_file"):
        navbuild.package.load(bad)
    assert victim.read_bytes() == bytes(16)  # neither the import nor package.load ran it


def test_a_program_that_evaluates_python_while_loading_is_refused(tmp_path, capsys):
    """torch.export.load hands every symbolic size to sympy.sympify, which evaluates it as Python."""
    from .test_hostile_packages import PT2

    project = make_project(tmp_path / "source")
    config = project.config.read_text().replace('formats = ["torchscript-trace", "onnx"]', 'formats = ["torch-export"]', 1)
    project.config.write_text(config.split("[models.encoder]")[0])
    project.build("cnn:torch-export")
    package = project.root / "pt2.nav"
    assert cli(project, "package", "--all-targets", "-o", str(package)) == 0
    marker = tmp_path / "pwned"

    def inject(entries):
        name = next(n for n in entries if n.endswith("models/model.json"))
        text = entries[name].decode()
        start = text.index("Symbol(")
        entries[name] = (text[:start] + f"__import__('os').system('touch {marker}') or " + text[start:]).encode()

    bad = repack(package, tmp_path / "bad.nav", {PT2: pt2_with(package, inject)})
    other = other_checkout(project, tmp_path)
    assert cli(other, "build", "--from", str(bad)) == 2
    assert "is not a plain sympy expression (torch.export.load evaluates it as Python)" in capsys.readouterr().err
    with pytest.raises(PackageError, match="sympy"):
        navbuild.package.load(bad)
    assert not marker.exists()


def test_onnx_that_reads_a_file_outside_is_refused(traced, tmp_path, capsys):
    import onnx

    source, package = traced
    entry = "cnn/onnx/model.onnx"
    model = onnx.load_from_string(zipfile.ZipFile(package).read(entry))
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weight.ClearField("raw_data")
    weight.data_location = onnx.TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../../../../etc/hostname")
    bad = repack(package, tmp_path / "bad.nav", {entry: model.SerializeToString()})
    other = other_checkout(source, tmp_path)
    assert cli(other, "build", "--from", str(bad)) == 2
    assert "keeps its data in '../../../../../../etc/hostname', which is not a file of the artifact" in \
        capsys.readouterr().err
    assert not store_files(other) or not list((other.root / ".navbuild" / "objects").rglob("*"))


# -- imported, until proven ----------------------------------------------------------------------------
def test_an_imported_artifact_is_marked_until_this_project_rebuilds_it(traced, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # tables unfolded
    source, package = traced
    other = other_checkout(source, tmp_path)
    records = build_from(other, package, *TARGETS, expect=0)
    for name in TARGETS:
        assert records[name]["status"] == "cached" and records[name]["origin"] == "imported", records[name]
        assert "from all.nav (package" in records[name]["reason"]
        entry = lock_of(other)[name]
        assert entry["imported"].startswith("all.nav (package ")
    capsys.readouterr()
    assert cli(other, *TARGETS) == 0  # a later build: imported, not this project's "cached"
    out = capsys.readouterr().out
    # the table's line says imported; one line per package says from where and how to prove them
    proven_by = re.search(r"imported: from all\.nav \(package \w+\); not proven: `navbuild verify ([^`]+)` "
                          r"rebuilds them here", " ".join(out.split()))
    assert proven_by and sorted(proven_by.group(1).split()) == sorted(TARGETS), out
    assert cli(other, "status", "cnn:onnx") == 0
    assert "imported" in capsys.readouterr().out
    assert cli(other, "package", "-o", str(tmp_path / "again.nav")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "(imported from all.nav): not proven, so not shipped" in err and "navbuild verify cnn:" in err
    assert not (tmp_path / "again.nav").exists()

    assert cli(other, "verify", *TARGETS) == 0  # rebuilt here: the same digests prove them
    out = " ".join(capsys.readouterr().out.split())
    assert "imported from all.nav" in out and "proven, this project builds the same digest" in out
    records = other.build(*TARGETS)
    assert all(records[name]["status"] == "cached" and records[name]["origin"] is None for name in TARGETS)
    assert all("imported" not in lock_of(other)[name] for name in TARGETS)
    assert cli(other, "package", "-o", str(tmp_path / "again.nav")) == 0


def test_verify_names_an_imported_artifact_that_differs_instead_of_blaming_its_rule(traced, tmp_path, capsys,
                                                                                     monkeypatch):
    import onnx

    monkeypatch.setenv("COLUMNS", "400")
    source, package = traced
    data = bytearray(zipfile.ZipFile(package).read("cnn/onnx/model.onnx"))
    weights = max(onnx.load_from_string(bytes(data)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data[data.find(weights) + 3] ^= 0x40  # still a valid model, with other weights
    bad = repack(package, tmp_path / "bad.nav", {"cnn/onnx/model.onnx": bytes(data)})
    other = other_checkout(source, tmp_path)
    records = build_from(other, bad, "cnn:onnx", expect=1)
    assert records["cnn:onnx.check"]["status"] == "failed"  # checked against this machine's reference
    capsys.readouterr()
    assert cli(other, "verify", "cnn:onnx") == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "imported, differs" in out and "imported from bad.nav" in out
    assert "not deterministic" not in out
    records = other.build("cnn:onnx")  # the store now holds this project's build
    assert records["cnn:onnx"]["status"] == "cached" and records["cnn:onnx"]["origin"] is None
    assert records["cnn:onnx.check"]["correctness"]["passed"]


# -- signed packages -----------------------------------------------------------------------------------
def signing_key(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from navbuild.deploy.signing import public_key_text

    key = ed25519.Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return public_key_text(key)


def trusting(project: Project, key: str) -> Project:
    project.config.write_text(project.config.read_text() + f'\n[trust]\nkeys = ["{key}"]\n')
    return project


def test_a_package_signed_by_a_trusted_key_is_proven(traced, tmp_path, capsys):
    source, _ = traced
    public = signing_key(tmp_path / "key.pem")
    signed = tmp_path / "signed.nav"
    assert cli(source, "package", "--all-targets", "-o", str(signed), "--sign", str(tmp_path / "key.pem")) == 0
    assert f'[trust] keys = ["{public}"]' in " ".join(capsys.readouterr().out.split())
    assert "signature.json" in zipfile.ZipFile(signed).namelist()
    assert cli(source, "package", "--all-targets", "-o", str(tmp_path / "twice.nav"), "--sign",
               str(tmp_path / "key.pem")) == 0
    assert (tmp_path / "twice.nav").read_bytes() == signed.read_bytes()  # Ed25519 is deterministic

    other = trusting(other_checkout(source, tmp_path), public)
    records = build_from(other, signed, *TARGETS, expect=0)
    assert records["cnn:onnx"]["origin"] == "imported" and "signed by ed25519:" in records["cnn:onnx"]["reason"]
    assert cli(other, "package", "-o", str(tmp_path / "again.nav")) == 0  # proven by the signature
    status = json.loads(zipfile.ZipFile(tmp_path / "again.nav").read("status.json"))
    origin = status["models"]["cnn"]["targets"]["onnx"]["origin"]
    assert origin["proven"] and origin["signer"] == public and origin["imported"] == "signed.nav"

    untrusted = other_checkout(source, tmp_path / "untrusted")  # signed, but by a key it does not list
    records = build_from(untrusted, signed, "cnn:onnx", expect=0)
    assert "signed by" not in records["cnn:onnx"]["reason"] and "not proven" in records["cnn:onnx"]["reason"]


@pytest.mark.parametrize("change", ["status.json", "signature", "entry"])
def test_a_signed_package_altered_after_signing_is_refused(traced, tmp_path, capsys, change):
    source, _ = traced
    public = signing_key(tmp_path / "key.pem")
    signed = tmp_path / "signed.nav"
    assert cli(source, "package", "--all-targets", "-o", str(signed), "--sign", str(tmp_path / "key.pem")) == 0
    with zipfile.ZipFile(signed) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    if change == "status.json":
        status = json.loads(entries["status.json"])
        status["models"]["cnn"]["targets"]["onnx"]["metadata"]["note"] = "changed"
        entries["status.json"] = json.dumps(status).encode()
        expected = "entry status.json is not what ed25519:"
    elif change == "signature":
        document = json.loads(entries["signature.json"])
        document["payload"]["sha256"]["cnn/onnx/model.onnx"] = "0" * 64
        entries["signature.json"] = json.dumps(document).encode()
        expected = "(a trusted key) does not verify"
    else:  # an entry swapped, its digests in status.json updated: status.json is then not the one signed
        entries = None
        expected = "entry status.json is not what ed25519:"
    bad = tmp_path / "bad.nav"
    if entries is None:
        repack(signed, bad, {"cnn/onnx/model.onnx": zipfile.ZipFile(signed).read("cnn/onnx/model.onnx") + b"\0"})
    else:
        from navbuild.ziputil import write_zip

        write_zip(bad, sorted(entries.items()))
    other = trusting(other_checkout(source, tmp_path), public)
    capsys.readouterr()
    assert cli(other, "build", "--from", str(bad)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert expected in err and "altered after it was signed" in err


@pytest.mark.slow
def test_a_signed_package_may_bring_code_that_loading_runs(tmp_path, capsys):
    """A torch-compile cache (device-bound, loads_code: as a TensorRT plan is) travels only signed by a
    trusted key: the same machine's fingerprint gives the same key, so the trusting checkout imports it."""
    from .tiny import make_tiny_project

    source = make_tiny_project(tmp_path / "source", precisions='["fp32"]')
    source.config.write_text(source.config.read_text().replace("budget_s = 0.2", "enabled = false").replace(
        'formats = ["torchscript-trace", "onnx"]', 'formats = ["torch-compile", "onnx"]'))
    source.build()
    public = signing_key(tmp_path / "key.pem")
    signed = tmp_path / "signed.nav"
    assert cli(source, "package", "--all-targets", "-o", str(signed), "--sign", str(tmp_path / "key.pem")) == 0

    def checkout(name: str) -> Project:
        other = make_tiny_project(tmp_path / name, precisions='["fp32"]')
        other.config.write_text(source.config.read_text())
        return other

    untrusting = checkout("untrusting")
    capsys.readouterr()
    assert cli(untrusting, "build", "--from", str(signed), "mlp:torch-compile", "-v") == 0
    assert "not imported: mlp:torch-compile: torch-compile outputs carry code that loading runs" in \
        " ".join(capsys.readouterr().out.split())
    trusting_ = trusting(checkout("trusting"), public)
    records = build_from(trusting_, signed, "mlp:torch-compile", expect=0)
    assert records["mlp:torch-compile"]["origin"] == "imported", records["mlp:torch-compile"]
    assert "signed by ed25519:" in records["mlp:torch-compile"]["reason"]
    assert records["mlp:torch-compile.check"]["correctness"]["passed"]
