"""engine/discovery.py: what the model's code reads from the project, recorded in this process as a
worker records it (issue 22). Entries are called as the rules call them (``navbuild.rule.call_entry``)."""
from __future__ import annotations

from pathlib import Path

from navbuild.engine import discovery
from navbuild.rule import call_entry

ENTRY = '''
import json
import numpy as np

from pkg.layers import width


def build():
    return width() + len(json.dumps([1]))


def read_data():
    with open("{root}/data/table.txt") as handle:
        return handle.read()


def write_and_read():
    path = "{root}/scratch.txt"
    with open(path, "w") as handle:
        handle.write("made here")
    with open(path) as handle:
        return handle.read()


def hidden():
    with open("{root}/.cache/state.txt") as handle:
        return handle.read()
'''


def project(root: Path, name: str) -> Path:
    """A project of its own per test: its modules (``pkg``) are new to this process."""
    root = root / name
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "layers.py").write_text("from pkg.sizes import WIDTH\n\n\ndef width():\n    return WIDTH\n")
    (root / "pkg" / "sizes.py").write_text("WIDTH = 4\n")
    (root / "data").mkdir()
    (root / "data" / "table.txt").write_text("a table")
    (root / ".cache").mkdir()
    (root / ".cache" / "state.txt").write_text("a tool's state")
    (root / "store").mkdir()
    (root / "model.py").write_text(ENTRY.format(root=root))
    return root


def record(root: Path, entry: str) -> discovery.Found:
    with discovery.recording(root, [root / "store"]) as recording:
        call_entry(root, entry)
    return recording.found()


def test_the_entry_its_imports_and_their_imports_are_found_again_once_cached(tmp_path):
    root = project(tmp_path, "cached")
    first = record(root, "model.py:build")
    assert first.sources == ("model.py", "pkg/__init__.py", "pkg/layers.py", "pkg/sizes.py")
    # the second time pkg.layers and pkg.sizes come from sys.modules, never opened: still found
    assert record(root, "model.py:build") == first


def test_the_libraries_the_code_imports_are_found_by_distribution_not_the_standard_library(tmp_path):
    found = record(project(tmp_path, "libraries"), "model.py:build")
    assert found.tools == ("numpy",)  # json is the standard library's


def test_a_library_installed_into_a_folder_of_its_own_is_found_by_distribution(tmp_path, monkeypatch):
    """``pip install --target DIR`` on PYTHONPATH: outside site-packages, a library all the same (its
    .dist-info beside it), so its version enters the key, as site-packages' libraries do."""
    site = tmp_path / "site"
    (site / "vendorlib").mkdir(parents=True)
    (site / "vendorlib" / "__init__.py").write_text("SIZE = 2\n")
    info = site / "vendorlib-3.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vendorlib\nVersion: 3.1\n")
    (info / "RECORD").write_text("vendorlib/__init__.py,,\nvendorlib-3.1.dist-info/METADATA,,\n")
    monkeypatch.syspath_prepend(str(site))
    root = project(tmp_path, "vendored")
    (root / "model.py").write_text("import vendorlib\n\n\ndef build():\n    return vendorlib.SIZE\n")
    found = record(root, "model.py:build")
    assert found.tools == ("vendorlib",) and found.sources == ("model.py",)
    assert discovery.in_library(str(site / "vendorlib" / "__init__.py"))
    assert not discovery.in_library(str(root / "model.py"))


def test_a_data_file_read_is_found_and_a_file_the_build_wrote_is_not(tmp_path):
    root = project(tmp_path, "files")
    assert "data/table.txt" in record(root, "model.py:read_data").sources
    assert "scratch.txt" not in record(root, "model.py:write_and_read").sources


def test_hidden_folders_and_navbuilds_folders_are_never_sources(tmp_path):
    root = project(tmp_path, "hidden")
    assert not any(path.startswith(".cache") for path in record(root, "model.py:hidden").sources)
    (root / "store" / "object").write_text("x")
    with discovery.recording(root, [root / "store"]) as recording:
        (root / "store" / "object").read_text()
    assert recording.found().sources == ()


def test_nothing_is_recorded_outside_a_recording(tmp_path):
    root = project(tmp_path, "outside")
    call_entry(root, "model.py:read_data")
    with discovery.recording(root, []) as recording:
        pass
    assert recording.found() == discovery.Found()


def test_a_list_from_a_store_or_a_cache_is_refused_when_it_names_a_path_out_of_the_project():
    assert discovery.Found.from_dict({"sources": ["../etc/passwd"], "tools": []}) is None
    assert discovery.Found.from_dict({"sources": ["/etc/passwd"], "tools": []}) is None
    assert discovery.Found.from_dict({"sources": ["a.py"], "tools": ["torch"]}) == discovery.Found(("a.py",), ("torch",))


def test_a_found_file_modified_while_its_target_builds_fails_the_build_unrecorded(tmp_path):
    import os
    import time

    import pytest

    from navbuild.engine.actions import ChangedWhileBuilding, unchanged_since

    (tmp_path / "helper.py").write_text("X = 1\n")
    material = {"discovered": {"sources": {"helper.py": "d"}, "tools": {}}}
    started = time.time_ns()
    unchanged_since(tmp_path, material, started)  # untouched since the build started
    os.utime(tmp_path / "helper.py", ns=(started + 1000, started + 1000))
    with pytest.raises(ChangedWhileBuilding, match="helper.py changed while the target was building"):
        unchanged_since(tmp_path, material, started)
    assert ChangedWhileBuilding.transient  # Session._failed records no failure for it
    future = time.time_ns() + 3600 * 10**9  # a clock skew says nothing of this build
    os.utime(tmp_path / "helper.py", ns=(future, future))
    unchanged_since(tmp_path, material, started)
