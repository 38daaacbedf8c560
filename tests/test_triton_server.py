"""A real tritonserver (the one nvidia-pytriton bundles) serving repositories that navbuild wrote.

That server carries only the python backend, so the targets are served through it: torch eager and
torch.export (the python backend is their native choice) and ONNX / TorchScript with
``backend="python"``. The onnxruntime, pytorch and tensorrt configs are checked through the
protobuf schema in test_triton_config.py.
"""
from __future__ import annotations

import numpy as np
import pytest

from navbuild.deploy.triton_repo import write_model_repository
from tests.triton_util import ROOT, assert_close, built_status, samples_and_reference, tritonserver  # noqa: F401

pytestmark = pytest.mark.slow

# Triton model name -> (target, backend)
MODELS = {
    "cnn_eager": ("torch", "auto"),
    "cnn_export": ("torch-export", "auto"),
    "cnn_onnx": ("onnx", "python"),
    "cnn_ts": ("torchscript-trace", "python"),
}
REQUEST_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def server(built_status, tmp_path_factory):
    base = tmp_path_factory.mktemp("triton")
    repo = base / "model_repository"
    for name, (target, backend) in MODELS.items():
        write_model_repository(built_status, "cnn", repo, target=target, backend=backend, triton_name=name)
    with tritonserver(repo, base, pythonpath=[ROOT]) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    import tritonclient.http as http

    client = http.InferenceServerClient(server, connection_timeout=REQUEST_TIMEOUT_S,
                                        network_timeout=REQUEST_TIMEOUT_S, concurrency=4)
    yield client
    client.close()


def infer(client, model: str, image: np.ndarray, *, async_: bool = False):
    import tritonclient.http as http

    tensor = http.InferInput("image", list(image.shape), "FP32")
    tensor.set_data_from_numpy(image)
    outputs = [http.InferRequestedOutput("logits")]
    if async_:
        return client.async_infer(model, [tensor], outputs=outputs)
    return client.infer(model, [tensor], outputs=outputs).as_numpy("logits")


@pytest.mark.parametrize("model", sorted(MODELS))
def test_outputs_match_the_reference(client, built_status, model):
    assert client.is_model_ready(model)
    samples, reference = samples_and_reference(built_status)
    for sample, expected in zip(samples, reference):
        logits = infer(client, model, sample["image"])
        assert logits.shape == expected["logits"].shape and logits.dtype == np.float32
        assert_close(logits, expected["logits"])


def test_server_reads_the_config_as_written(client, built_status):
    config = client.get_model_config("cnn_onnx")
    model = built_status["models"]["cnn"]
    assert config["backend"] == "python" and config["max_batch_size"] == model["max_batch_size"]
    assert [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config["input"]] == [
        ("image", "TYPE_FP32", [3, 32, 32])]
    assert [(t["name"], [int(d) for d in t["dims"]]) for t in config["output"]] == [("logits", [10])]
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8, 16]
    assert config["instance_group"][0]["kind"] == "KIND_CPU"


def test_concurrent_requests_are_batched_and_split_back(client, built_status):
    """Bounded: 16 requests in flight at most, each waited for with a timeout."""
    samples, reference = samples_and_reference(built_status)
    pending = [(index % 2, infer(client, "cnn_eager", samples[index % 2]["image"], async_=True))
               for index in range(16)]
    for which, request in pending:
        logits = request.get_result(timeout=REQUEST_TIMEOUT_S).as_numpy("logits")
        assert_close(logits, reference[which]["logits"])
    stats = client.get_inference_statistics("cnn_eager")["model_stats"][0]
    assert int(stats["inference_count"]) >= 16


def test_a_bad_request_is_refused_and_the_server_stays_up(client, built_status):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="image"):
        infer(client, "cnn_export", np.zeros((1, 3, 16, 16), dtype=np.float32))
    samples, reference = samples_and_reference(built_status)
    assert_close(infer(client, "cnn_export", samples[0]["image"]), reference[0]["logits"])
