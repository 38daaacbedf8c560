"""Which AOTInductor load path survives on this machine? Each variant compiles a tiny model and
loads it in a fresh child process; a native crash shows up as the child's signal.

Usage: python benchmarks/aoti_probe.py [--device cuda]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

COMPILE = textwrap.dedent("""
    import sys, torch
    from torch._inductor import aoti_compile_and_package
    device, path, configs = sys.argv[1], sys.argv[2], eval(sys.argv[3])
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).to(device).eval()
    program = torch.export.export(model, (torch.randn(2, 8, device=device),))
    aoti_compile_and_package(program, package_path=path, inductor_configs=configs)
""")

LOADERS = {
    "aoti_load_package": "from torch._inductor import aoti_load_package as load; m = load(path)",
    "single_threaded": "from torch._inductor import aoti_load_package as load; m = load(path, run_single_threaded=True)",
    "loader_class": ("from torch._inductor.package.package import AOTICompiledModel; "
                     "m = AOTICompiledModel(torch._C._aoti.AOTIModelPackageLoader(path, 'model', False, 1, -1))"),
}
LOAD = textwrap.dedent("""
    import sys, torch
    device, path = sys.argv[1], sys.argv[2]
    {loader}
    print("ran:", tuple(m(torch.randn(3, 8, device=device)).shape))
""")

VARIANTS = {
    "default": {},
    "weights outside the .so": {"aot_inductor.package_constants_in_so": False},
    "no freezing": {"freezing": False},
}


def run(code: str, *args: str, timeout: int = 300) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode < 0:
        return f"killed by signal {-result.returncode}"
    if result.returncode:
        return "error: " + (result.stderr.strip().splitlines() or ["?"])[-1][:150]
    return result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for variant, configs in VARIANTS.items():
            path = str(Path(tmp) / f"{len(variant)}.pt2")
            compiled = run(COMPILE, args.device, path, repr(configs))
            if compiled:
                print(f"{variant}: compile {compiled}")
                continue
            for loader, code in LOADERS.items():
                print(f"{args.device} | {variant:26} | {loader:18} | {run(LOAD.format(loader=code), args.device, path)}",
                      flush=True)


if __name__ == "__main__":
    main()
