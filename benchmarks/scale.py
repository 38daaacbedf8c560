"""How navbuild's own costs grow with the number of targets: `list`, `status` and a no-op `all`.

A synthetic project of N toy models x 10 targets (samples, reference, four artifacts, their four
checks) built with a cheap rule family that registers through the ``navbuild.rules`` entry point
like a third party's (``tests/plugins``): each build writes one small file, so what is measured is
navbuild itself (config, graph, keys, store, doit, summary). Each command runs as a fresh process,
as users run it, with its output going to a file (the summary is still rendered).

    PYTHONPATH=. python benchmarks/scale.py                      # 20, 200 and 2,000 targets
    PYTHONPATH=. python benchmarks/scale.py --models 2,20,200,400 --repeat 5

Prints one row per size: the cold build (-j 2) once, then the best of --repeat runs of a no-op
`navbuild all`, `navbuild list` and `navbuild status`, in seconds. Goal: the no-op on 2,000
targets in 3 s or less on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.plugins import install, synthetic_project  # noqa: E402

TARGETS_PER_MODEL = 10


def timed(config: Path, env: dict[str, str], *words: str) -> float:
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        result = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), *words],
                                stdout=sink, stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"navbuild {' '.join(words)} exited {result.returncode}:\n{result.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="2,20,200", help="comma-separated model counts (10 targets each)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command; the best is shown")
    parser.add_argument("--jobs", type=int, default=2, help="-j of the cold build")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="navbuild-scale-") as folder:
        base = Path(folder)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(install(base / "plugin"))])}
        print(f"navbuild scale benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"best of {args.repeat}")
        print(f"| {'targets':>7} | {'cold -j ' + str(args.jobs):>10} | {'no-op all':>9} | {'list':>6} | {'status':>6} |")
        print(f"|{'-' * 9}|{'-' * 12}|{'-' * 11}|{'-' * 8}|{'-' * 8}|")
        for models in (int(n) for n in args.models.split(",")):
            config = synthetic_project(base / f"p{models}", models)
            cold = timed(config, env, "all", "-q", "-j", str(args.jobs))
            best = {words: min(timed(config, env, *words.split()) for _ in range(args.repeat))
                    for words in ("all", "list", "status")}
            print(f"| {models * TARGETS_PER_MODEL:>7} | {cold:>10.2f} | {best['all']:>9.2f} | {best['list']:>6.2f} | "
                  f"{best['status']:>6.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
