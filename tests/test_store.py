"""The store on its own: atomic objects, corruption detection, manifests, gc."""
from __future__ import annotations

import os

from navbuild.engine import maintenance
from navbuild.engine.store import Store
from navbuild.hashing import digest_bytes, digest_value


def test_put_and_read_object(tmp_path):
    store = Store(tmp_path / "s")
    digest = store.put_bytes(b"hello")
    assert digest == digest_bytes(b"hello")
    assert store.read_object(digest) == b"hello"
    assert store.has_object(digest)


def test_flipped_bytes_are_detected_and_the_object_dropped(tmp_path):
    store = Store(tmp_path / "s")
    source = tmp_path / "f.bin"
    source.write_bytes(os.urandom(4096))
    digest = store.put_file(source)
    path = store.object_path(digest)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # even with an old mtime the size/mtime signature changed
    assert not store.has_object(digest)
    assert not path.exists()


def test_manifests_round_trip_and_gc_keeps_reachable(tmp_path):
    store = Store(tmp_path / "s")
    kept = store.put_bytes(b"kept")
    dropped = store.put_bytes(b"dropped")
    key = digest_value({"x": 1})
    store.put_manifest(key, {"files": {"a": kept}, "digest": kept, "status": "ok"})
    assert store.get_manifest(key)["files"] == {"a": kept}
    with store.exclusive():
        counts = maintenance.gc(store)
    assert counts["objects_removed"] == 1
    assert store.has_object(kept) and not store.has_object(dropped)


def test_truncated_manifest_is_treated_as_missing(tmp_path):
    store = Store(tmp_path / "s")
    key = digest_value("k")
    store.manifest_path(key).parent.mkdir(parents=True, exist_ok=True)
    store.manifest_path(key).write_bytes(b"\x85\xa1")
    assert store.get_manifest(key) is None


def test_canonical_key_ignores_dict_order():
    assert digest_value({"a": 1, "b": [1, 2]}) == digest_value({"b": [1, 2], "a": 1})
    assert digest_value({"a": 1}) != digest_value({"a": 2})
