"""examples/hf_text end to end (issue 19): four Hugging Face text models and a pooling model whose
sequence length varies. Every format each model lists (every torch-family format and ONNX; aoti on
BERT only, to keep the build short) builds and passes its check at two lengths or more; the profile
measures the listed sequence lengths; config.pbtxt and PyTriton take any length (-1); a real
tritonserver answers a length that no sample had, equal to the reference."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from navbuild import tensors
from navbuild.cli import main

REPO = Path(__file__).resolve().parents[2]
MODELS = ("bert", "distilbert", "clip_text", "gpt2", "pooling")

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                 reason="transformers is not installed (pip install navbuild[hf])")]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The example as shipped, built once (``navbuild all``) for this module's tests."""
    root = tmp_path_factory.mktemp("text") / "hf_text"
    shutil.copytree(REPO / "examples" / "hf_text", root, ignore=shutil.ignore_patterns("__pycache__"))
    report = root / "run.json"
    assert main(["--config", str(root / "navbuild.toml"), "--json", str(report), "-q"]) == 0
    return root, json.loads(report.read_text())


def formats_of(root: Path, model: str) -> list[str]:
    import tomllib

    return tomllib.loads((root / "navbuild.toml").read_text())["models"][model]["targets"]["formats"]


def test_every_format_builds_and_passes_at_two_lengths_or_more(project):
    root, records = project
    for model in MODELS:
        samples = tensors.load(root / "navbuild-out" / model / "samples" / "samples.tensors")
        lengths = sorted({sample["input_ids"].shape[1] for sample in samples})
        assert len(lengths) >= 2, (model, lengths)
        for fmt in formats_of(root, model):
            check = records[f"{model}:{fmt}.check"]
            assert records[f"{model}:{fmt}"]["status"] == "built", (model, fmt, records[f"{model}:{fmt}"]["reason"])
            assert check["status"] == "built" and check["correctness"]["passed"], (model, fmt, check)
            assert check["correctness"]["samples"] == len(samples)
    # declared bounds that no sample reached got a sample each: bert's 1 and 32
    bert = tensors.load(root / "navbuild-out" / "bert" / "samples" / "samples.tensors")
    assert [sample["input_ids"].shape[1] for sample in bert] == [8, 13, 1, 32]
    compiled = json.loads((root / "navbuild-out" / "bert" / "torch-compile" / "recipe.json").read_text())
    assert compiled["dynamic_axes"]["input_ids"] == {"1": {"label": "seq", "min": 2, "max": 32}}


def test_onnx_names_the_sequence_axis_of_inputs_and_outputs(project):
    import onnx

    root, _ = project
    graph = onnx.load(str(root / "navbuild-out" / "bert" / "onnx" / "model.onnx")).graph
    dims = {value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
            for value in [*graph.input, *graph.output]}
    assert dims == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"],
                    "last_hidden_state": ["batch", "seq", 16], "pooler_output": ["batch", 16]}


def test_the_profile_measures_the_listed_sequence_lengths(project):
    root, _ = project
    profile = json.loads((root / "navbuild-out" / "bert" / "onnx" / "profile.json").read_text())
    assert [(point["axis"], point["size"]) for point in profile["axis_sweep"]] == [("seq", 4), ("seq", 24)]
    assert all(point["points"] and point["points"][0]["throughput"] > 0 for point in profile["axis_sweep"])
    distil = json.loads((root / "navbuild-out" / "distilbert" / "onnx" / "profile.json").read_text())
    # distilbert's seq spans 1..13 (its samples; no max declared): 24 is not measured, and says why
    assert [point["size"] for point in distil["axis_sweep"]] == [4]
    assert any("seq = 24 not measured: outside its range 1..13" in note for note in distil["notes"])


def test_config_pbtxt_has_minus_one_on_the_sequence_axis_for_every_backend(project, tmp_path):
    from navbuild.deploy.triton_config import parse_config

    root, _ = project
    config = str(root / "navbuild.toml")
    for target, backend in (("onnx", "onnxruntime"), ("torchscript-trace", "pytorch"), ("torch-export", "python")):
        repo = tmp_path / target
        assert main(["--config", config, "triton", "--repo", str(repo), "--target", f"bert:{target}"]) == 0
        parsed = parse_config((repo / "bert" / "config.pbtxt").read_text())
        assert parsed.backend == backend
        assert [list(t.dims) for t in parsed.input] == [[-1], [-1]], target
        assert [list(t.dims) for t in parsed.output] == [[-1, 16], [16]], target


def test_a_real_tritonserver_answers_a_length_no_sample_had(project, tmp_path, capsys):
    root, _ = project
    config = str(root / "navbuild.toml")
    capsys.readouterr()
    code = main(["--config", config, "triton", "--repo", str(tmp_path / "py"), "--backend", "python", "--verify"])
    out = capsys.readouterr().out
    assert code == 0, out
    for model in MODELS:
        assert f"verify: {model} (" in out and "): passed" in out
    unseen = [line for line in out.splitlines() if "(no sample had it): equal to the reference" in line]
    assert len(unseen) == len(MODELS), out
    assert "seq = 22 (no sample had it)" in out  # bert: between its samples' 13 and 32


def test_a_backend_the_server_lacks_is_named_at_write_time_and_by_verify(project, tmp_path, capsys):
    from navbuild.deploy import triton_server

    install = triton_server.find()
    if install is None or "onnxruntime" in triton_server.backends(install):
        pytest.skip("needs a tritonserver without the onnxruntime backend (nvidia-pytriton's)")
    root, _ = project
    capsys.readouterr()
    code = main(["--config", str(root / "navbuild.toml"), "triton", "--repo", str(tmp_path / "native"),
                 "--target", "gpt2:onnx", "--verify"])
    captured = capsys.readouterr()
    assert code == 1
    assert "gpt2 (onnx, backend onnxruntime)" in captured.err and "has no onnxruntime backend" in captured.err
    assert "verify: gpt2 (onnx, onnxruntime backend): FAILED" in captured.out
    assert "not loaded by the server" in captured.out and "onnxruntime" in captured.out


def test_pytriton_serves_a_length_no_sample_had(project, tmp_path):
    import torch
    from pytriton.client import ModelClient
    from pytriton.triton import Triton, TritonConfig

    from navbuild.deploy import triton_server
    from navbuild.deploy.pytriton_adapter import PyTritonAdapter
    from navbuild.rule import call_entry

    root, _ = project
    package = root / "navbuild-out" / "hf-text.nav"
    adapter = PyTritonAdapter(package, "gpt2", target="onnx")
    assert [(t.name, t.shape) for t in adapter.inputs] == [("input_ids", (-1,)), ("attention_mask", (-1,))]
    assert [(t.name, t.shape) for t in adapter.outputs] == [("logits", (-1, 100))]
    port = triton_server.free_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=port, grpc_address="127.0.0.1",
                          grpc_port=triton_server.free_port(), allow_metrics=False, exit_timeout_secs=5)
    ids = np.random.default_rng(0).integers(1, 90, (2, 10)).astype(np.int64)  # samples have 8, 13 and 32
    mask = np.ones_like(ids)
    with torch.inference_mode():
        expected = call_entry(root, "model.py:gpt2")(input_ids=torch.from_numpy(ids),
                                                     attention_mask=torch.from_numpy(mask)).logits.numpy()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LD_LIBRARY_PATH", triton_server.library_path(triton_server.find()))
            with Triton(config=config, workspace=tmp_path / "workspace") as triton:
                triton.bind(model_name="gpt2", infer_func=adapter.infer_func, inputs=adapter.inputs,
                            outputs=adapter.outputs, config=adapter.config)
                triton.run()
                with ModelClient(f"http://127.0.0.1:{port}", "gpt2", init_timeout_s=60,
                                 inference_timeout_s=60) as client:
                    logits = client.infer_batch(input_ids=ids, attention_mask=mask)["logits"]
    finally:
        adapter.close()
    assert logits.shape == (2, 10, 100)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-3)
