"""Error isolation: an export that crashes the process (a segfault) fails that module's target only;
an optimize called again while a worker imports the caller's script stops with the fix."""
from __future__ import annotations

import sys

import torch

import navbuild
from navbuild.api import inplace
from tests.api.conftest import run_python

MODULES = '''
import ctypes

import torch
from torch import nn


class Crashing(nn.Module):
    """Runs eagerly; crashes the process as soon as an exporter traces it."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        if torch.jit.is_tracing():
            ctypes.string_at(0)  # reads address 0: SIGSEGV, as a broken exporter or custom op would
        return self.linear(x)


class Fine(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return torch.relu(self.linear(x))
'''


def test_a_module_whose_export_segfaults_fails_alone(tmp_path):
    (tmp_path / "crash_modules.py").write_text(MODULES)
    sys.path.insert(0, str(tmp_path))
    sys.modules.pop("crash_modules", None)
    inplace.forget()
    try:
        import crash_modules

        fine = navbuild.Module(crash_modules.Fine().eval(), name="fine")
        crashing = navbuild.Module(crash_modules.Crashing().eval(), name="crashing")

        def pipeline(x):
            return crashing(fine(x))

        samples = [(1, torch.randn(1, 4)), (2, torch.randn(2, 4))]
        expected = [pipeline(x) for _, x in samples]
        config = navbuild.OptimizeConfig(target_formats=("torch", "torchscript-trace"), target_device="cpu",
                                         profiling=False, workspace=tmp_path)
        packages = navbuild.optimize(pipeline, samples, config, jobs=2, quiet=True)

        crashed = packages["crashing"].targets["torchscript-trace"]
        assert crashed.status == "failed" and "SIGSEGV" in crashed.reason, crashed
        log = tmp_path / "navbuild-out" / "crashing" / "torchscript-trace" / "build.log"
        assert "killed by SIGSEGV" in log.read_text() and "Segmentation fault" in log.read_text()
        assert packages["crashing"].targets["torch"].status == "built"  # the rest of its graph went on
        assert packages["crashing"].records["crashing:torchscript-trace.check"].status == "failed"
        for name, target in packages["fine"].targets.items():
            assert target.status == "built" and target.correct, (name, target.reason)

        navbuild.load_optimized(quiet=True)  # nothing profiled: the first correct target, eager here
        assert crashing.optimized_target is None and "eager" in crashing.optimized_reason
        assert fine.load_optimized(target="torchscript-trace") == "torchscript-trace"
        assert crashing.load_optimized(target="torchscript-trace") is None
        assert "torchscript-trace" in crashing.optimized_reason
        for (_, x), want in zip(samples, expected):
            assert torch.allclose(pipeline(x), want, atol=1e-5)
    finally:
        inplace.forget()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("crash_modules", None)


UNGUARDED = """
    import json, sys
    sys.path.insert(0, "vision")
    import navbuild
    import model

    config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_device="cpu",
                                     profiling=False, workspace=".")
    package = navbuild.torch.optimize(model.build_model(), model.make_samples(), config, quiet=True)
    print(json.dumps({name: [r.status, r.reason] for name, r in package.records.items()}))
"""


def test_an_unguarded_script_is_told_to_guard_its_optimize(vision):
    records = run_python(UNGUARDED, vision)
    status, reason = records["smallresnet:samples"]  # the first target that needed a worker
    assert status == "failed" and records["smallresnet:torchscript-trace"][0] == "failed"
    assert 'if __name__ == "__main__"' in reason and "NAVBUILD_USE_MULTIPROCESSING=0" in reason
    unguarded = run_python(UNGUARDED, vision, env={"NAVBUILD_USE_MULTIPROCESSING": "0"})
    assert all(status in ("built", "cached") for status, _ in unguarded.values()), unguarded
