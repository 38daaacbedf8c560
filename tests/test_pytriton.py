"""PyTritonAdapter: the adapter's tensors and config, then PyTriton serving it on 127.0.0.1."""
from __future__ import annotations

import numpy as np
import pytest

from navbuild.deploy.package import write_package
from navbuild.deploy.pytriton_adapter import PyTritonAdapter
from navbuild.deploy.triton_repo import DeployError
from tests.triton_util import (assert_close, built_status, free_port, library_path,  # noqa: F401
                               samples_and_reference, status)

TIMEOUT_S = 60


def test_adapter_describes_the_selected_target(status):
    adapter = PyTritonAdapter(status, "cnn")
    assert adapter.target_name == "onnx"
    assert adapter.runner.name == status["models"]["cnn"]["targets"]["onnx"]["runner"]
    assert [(t.name, t.dtype, t.shape) for t in adapter.inputs] == [("image", np.float32, (3, 32, 32))]
    assert [(t.name, t.dtype, t.shape) for t in adapter.outputs] == [("logits", np.float32, (10,))]
    config = adapter.config
    assert config.batching and config.max_batch_size == 16
    assert config.batcher.preferred_batch_size == [4, 8, 16]
    assert PyTritonAdapter(status, "cnn", strategy="min-latency").target_name == "torchscript-trace"


def test_adapter_errors(status, tmp_path):
    with pytest.raises(DeployError, match="no target selected for strategy 'latency-budget'"):
        PyTritonAdapter(status, "cnn", strategy="latency-budget")
    package = write_package(status, tmp_path / "cnn.nav")
    with pytest.raises(DeployError, match="cnn:torch is described in the package but its files are not in it"):
        PyTritonAdapter(package, "cnn", target="torch")


@pytest.mark.slow
def test_pytriton_serves_the_adapters(built_status, tmp_path):
    from pytriton.client import ModelClient
    from pytriton.triton import Triton, TritonConfig

    package = write_package(built_status, tmp_path / "cnn.nav")
    adapters = {
        "cnn": PyTritonAdapter(built_status, "cnn"),  # max-throughput: onnx
        "cnn_ts": PyTritonAdapter(package, "cnn", strategy="min-latency"),  # from the package
        "cnn_eager": PyTritonAdapter(built_status, "cnn", target="torch"),
    }
    http_port = free_port()
    config = TritonConfig(http_address="127.0.0.1", http_port=http_port, grpc_address="127.0.0.1",
                          grpc_port=free_port(), allow_metrics=False, exit_timeout_secs=5)
    samples, reference = samples_and_reference(built_status)
    # PyTriton starts tritonserver with os.environ (plus its own libs); the python backend stub
    # needs this interpreter's libpython first on the library path.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LD_LIBRARY_PATH", library_path())
        with Triton(config=config, workspace=tmp_path / "workspace") as triton:
            for name, adapter in adapters.items():
                triton.bind(model_name=name, infer_func=adapter.infer_func, inputs=adapter.inputs,
                            outputs=adapter.outputs, config=adapter.config)
            triton.run()
            for name in adapters:
                with ModelClient(f"http://127.0.0.1:{http_port}", name, init_timeout_s=TIMEOUT_S,
                                 inference_timeout_s=TIMEOUT_S) as client:
                    assert client.model_config.max_batch_size == 16
                    for sample, expected in zip(samples, reference):
                        result = client.infer_batch(image=sample["image"])
                        assert result["logits"].dtype == np.float32
                        assert_close(result["logits"], expected["logits"])
    for adapter in adapters.values():
        adapter.close()
