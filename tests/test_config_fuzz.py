"""Generated configs (issue 10, item 4): a valid navbuild.toml with one key set to a generated value
(any type, unicode, hostile paths), removed, or joined by an unknown key. `navbuild list` must exit 0,
or exit 2 with one message naming the file and the key; never a traceback. No build runs."""
from __future__ import annotations

import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from navbuild.cli import main

from tests.example_cnn import copy_vision

from .test_config import GOOD

BASE = tomllib.loads(GOOD.replace('name = "t"', 'name = "t"\ndevice = "cpu"\nstore = ".navbuild"\nout = "navbuild-out"\n'
                                  'timeout = 600\nallow_paths_outside = false')
                     .replace("max_batch_size = 16", 'max_batch_size = 16\noutputs = ["logits"]\ntimeout = 60\n'
                              'dynamic_axes = {image = {2 = "height"}}')
                     .replace('formats = ["onnx"]', 'formats = ["onnx"]\nprecisions = ["fp32"]\nnormalize = true')
                     + '\n[correctness]\natol = 1e-4\n[correctness.precision.fp16]\nrtol = 1e-2\n'
                       '[profile]\nenabled = false\nbatch_sizes = [1, 2]\n'
                       '[models.cnn.targets.onnx]\nopset = 18\ntimeout = 30\n'
                       '[models.cnn.correctness.outputs.logits]\natol = 1e-3\n')
PATHS = ["../x", "../../../etc/passwd", "/etc/passwd", "/", ".", "..", "", "a\x00b", "~/x", "*", "**", "**x",
         "vision/*.py", "vision/model.py", "vision/model.py:build_model", "vision/model.py:", ":f",
         "vision/../../x.py:f", "C:\\\\x", "vision\\\\model.py", "navbuild-out", ".navbuild", "é/ü.py:f",
         "vision/model.py:make_samples", "x.tensors", "x.npz", "\u202e.py:f"]
SCALARS = st.one_of(st.text(max_size=12), st.sampled_from(PATHS), st.integers(-2**63, 2**63 - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def key_paths(table: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in table.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict):
            paths.extend(key_paths(value, prefix + (key,)))
    return paths


KEYS = key_paths(BASE)


@st.composite
def configs(draw) -> tuple[dict, tuple]:
    config = json.loads(json.dumps(BASE))
    path = draw(st.sampled_from(KEYS))
    action = draw(st.sampled_from(["set", "delete", "add"]))
    parent = config
    for key in path[:-1]:
        parent = parent[key]
    if action == "delete":
        del parent[path[-1]]
    elif action == "set":
        parent[path[-1]] = draw(VALUES)
    else:
        if not isinstance(parent.get(path[-1]), dict):
            parent = parent  # add beside it
            new = draw(st.text(min_size=1, max_size=8))
            parent[new] = draw(VALUES)
            path = path[:-1] + (new,)
        else:
            new = draw(st.text(min_size=1, max_size=8))
            parent[path[-1]][new] = draw(VALUES)
            path = path + (new,)
    return config, path


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml(config: dict) -> bytes:
    text = "\n".join(f"{json.dumps(k, ensure_ascii=False)} = {toml_value(v)}" for k, v in config.items()) + "\n"
    return text.encode("utf-8", errors="surrogatepass")  # a lone surrogate: not UTF-8, refused as such


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return copy_vision(tmp_path_factory.mktemp("fuzz") / "project")


def test_the_base_config_is_valid(root, capsys):
    (root / "navbuild.toml").write_bytes(toml(BASE))
    assert main(["--config", str(root / "navbuild.toml"), "list"]) == 0


@settings(max_examples=int(os.environ.get("NAVBUILD_FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=configs())
def test_generated_configs_exit_2_naming_the_key_never_a_traceback(root, capsys, generated):
    config, path = generated
    file = root / "navbuild.toml"
    file.write_bytes(toml(config))
    code = main(["--config", str(file), "list"])  # any exception fails the test: that is the point
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), err
    if code == 2:
        assert "navbuild: error:" in err and "Traceback" not in err, err
        syntax = "not valid TOML" in err or "not UTF-8" in err
        assert syntax or any(str(part) in err for part in path if str(part)), (path, err)
