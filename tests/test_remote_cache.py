"""The remote cache's protocol, checks and failure handling, on real stores and real fsspec/HTTP backends.

End-to-end builds against nginx are in tests/e2e/test_remote_cache.py.
"""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest

from navbuild.cli import main
from navbuild.engine.graph import ARTIFACT, Target
from navbuild.engine.remote import ENTRY_FORMAT, Refused, RemoteCache, entry_name, parse_entry
from navbuild.engine.remote_backends import RemoteUnavailable, _copy, authorization
from navbuild.engine.remote_settings import (RemoteSettings, RemoteSettingsError, display_url, from_table)
from navbuild.engine.store import Store
from navbuild.hashing import digest_bytes, tree_digest
from navbuild.rule import Rule
from tests.remote_util import free_port

KEY = "0123456789abcdef0123456789abcdef"


def _target(name: str = "m:thing") -> Target:
    return Target(name, ARTIFACT, model=None, rule=Rule(name="thing", version="1", build=lambda ctx: None))


def _built(store: Store, files: dict[str, bytes]) -> dict:
    """A manifest as a local build leaves it, with its objects in ``store``."""
    digests = {name: store.put_bytes(data) for name, data in files.items()}
    manifest = {"target": "m:thing", "rule": "thing", "rule_version": "1", "files": digests,
                "digest": tree_digest(digests), "log": store.put_bytes(b"log\n"), "seconds": 1.5,
                "metadata": {"exporter": "x"}, "status": "ok"}
    store.put_manifest(KEY, manifest)
    return manifest


class Warnings(list):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def memory_url() -> str:
    return f"memory://navbuild-test-{uuid.uuid4().hex}"


def _cache(url: str, **settings) -> tuple[RemoteCache, Warnings]:
    warnings = Warnings()
    return RemoteCache(RemoteSettings(url=url, **settings), warn=warnings), warnings


def _objects(store: Store) -> set[str]:
    return {p.parent.name + p.name for p in store.objects.glob("*/*")}


# -- the round trip ------------------------------------------------------------------------------
def test_publish_then_restore_into_another_store(tmp_path, memory_url):
    source, dest = Store(tmp_path / "a"), Store(tmp_path / "b")
    manifest = _built(source, {"model.bin": b"weights" * 1000, "sub/info.json": b"{}"})
    cache, warnings = _cache(memory_url)
    assert cache.publish(source, _target(), KEY, manifest)

    restored, warnings2 = _cache(memory_url)
    got = restored.restore(dest, _target(), KEY, {"material": 1})
    assert got is not None and not warnings and not warnings2
    assert got["files"] == manifest["files"] and got["digest"] == manifest["digest"]
    assert got["log"] == manifest["log"] and got["material"] == {"material": 1}
    assert dest.get_manifest(KEY)["remote"] is True
    for digest in (*manifest["files"].values(), manifest["log"]):
        assert dest.read_object(digest) == source.read_object(digest)
    assert not list(dest.tmp.iterdir())  # nothing left half-written


def test_layout_is_bazels_and_the_entry_holds_no_time_or_path(tmp_path, memory_url):
    import fsspec

    store = Store(tmp_path / "a")
    manifest = _built(store, {"model.bin": b"abc"})
    cache, _ = _cache(memory_url)
    cache.publish(store, _target(), KEY, manifest)
    fs, root = fsspec.core.url_to_fs(memory_url)
    entry = json.loads(fs.cat_file(f"{root}/ac/{entry_name(KEY)}"))
    assert len(entry_name(KEY)) == 64
    assert entry["format"] == ENTRY_FORMAT and entry["key"] == KEY
    assert fs.cat_file(f"{root}/cas/{hashlib.sha256(b'abc').hexdigest()}") == b"abc"
    text = json.dumps(entry)
    assert str(tmp_path) not in text and "created" not in entry


def test_a_miss_is_none_without_a_warning(tmp_path, memory_url):
    cache, warnings = _cache(memory_url)
    assert cache.restore(Store(tmp_path / "s"), _target(), KEY, {}) is None
    assert not warnings and cache.off is None


# -- what is refused -----------------------------------------------------------------------------
def _published(tmp_path: Path, url: str, files: dict[str, bytes]) -> tuple[dict, object, str]:
    import fsspec

    store = Store(tmp_path / "source")
    manifest = _built(store, files)
    cache, _ = _cache(url)
    cache.publish(store, _target(), KEY, manifest)
    fs, root = fsspec.core.url_to_fs(url)
    return manifest, fs, root


def test_a_tampered_object_is_refused_and_never_enters_the_store(tmp_path, memory_url):
    manifest, fs, root = _published(tmp_path, memory_url, {"model.bin": b"the real weights"})
    fs.pipe_file(f"{root}/cas/{hashlib.sha256(b'the real weights').hexdigest()}", b"the evil weights")
    dest = Store(tmp_path / "dest")
    cache, warnings = _cache(memory_url)
    assert cache.restore(dest, _target(), KEY, {}) is None
    assert len(warnings) == 1 and "model.bin" in warnings[0] and "does not match its digest" in warnings[0]
    assert digest_bytes(b"the evil weights") not in _objects(dest)
    assert manifest["files"]["model.bin"] not in _objects(dest)
    assert dest.get_manifest(KEY) is None and not list(dest.tmp.iterdir())
    assert cache.off is None  # a bad object is this target's problem, not the cache's


def test_an_entry_whose_digest_does_not_match_its_files_is_refused(tmp_path, memory_url):
    _, fs, root = _published(tmp_path, memory_url, {"model.bin": b"x"})
    path = f"{root}/ac/{entry_name(KEY)}"
    entry = json.loads(fs.cat_file(path))
    entry["digest"] = "f" * 32
    fs.pipe_file(path, json.dumps(entry).encode())
    dest = Store(tmp_path / "dest")
    cache, warnings = _cache(memory_url)
    assert cache.restore(dest, _target(), KEY, {}) is None
    assert "output digest" in warnings[0] and dest.get_manifest(KEY) is None


def test_an_entry_naming_a_file_outside_the_folder_is_refused_before_any_download(tmp_path, memory_url):
    _, fs, root = _published(tmp_path, memory_url, {"model.bin": b"x"})
    path = f"{root}/ac/{entry_name(KEY)}"
    entry = json.loads(fs.cat_file(path))
    entry["files"]["../../evil.sh"] = entry["files"].pop("model.bin")
    fs.pipe_file(path, json.dumps(entry).encode())
    dest = Store(tmp_path / "dest")
    cache, warnings = _cache(memory_url)
    assert cache.restore(dest, _target(), KEY, {}) is None
    assert "outside the target's folder" in warnings[0]
    assert not _objects(dest)


def test_a_missing_object_is_refused(tmp_path, memory_url):
    _, fs, root = _published(tmp_path, memory_url, {"model.bin": b"gone"})
    fs.rm(f"{root}/cas/{hashlib.sha256(b'gone').hexdigest()}")
    cache, warnings = _cache(memory_url)
    assert cache.restore(Store(tmp_path / "dest"), _target(), KEY, {}) is None
    assert "missing from the cache" in warnings[0]


def _entry(**changes) -> dict:
    obj = {"xxh3": "a" * 32, "sha256": "b" * 64, "size": 3}
    entry = {"format": ENTRY_FORMAT, "key": KEY, "target": "m:thing", "rule": "thing", "rule_version": "1",
             "status": "ok", "digest": "c" * 32, "files": {"model.bin": obj}, "log": obj, "seconds": 1.0,
             "metadata": {}}
    entry.update(changes)
    return entry


@pytest.mark.parametrize("change, problem", [
    ({"format": "navbuild-remote/0"}, "not a navbuild-remote/1 entry"),
    ({"key": "f" * 32}, "another action key"),
    ({"status": "failed"}, "successful build"),
    ({"rule": "other"}, "names rule"),
    ({"digest": "../x"}, "output digest"),
    ({"files": {}}, "no files"),
    ({"files": {"/etc/passwd": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": 1}}}, "outside"),
    ({"files": {"a/../../b": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": 1}}}, "outside"),
    ({"files": {"a\\b": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": 1}}}, "outside"),
    ({"files": {"a\nb": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": 1}}}, "outside"),
    ({"files": {"m": {"xxh3": "a" * 32, "sha256": "b" * 63, "size": 1}}}, "badly"),
    ({"files": {"m": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": -1}}}, "badly"),
    ({"files": {"m": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": True}}}, "badly"),
    ({"files": {"m": {"xxh3": "a" * 32, "sha256": "b" * 64, "size": 1, "path": "/x"}}}, "badly"),
    ({"seconds": -1}, "build time"),
    ({"metadata": []}, "metadata"),
])
def test_entry_shape_checks(change, problem):
    with pytest.raises(Refused, match=problem):
        parse_entry(json.dumps(_entry(**change)).encode(), KEY, "thing")


def test_entry_that_is_not_json_or_too_large():
    with pytest.raises(Refused, match="not JSON"):
        parse_entry(b"\x80\x81", KEY, "thing")
    with pytest.raises(Refused, match="larger than"):
        parse_entry(b" " * (4 << 20) + b"{}", KEY, "thing")
    assert parse_entry(json.dumps(_entry()).encode(), KEY, "thing")["key"] == KEY
    without_log = _entry()
    del without_log["log"]
    assert parse_entry(json.dumps(without_log).encode(), KEY, "thing")["log"] is None


# -- failures of the server --------------------------------------------------------------------------
def test_a_refused_connection_warns_once_and_turns_the_cache_off(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/cache"  # nothing listens there
    source = Store(tmp_path / "a")
    manifest = _built(source, {"model.bin": b"x"})
    cache, warnings = _cache(url, timeout_s=2)
    assert cache.restore(Store(tmp_path / "b"), _target(), KEY, {}) is None
    assert not cache.publish(source, _target(), KEY, manifest)
    assert cache.restore(Store(tmp_path / "b"), _target("m:other"), KEY, {}) is None
    assert len(warnings) == 1 and "unavailable" in warnings[0] and "127.0.0.1" in warnings[0]


def test_an_unknown_fsspec_protocol_degrades_like_a_network_failure(tmp_path):
    cache, warnings = _cache("nosuchprotocol://bucket/x")
    assert cache.restore(Store(tmp_path / "b"), _target(), KEY, {}) is None
    assert len(warnings) == 1 and "fsspec cannot open" in warnings[0]


def test_a_transfer_slower_than_the_floor_is_given_up():
    def trickle(size: int) -> bytes:
        time.sleep(0.05)
        return b"x"

    with pytest.raises(RemoteUnavailable, match="slower than"):
        _copy(trickle, lambda chunk: None, limit=1000, timeout_s=0.1)


def test_read_only_never_uploads(tmp_path, memory_url):
    import fsspec

    store = Store(tmp_path / "a")
    manifest = _built(store, {"model.bin": b"x"})
    cache, warnings = _cache(memory_url, read_only=True)
    assert not cache.publish(store, _target(), KEY, manifest)
    fs, root = fsspec.core.url_to_fs(memory_url)
    assert not fs.exists(root) or not fs.find(root)
    assert not warnings


# -- settings -------------------------------------------------------------------------------------------
def test_authorization_header():
    assert authorization("abc") == "Bearer abc"
    assert authorization("user:pass") == "Basic dXNlcjpwYXNz"
    assert authorization("Bearer xyz") == "Bearer xyz"


def test_display_url_hides_credentials():
    assert display_url("http://user:secret@host:8080/p?token=secret") == "http://host:8080/p"
    assert display_url("s3://key:secret@bucket/prefix") == "s3://bucket/prefix"


def test_settings_precedence_toml_then_environment_then_command_line():
    base = from_table({"remote": "http://toml:1/c", "timeout": 3})
    assert base.url == "http://toml:1/c" and base.timeout_s == 3.0 and not base.read_only
    env = {"NAVBUILD_REMOTE_CACHE": "file:///env", "NAVBUILD_REMOTE_CACHE_READ_ONLY": "1"}
    assert base.with_overrides(environ=env) == RemoteSettings("file:///env", True, base.token_env, 3.0)
    assert base.with_overrides("http://cli:2/c", environ=env).url == "http://cli:2/c"
    assert base.with_overrides("", environ={}).url is None  # --remote-cache "" turns it off


@pytest.mark.parametrize("table, where", [
    ({"remote": "not a url"}, "cache.remote"),
    ({"remote": "http:///nohost"}, "cache.remote"),
    ({"remote": "http://h/x?token=1"}, "cache.remote"),
    ({"remot": "http://h"}, "cache.remot"),
    ({"token_env": "Bearer abc"}, "cache.token_env"),
    ({"timeout": 0}, "cache.timeout"),
    ({"read_only": "yes"}, "cache.read_only"),
])
def test_bad_settings_name_their_key(table, where):
    with pytest.raises(RemoteSettingsError) as info:
        from_table(table)
    assert info.value.where == where


def test_config_and_command_line_errors_exit_2(tmp_path, capsys):
    config = tmp_path / "navbuild.toml"
    (tmp_path / "m.py").write_text("def build_model(): pass\ndef make_samples(): pass\n")
    config.write_text('[cache]\nremote = "nowhere"\n[models.m]\nframework = "torch"\nentry = "m.py:build_model"\n'
                      'samples = "m.py:make_samples"\n[models.m.targets]\nformats = ["onnx"]\n')
    assert main(["--config", str(config), "list"]) == 2
    assert "cache.remote" in capsys.readouterr().err
    config.write_text(config.read_text().replace('[cache]\nremote = "nowhere"\n', ""))
    assert main(["--config", str(config), "--remote-cache", "nowhere", "all"]) == 2
    assert "--remote-cache" in capsys.readouterr().err
