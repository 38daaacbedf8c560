"""The TF32 policy (docs/config.md, "TF32"): fp32 means fp32 on a GPU, ``tf32`` is a precision of its
own. What runs on the CPU: the switches each torch build and runner sets, the precision's config,
skips and keys; benchmarks/tf32.py measures the GPU side."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from navbuild.engine import keys
from navbuild.engine.config import from_mapping
from navbuild.engine.graph import ARTIFACT, CHECK, PROFILE, Target
from navbuild.measure.settings import DEFAULT_TOLERANCES
from navbuild.rule import ModelSpec, Rule, tf32_unmet

torch = pytest.importorskip("torch")


@pytest.fixture
def torch_switches():
    """torch's process-wide TF32 switches, restored after the test."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision(), torch.backends.cudnn.benchmark)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])
    torch.backends.cudnn.benchmark = saved[3]


def test_fp32_on_cuda_turns_cudnn_and_matmul_tf32_off(torch_switches):
    from navbuild_rules.torch import tf32

    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default: convolutions in TF32
    torch.set_float32_matmul_precision("high")
    assert tf32.apply("fp32", "cuda") is False
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"
    assert tf32.apply("fp16", "cuda") is False and not torch.backends.cudnn.allow_tf32


def test_tf32_on_cuda_turns_both_on_and_the_cpu_never(torch_switches):
    from navbuild_rules.torch import tf32

    assert tf32.apply("tf32", "cuda") is True
    assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert torch.get_float32_matmul_precision() == "high"
    assert tf32.apply("tf32", "cpu") is False
    assert torch.get_float32_matmul_precision() == "highest"


def test_a_model_that_loosens_float32_matmuls_runs_in_float32(torch_switches, tmp_path: Path):
    """The model's own code runs first (its entry sets "medium"); the runner sets the policy after."""
    from navbuild.rule import ModelSpec
    from navbuild_rules.torch.runner import TorchEagerRunner

    (tmp_path / "model.py").write_text(
        "import torch\n\n\ndef build():\n    torch.set_float32_matmul_precision('medium')\n"
        "    return torch.nn.Linear(4, 2)\n")
    spec = ModelSpec(name="m", framework="torch", entry="model.py:build", root=tmp_path, max_batch_size=2)
    with TorchEagerRunner(None, spec) as runner:
        assert runner.runtime_info()["tf32"] is False
        assert torch.get_float32_matmul_precision() == "highest"


@pytest.mark.parametrize("device,capability,reason", [
    ("cpu", None, "TF32 needs an Ampere-or-newer CUDA GPU (compute capability 8.0+); this target's device is cpu"),
    ("cuda", None, "this machine has none"),
    ("cuda", (7, 5), "this GPU's is 7.5"),
    ("cuda", (8, 0), None),
    ("cuda", (9, 0), None),
])
def test_tf32_needs_an_ampere_or_newer_gpu(device, capability, reason):
    found = tf32_unmet("tf32", device, capability)
    assert (found is None) if reason is None else (reason in found)
    assert tf32_unmet("fp32", device, capability) is None


def test_tf32_is_a_precision_with_its_own_tolerances(tmp_path: Path):
    (tmp_path / "m.onnx").write_bytes(b"")
    (tmp_path / "s.npz").write_bytes(b"")
    base = {"models": {"m": {"framework": "onnx", "entry": "m.onnx", "samples": "s.npz",
                             "targets": {"formats": ["onnx"], "precisions": ["fp32", "tf32"]}}}}
    config = from_mapping(base, tmp_path)
    tolerance = config.models["m"].correctness.tolerance("tf32", "y")
    assert (tolerance.atol, tolerance.rtol) == (DEFAULT_TOLERANCES["tf32"]["atol"], DEFAULT_TOLERANCES["tf32"]["rtol"])
    assert DEFAULT_TOLERANCES["fp32"]["atol"] < tolerance.atol < DEFAULT_TOLERANCES["fp16"]["atol"]
    tightened = from_mapping({**base, "correctness": {"precision": {"tf32": {"atol": 1e-3}}}}, tmp_path)
    assert tightened.models["m"].correctness.tolerance("tf32", "y").atol == 1e-3


@pytest.mark.parametrize("device,precision,entry", [
    ("cuda", "fp32", {"tf32": False}), ("cuda", "tf32", {"tf32": True}), ("cuda", "fp16", {"tf32": False}),
    ("cpu", "fp32", {}),
])
def test_tf32_enters_the_keys_of_cuda_checks_and_profiles(device, precision, entry):
    """A CUDA check's key says how float32 math ran, so fp32 results measured with TF32 on (before
    the policy) are not served; CPU keys are unchanged."""
    model = SimpleNamespace(spec=ModelSpec("m", "torch", "m.py:build", Path(".")))  # what the runner is told
    artifact = Target("m:onnx", ARTIFACT, model=model, rule=Rule("onnx", "1", build=lambda ctx: None),
                      precision=precision, device=device)
    check = Target("m:onnx.check", CHECK, model=None, rule=None, precision=precision, device=device)
    material = keys.check_material(check, artifact=artifact, artifact_digest="a", reference_digest="r",
                                   samples_digest="s", runner="onnxruntime", runner_tools=(), tolerances={})
    assert {k: v for k, v in material.items() if k == "tf32"} == entry
    profile = Target("m:onnx.profile", PROFILE, model=None, rule=None, precision=precision, device=device)
    material = keys.profile_material(profile, artifact=artifact, artifact_digest="a", samples_digest="s",
                                     runner="onnxruntime", runner_tools=(), config={}, resolved={})
    assert {k: v for k, v in material.items() if k == "tf32"} == entry


@pytest.mark.parametrize("precision,device,flags", [("fp32", "cpu", [False, False]), ("fp32", "cuda", [True, False]),
                                                    ("tf32", "cuda", [True, True])])
def test_a_trace_keeps_the_cudnn_flags_of_its_target_whatever_the_process_set(torch_switches, precision, device, flags):
    """torch.jit.trace writes each convolution's benchmark and allow_tf32 into the graph: a CUDA fp32
    trace made with PyTorch's defaults kept TF32 on whatever its runner set (a resnet50's fp32
    TorchScript failed its check on an H100 by 0.049), and a CPU trace's bytes followed the worker's
    earlier targets."""
    import torch

    from navbuild_rules.torch import tf32

    conv = torch.nn.Conv2d(3, 4, 3).eval()
    for before in (True, False):  # what the process had: an earlier target's switches, or the defaults
        torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = before
        with tf32.traced_flags(precision, device):
            graph = torch.jit.trace(conv, torch.randn(1, 3, 8, 8)).inlined_graph
        node = next(n for n in graph.nodes() if n.kind() == "aten::_convolution")
        benchmark, allow_tf32 = (value.toIValue() for value in list(node.inputs())[9:13:3])
        assert [benchmark, allow_tf32] == flags
        assert (torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) == (before, before)
