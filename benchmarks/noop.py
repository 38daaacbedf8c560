"""How long ``navbuild all`` takes when everything is cached: each project (the repository's own
example project by default; ``--config`` again for more, e.g. the examples/ projects), built once (if
it is not yet), then run again ``--runs`` times in fresh processes.

    PYTHONPATH=. python benchmarks/noop.py [--runs 9] [--config navbuild.toml --config examples/onnx_file]

Prints each run's wall-clock seconds, then the minimum and the median, and the CPU seconds (user +
system) of the median run, per project: on a machine that others load, the wall clock shows their
load, the CPU time much less. The target is about a quarter of a second; a no-op run hashes the
declared and the discovered sources of every model (docs/config.md, "The model's code").
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time


# as an installed navbuild runs: from its compiled modules (with PYTHONDONTWRITEBYTECODE set, as on
# some CI machines, every run compiles navbuild's modules again, about 0.13 s more)
WITH_BYTECODE = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def navbuild_all(config: str) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one ``navbuild all``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", config, "-q", "all"], check=True,
                   env=WITH_BYTECODE)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--config", action="append", help="a navbuild.toml or its folder (repeat for more)")
    args = parser.parse_args()
    for config in args.config or ["navbuild.toml"]:
        navbuild_all(config)  # builds what is missing; afterwards every run is a no-op
        runs = [navbuild_all(config) for _ in range(args.runs)]
        walls, cpus = [wall for wall, _ in runs], [cpu for _, cpu in runs]
        print(f"{config}: runs (s): " + " ".join(f"{wall:.3f}" for wall in walls))
        print(f"{config}: no-op navbuild all: min {min(walls):.3f} s, median {statistics.median(walls):.3f} s wall; "
              f"CPU min {min(cpus):.3f} s, median {statistics.median(cpus):.3f} s")


if __name__ == "__main__":
    main()
