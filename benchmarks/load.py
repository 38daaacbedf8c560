"""Cold build time on a quiet machine and beside a fixed CPU load, next to Model Navigator or a plain script.

    python benchmarks/load.py [--busy 2] [--only navbuild,navbuild-fp32,script,mn] [--mn-python PATH]

Each run starts from a scratch copy of this repository's example project (navbuild.toml and
examples/), with an empty store, in a subprocess; the "loaded" runs start ``--busy`` processes that
spin on the CPU (``while True: pass``) first and stop them afterwards. It prints every time, the
loaded/quiet ratio of each tool (issue 15's goal for navbuild: <= 3x) and navbuild's time over the
baseline's in both conditions (goal: <= 0.5x Model Navigator's). It asserts nothing.

What runs:
  navbuild       the README's quick start: cold ``navbuild all -q`` of navbuild.toml (cnn: 4 formats x
                 fp32/fp16, encoder: 4 formats fp32, TensorRT skipped here), profiles included.
  navbuild-fp32  the same project with fp32 only: the formats Model Navigator builds on a CPU.
  mn             Model Navigator 0.14 ``nav.torch.optimize`` on the same two models, formats
                 TorchScript (script and trace), ONNX and torch.export with their CPU runners only
                 (no eager torch, no torch.compile: navbuild-fp32 builds neither), max_batch_size
                 as in navbuild.toml, its default profile (runs only with --mn-python, see below).
  script         what a user without a tool writes (benchmarks/load.py itself, ``--plain``): export
                 the navbuild-fp32 formats of both models, load each, time 5 warm-up and 50 calls
                 at every power-of-two batch size up to max_batch_size, print the medians.

Model Navigator 0.14 in a venv on a CPU-only machine (tensorrt, onnxruntime-gpu and nvidia-modelopt
do not install without a GPU, so its dependencies are installed by hand, without them):

    python -m venv --system-site-packages /tmp/mnvenv
    /tmp/mnvenv/bin/pip install --no-deps triton-model-navigator==0.14.0
    /tmp/mnvenv/bin/pip install "dacite~=1.8" fire jsonlines loguru "onnx_graphsurgeon~=0.5" \\
        "packaging~=24.1" polygraphy psutil py-cpuinfo "pynvml~=11.5" "python-slugify~=8.0" "pyyaml~=6.0" tabulate pyee
    # MN's profiler writes NaN GPU figures that orjson (which jsonlines prefers) refuses: use json;
    # and MN imports TensorFlow and JAX when it finds them, which crashed it (SIGSEGV) beside torch
    echo "import sys; [sys.modules.setdefault(name, None) for name in ('orjson', 'tensorflow', 'jax')]" \\
        > /tmp/mnvenv/lib/python3.11/site-packages/zz_mn_no_orjson.pth
    python benchmarks/load.py --mn-python /tmp/mnvenv/bin/python

Model Navigator raises when a profile does not stabilize (this script then reports it as failed,
with the time it took); navbuild reports such a point and goes on.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MN_SCRIPT = '''
import sys, time
from pathlib import Path

import torch
import model_navigator as nav


def load(root, entry, samples):
    from navbuild.rule import call_entry
    return call_entry(root, entry), [s if isinstance(s, torch.Tensor) else s[0] for s in call_entry(root, samples)]


def main():
    root = Path(sys.argv[1])
    models = eval(sys.argv[2])  # name -> (entry, samples, max_batch_size)
    failed = []
    for name, (entry, samples, max_batch) in models.items():
        model, data = load(root, entry, samples)
        package = nav.torch.optimize(
            model=model, dataloader=data,
            target_formats=(nav.Format.TORCHSCRIPT, nav.Format.ONNX, nav.Format.TORCH_EXPORTEDPROGRAM),
            target_device=nav.DeviceKind.CPU, runners=("TorchScriptCPU", "OnnxCPU", "TorchExportedProgramCPU"),
            optimization_profile=nav.OptimizationProfile(max_batch_size=max_batch),
            workspace=str(root / f"mn-{name}"), verbose=False)
        try:
            package.get_best_model_status()
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:200])
    print("MN-FAILED " + "; ".join(failed) if failed else "MN-OK")


if __name__ == "__main__":
    main()
'''


def project_copy(dest: Path, fp32_only: bool = False) -> Path:
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "examples", dest / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    text = (REPO / "navbuild.toml").read_text()
    if fp32_only:
        text = text.replace('precisions = ["fp32", "fp16"]', 'precisions = ["fp32"]')
        text = text.replace(', "trt"]', ']')
    (dest / "navbuild.toml").write_text(text)
    return dest / "navbuild.toml"


def models(config: Path) -> dict[str, tuple[str, str, int]]:
    data = tomllib.loads(config.read_text())
    return {name: (m["entry"], m["samples"], m.get("max_batch_size", 1)) for name, m in data["models"].items()}


def run(command: list[str], cwd: Path) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    CPU_SECONDS.append(_children_cpu() - cpu)
    if result.returncode not in (0, 1):
        tail = (result.stdout + result.stderr).strip().splitlines()[-1:] or [""]
        return elapsed, f"FAILED (exit {result.returncode}): {tail[0][:160]}"
    tail = result.stdout.strip().splitlines()[-1:] or [""]  # navbuild -q: failures; mn: MN-OK or MN-FAILED
    return elapsed, tail[0][:160]


CPU_SECONDS: list[float] = []  # CPU time of each run (its processes), which a busy machine changes less


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one(tool: str, scratch: Path, mn_python: str | None) -> tuple[float, str]:
    if tool in ("navbuild", "navbuild-fp32"):
        config = project_copy(scratch, fp32_only=tool == "navbuild-fp32")
        return run([sys.executable, "-m", "navbuild.cli", "--config", str(config), "-q", "all"], scratch)
    config = project_copy(scratch, fp32_only=True)
    if tool == "script":
        return run([sys.executable, str(Path(__file__).resolve()), "--plain", str(config)], scratch)
    (scratch / "mn_run.py").write_text(MN_SCRIPT)
    return run([mn_python, str(scratch / "mn_run.py"), str(scratch), repr(models(config))], scratch)


class Busy:
    """``count`` processes spinning on the CPU while the block runs; stopped by their ids."""

    def __init__(self, count: int) -> None:
        self.count, self.processes = count, []

    def __enter__(self) -> "Busy":
        self.processes = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)]
        time.sleep(1.0)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def plain(config: Path) -> None:
    """The baseline a user writes by hand: export, load, time; no checks, no cache."""
    import numpy as np
    import onnxruntime
    import torch

    from navbuild.rule import call_entry

    root = config.parent
    torch.set_grad_enabled(False)
    for name, (entry, samples_entry, max_batch) in models(config).items():
        model = call_entry(root, entry).eval()
        sample = next(iter(call_entry(root, samples_entry)))
        sample = sample if isinstance(sample, torch.Tensor) else sample[0]
        one_row = sample[:1]
        out = root / f"plain-{name}"
        out.mkdir()
        runners = {}
        torch.jit.save(torch.jit.trace(model, one_row), out / "trace.pt")
        runners["torchscript-trace"] = torch.jit.load(out / "trace.pt").eval()
        torch.jit.save(torch.jit.script(model), out / "script.pt")
        runners["torchscript-script"] = torch.jit.load(out / "script.pt").eval()
        batch = torch.export.Dim("batch", min=1, max=max(2, max_batch))
        program = torch.export.export(model, (torch.cat([one_row, one_row]),), dynamic_shapes=({0: batch},))
        torch.export.save(program, out / "model.pt2")
        runners["torch-export"] = torch.export.load(out / "model.pt2").module()
        torch.onnx.export(model, (one_row,), out / "model.onnx", input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
        session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        runners["onnx"] = lambda x, s=session: s.run(None, {"x": x.numpy()})
        sizes = [1 << k for k in range(max_batch.bit_length()) if (1 << k) <= max_batch]
        for fmt, call in runners.items():
            figures = []
            for size in sizes:
                x = one_row.repeat(size, *([1] * (one_row.dim() - 1)))
                for _ in range(5):
                    call(x)
                times = []
                for _ in range(50):
                    started = time.perf_counter()
                    call(x)
                    times.append(time.perf_counter() - started)
                figures.append(f"{size}:{size / statistics.median(times):.0f}/s")
            print(name, fmt, " ".join(figures), flush=True)
    print(f"plain script done ({np.__name__} {np.__version__})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, default=2, help="processes spinning on the CPU in the loaded runs")
    parser.add_argument("--only", default="", help="comma-separated tools: navbuild, navbuild-fp32, script, mn")
    parser.add_argument("--mn-python", help="a Python with triton-model-navigator 0.14 (see the docstring)")
    parser.add_argument("--plain", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        plain(Path(args.plain))
        return
    tools = [t for t in (args.only.split(",") if args.only else ["navbuild", "navbuild-fp32", "script", "mn"]) if t]
    if "mn" in tools and not args.mn_python:
        print("mn: skipped (give --mn-python; the docstring says how to install Model Navigator 0.14)")
        tools.remove("mn")
    load_before = os.getloadavg()[0]  # other jobs on the machine: "quiet" is only as quiet as they let it be
    times: dict[tuple[str, str], float] = {}
    failed: set[tuple[str, str]] = set()  # crashed, or Model Navigator ended without a model
    with tempfile.TemporaryDirectory(prefix="navbuild-load-") as tmp:
        for condition in ("quiet", "loaded"):
            with (Busy(args.busy) if condition == "loaded" else _Nothing()):
                for tool in tools:
                    elapsed, last = one(tool, Path(tmp) / condition / tool, args.mn_python)
                    times[tool, condition] = elapsed
                    if last.startswith(("FAILED", "MN-FAILED")):
                        failed.add((tool, condition))
                    print(f"{condition:>6} {tool:<14} {elapsed:8.1f} s  (cpu {CPU_SECONDS[-1]:6.1f} s)  {last}",
                          flush=True)
    print(f"\nmachine: {os.cpu_count()} CPUs, load average before: {load_before:.1f}, after: "
          f"{os.getloadavg()[0]:.1f}; loaded = "
          f"{args.busy} busy processes")
    print(f"{'tool':<14} {'quiet s':>9} {'loaded s':>9} {'loaded/quiet':>13}")
    for tool in tools:
        quiet, loaded = times[tool, "quiet"], times[tool, "loaded"]
        goal = "  (goal <= 3x)" if tool == "navbuild" else ""
        broken = [c for c in ("quiet", "loaded") if (tool, c) in failed]
        note = f"  (failed: {', '.join(broken)}; see its line above)" if broken else ""
        print(f"{tool:<14} {quiet:9.1f} {loaded:9.1f} {loaded / quiet:12.2f}x{goal}{note}")
    for baseline in ("mn", "script"):
        if baseline in tools and "navbuild-fp32" in tools:
            ratios = [f"{c} {times['navbuild-fp32', c] / times[baseline, c]:.2f}x"
                      + (" (it failed)" if (baseline, c) in failed else "") for c in ("quiet", "loaded")]
            print(f"navbuild-fp32 / {baseline}: {', '.join(ratios)}" + ("  (goal <= 0.5x)" if baseline == "mn" else ""))


class _Nothing:
    def __enter__(self) -> "_Nothing":
        return self

    def __exit__(self, *exc) -> None:
        pass


if __name__ == "__main__":
    main()
