"""config.pbtxt and model-repository layout, read back with Triton's own protobuf schema."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from navbuild.deploy import triton_config
from navbuild.hashing import digest_file, tree_digest
from navbuild.deploy.triton_repo import SPEC_FILE, TEMPLATE, DeployError, loads_source, write_model_repository
from tests.triton_util import ROOT, built_status, status  # noqa: F401  (fixtures)


def read_config(folder: Path) -> mc.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())


def check_against_status(config: mc.ModelConfig, model: dict, *, names: str = "plain") -> None:
    """Inputs, outputs and batching of the config, field by field, against the status."""
    batching = model["max_batch_size"] > 0
    assert config.max_batch_size == (model["max_batch_size"] if batching else 0)
    for pb_tensors, specs in ((config.input, model["inputs"]), (config.output, model["outputs"])):
        assert len(pb_tensors) == len(specs)
        for index, (pb, spec) in enumerate(zip(pb_tensors, specs)):
            expected_name = f"{spec['name']}__{index}" if names == "libtorch" else spec["name"]
            assert pb.name == expected_name
            assert mc.DataType.Name(pb.data_type) == triton_config.DTYPES[spec["dtype"]]
            assert list(pb.dims) == (spec["shape"][1:] if batching else spec["shape"])


def test_onnx_target_gets_the_onnxruntime_backend(status, tmp_path):
    folder = write_model_repository(status, "cnn", tmp_path / "repo")  # max-throughput -> onnx
    config = read_config(folder)
    model, target = status["models"]["cnn"], status["models"]["cnn"]["targets"]["onnx"]
    assert folder == tmp_path / "repo" / "cnn"
    assert (config.name, config.backend, config.platform) == ("cnn", "onnxruntime", "onnxruntime_onnx")
    check_against_status(config, model)
    # the best-throughput batch sizes of the profile, capped at max_batch_size (32 is left out)
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    assert [(g.kind, g.count) for g in config.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 1)]
    assert not config.HasField("optimization")
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1/model.onnx", "config.pbtxt"]
    assert digest_file(folder / "1" / "model.onnx") == target["files"]["model.onnx"]


def test_torchscript_uses_libtorch_names(status, tmp_path):
    folder = write_model_repository(status, "cnn", tmp_path / "repo", strategy="min-latency",
                                    triton_name="cnn_ts")
    config = read_config(folder)
    assert (config.name, config.backend, config.platform) == ("cnn_ts", "pytorch", "pytorch_libtorch")
    check_against_status(config, status["models"]["cnn"], names="libtorch")
    assert [t.name for t in config.input] == ["image__0"] and [t.name for t in config.output] == ["logits__0"]
    assert list(config.dynamic_batching.preferred_batch_size) == [8]
    assert (folder / "1" / "model.pt").is_file()


def test_torch_export_goes_to_the_python_backend(status, tmp_path):
    folder = write_model_repository(status, "cnn", tmp_path / "repo", target="torch-export")
    config = read_config(folder)
    assert (config.backend, config.platform) == ("python", "")
    check_against_status(config, status["models"]["cnn"])
    assert config.HasField("dynamic_batching") and not config.dynamic_batching.preferred_batch_size  # no profile
    assert (folder / "1" / "model.py").read_bytes() == TEMPLATE.read_bytes()
    spec = json.loads((folder / "1" / SPEC_FILE).read_text())
    target = status["models"]["cnn"]["targets"]["torch-export"]
    assert spec["runner"] == target["runner"] and spec["precision"] == "fp32" and spec["device"] == "cpu"
    assert spec["model"]["inputs"] == status["models"]["cnn"]["inputs"]
    # a runner that declares it does not load the model's code gets no source copy
    assert (spec["artifact"], spec["source"]) == ("artifact", None if loads_source(target) is False else "source")
    assert digest_file(folder / "1" / "artifact" / "model.pt2") == target["files"]["model.pt2"]


def test_torch_eager_carries_the_model_source(status, tmp_path):
    folder = write_model_repository(status, "cnn", tmp_path / "repo", target="torch")
    spec = json.loads((folder / "1" / SPEC_FILE).read_text())
    assert (spec["artifact"], spec["source"]) == ("artifact", "source")
    assert (folder / "1" / "artifact" / "recipe.json").is_file()
    source = folder / "1" / "source" / "examples" / "vision"
    assert (source / "model.py").read_bytes() == (ROOT / "examples/vision/model.py").read_bytes()
    assert (source / "weights.pt").is_file() and not (source / "__pycache__").exists()
    # a package carries no source: without a root the eager target cannot be deployed
    del status["root"]
    if loads_source(status["models"]["cnn"]["targets"]["torch"]):
        with pytest.raises(DeployError, match="cnn:torch runs the model's source"):
            write_model_repository(status, "cnn", tmp_path / "repo2", target="torch")
    folder = write_model_repository(status, "cnn", tmp_path / "repo3", target="torch", source_root=ROOT)
    assert (folder / "1" / "source" / "examples" / "vision" / "model.py").is_file()


def _add_target(status, tmp_path, name, fmt, files, **fields):
    folder = tmp_path / "out" / name
    digests = {}
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        digests[rel] = digest_file(folder / rel)
    entry = dict(status["models"]["cnn"]["targets"]["onnx"])
    entry.update(target=f"cnn:{name}", format=fmt, rule=fmt, files=digests, digest=tree_digest(digests),
                 dir=str(folder), profile=None, **fields)
    status["models"]["cnn"]["targets"][name] = entry


def test_tensorrt_plan(status, tmp_path):
    _add_target(status, tmp_path, "trt-fp16", "trt", {"model.plan": b"plan bytes"}, precision="fp16",
                device="cuda", device_bound=True, portable=False, runner="tensorrt")
    folder = write_model_repository(status, "cnn", tmp_path / "repo", target="trt-fp16")
    config = read_config(folder)
    assert (config.backend, config.platform) == ("tensorrt", "tensorrt_plan")
    check_against_status(config, status["models"]["cnn"])
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    assert (folder / "1" / "model.plan").read_bytes() == b"plan bytes"


def test_savedmodel_folder(status, tmp_path):
    """A folder that the rule declares (``savedmodel/``) is laid out whole under its Triton name."""
    triton = {"backend": "tensorflow", "platform": "tensorflow_savedmodel",
              "files": {"savedmodel/": "model.savedmodel/"}}
    _add_target(status, tmp_path, "savedmodel", "savedmodel",
                {"savedmodel/saved_model.pb": b"pb", "savedmodel/variables/variables.index": b"ix"},
                runner="tensorflow", triton=triton)
    folder = write_model_repository(status, "cnn", tmp_path / "repo", target="savedmodel")
    config = read_config(folder)
    assert (config.backend, config.platform) == ("tensorflow", "tensorflow_savedmodel")
    assert (folder / "1" / "model.savedmodel" / "saved_model.pb").read_bytes() == b"pb"
    assert (folder / "1" / "model.savedmodel" / "variables" / "variables.index").read_bytes() == b"ix"


def test_onnx_with_tensorrt_accelerator(status, tmp_path):
    status["models"]["cnn"]["targets"]["onnx"]["precision"] = "fp16"
    config = read_config(write_model_repository(status, "cnn", tmp_path / "repo", ort_tensorrt=True))
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt"]
    assert accelerators[0].parameters["precision_mode"] == "FP16"
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    with pytest.raises(DeployError, match="backend 'pytorch' takes no TensorRT accelerator"):
        write_model_repository(status, "cnn", tmp_path / "repo", strategy="min-latency", ort_tensorrt=True)
    with pytest.raises(DeployError, match="needs GPU instances"):
        write_model_repository(status, "cnn", tmp_path / "repo", ort_tensorrt=True, instance_kind="cpu")


def test_no_batching_keeps_full_shapes(status, tmp_path):
    model = status["models"]["cnn"]
    model["max_batch_size"] = 0
    model["inputs"].append({"name": "ids", "dtype": "int64", "shape": [-1, 7]})
    config = read_config(write_model_repository(status, "cnn", tmp_path / "repo", instance_count=2))
    check_against_status(config, model)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert mc.DataType.Name(config.input[1].data_type) == "TYPE_INT64"
    assert config.instance_group[0].count == 2


def test_one_value_per_item_is_reshaped(status, tmp_path):
    status["models"]["cnn"]["outputs"] = [{"name": "score", "dtype": "float16", "shape": [-1]}]
    config = read_config(write_model_repository(status, "cnn", tmp_path / "repo", dynamic_batching=False))
    assert list(config.output[0].dims) == [1] and config.output[0].HasField("reshape")
    assert list(config.output[0].reshape.shape) == [] and config.output[0].data_type == mc.TYPE_FP16
    assert not config.HasField("dynamic_batching")


def test_every_dtype_maps_to_a_triton_type():
    for triton in triton_config.DTYPES.values():
        mc.DataType.Value(triton)
    with pytest.raises(triton_config.TritonConfigError, match="complex64"):
        triton_config.triton_dtype("complex64")


def test_preferred_batch_sizes():
    profile = {"points": [{"batch_size": b, "throughput": t} for b, t in
                          ((1, 10.0), (2, 50.0), (4, 95.0), (8, 100.0), (16, 99.0), (32, 500.0))]}
    assert triton_config.preferred_batch_sizes(profile, 16) == [4, 8, 16]
    assert triton_config.preferred_batch_sizes(profile, 2) == [2]
    assert triton_config.preferred_batch_sizes(None, 16) == []
    assert triton_config.preferred_batch_sizes({"points": []}, 16) == []


def test_errors_name_the_model_target_and_cause(status, tmp_path):
    repo = tmp_path / "repo"
    with pytest.raises(DeployError, match="model 'nope' is not in the build status; models: cnn"):
        write_model_repository(status, "nope", repo)
    with pytest.raises(DeployError, match="cnn: no target selected for strategy 'latency-budget'"):
        write_model_repository(status, "cnn", repo, strategy="latency-budget")
    with pytest.raises(DeployError, match="cnn:trt-fp16 is 'skipped', not built: no CUDA GPU"):
        write_model_repository(status, "cnn", repo, target="trt-fp16")
    status["models"]["cnn"]["targets"]["torch-export"]["correctness"]["passed"] = False
    with pytest.raises(DeployError, match="cnn:torch-export failed its correctness check"):
        write_model_repository(status, "cnn", repo, target="torch-export")
    status["models"]["cnn"]["targets"]["onnx"]["files"]["model.onnx"] = "0" * 32
    with pytest.raises(DeployError, match="cnn:onnx: .*model.onnx does not match its digest"):
        write_model_repository(status, "cnn", repo)
    with pytest.raises(DeployError, match="unknown Triton backend 'triton'"):
        write_model_repository(status, "cnn", repo, strategy="min-latency", backend="triton")
    assert not repo.exists() or not any(repo.iterdir())  # nothing half-written is left


def test_rewriting_replaces_the_model_folder(status, tmp_path):
    repo = tmp_path / "repo"
    write_model_repository(status, "cnn", repo, target="torch-export")
    folder = write_model_repository(status, "cnn", repo)  # now onnx: the python files go away
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no staging folder left behind


def test_deploy_modules_import_no_framework():
    code = ("import sys; import navbuild.deploy.triton_config, navbuild.deploy.triton_repo, navbuild.deploy.package, "
            "navbuild.deploy.pytriton_adapter, navbuild.deploy.triton_python_model; "
            "print(sorted(m for m in ('torch', 'tritonclient', 'pytriton', 'onnxruntime', 'google.protobuf') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class FakeBackendUtils:
    """The parts of Triton's ``triton_python_backend_utils`` that model.py uses."""

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.outputs = {t.name: t.array for t in output_tensors}
            self.error = error

    class TritonError:
        def __init__(self, message):
            self.message = message

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return FakeBackendUtils.Tensor(name, request[name]) if name in request else None

    @staticmethod
    def get_output_config_by_name(config, name):
        return next(o for o in config["output"] if o["name"] == name)

    @staticmethod
    def triton_string_to_numpy(text):
        return {"TYPE_FP32": np.float32, "TYPE_FP16": np.float16, "TYPE_INT64": np.int64}[text]


def test_python_model_batches_requests_and_reports_errors(status, tmp_path, monkeypatch):
    """navbuild's model.py in this process, with Triton's utils stubbed: requests of one item shape
    run as one batch and are split back; a failing or incomplete request gets its own error."""
    from google.protobuf import json_format

    from tests.triton_util import assert_close, samples_and_reference

    folder = write_model_repository(status, "cnn", tmp_path / "repo", target="torch-export")
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FakeBackendUtils)
    namespace: dict = {"__file__": str(folder / "1" / "model.py"), "__name__": "navbuild_model_under_test"}
    exec(compile((folder / "1" / "model.py").read_text(), str(folder / "1" / "model.py"), "exec"), namespace)
    model = namespace["TritonPythonModel"]()
    config = json_format.MessageToDict(read_config(folder), preserving_proto_field_name=True)
    model.initialize({"model_config": json.dumps(config), "model_instance_kind": "CPU",
                      "model_instance_device_id": "0", "model_version": "1"})
    samples, reference = samples_and_reference(status)
    requests = [{"image": samples[0]["image"]}, {"image": samples[1]["image"]},
                {"image": np.zeros((1, 3, 16, 16), np.float32)}, {}]
    calls = []
    infer = model.runner.infer
    monkeypatch.setattr(model.runner, "infer", lambda feed: calls.append(feed["image"].shape) or infer(feed))
    responses = model.execute(requests)
    assert calls == [(3, 3, 32, 32), (1, 3, 16, 16)]  # the first two requests ran as one batch
    assert [r.error is None for r in responses] == [True, True, False, False]
    assert_close(responses[0].outputs["logits"], reference[0]["logits"])
    assert_close(responses[1].outputs["logits"], reference[1]["logits"])
    assert responses[3].error.message == "input image is missing"
    model.finalize()


def test_every_model_that_can_be_deployed_is(status, tmp_path):
    from navbuild.deploy.triton_repo import write_model_repositories

    second = json.loads(json.dumps(status["models"]["cnn"]))
    second["selected"] = {}
    status["models"]["other"] = second
    assert write_model_repositories(status, tmp_path / "repo", models=["cnn"]) == [tmp_path / "repo" / "cnn"]
    with pytest.raises(DeployError, match="wrote cnn; not deployed: model other: no target selected"):
        write_model_repositories(status, tmp_path / "repo2")
    assert (tmp_path / "repo2" / "cnn" / "config.pbtxt").is_file()


def test_native_backend_takes_the_artifacts_own_io_types():
    from navbuild.deploy.triton_config import artifact_dtype

    image = {"name": "image", "dtype": "float32", "shape": [-1, 3, 32, 32]}
    own = {"image": "float16"}
    assert artifact_dtype(image, own, "artifact") == "float16"  # an fp16 TorchScript file wants fp16
    assert artifact_dtype(image, own, "model") == "float32"  # navbuild's runner casts for it
    assert artifact_dtype(image, None, "artifact") == "float32"
