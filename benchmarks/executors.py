"""Cold builds of one project by each executor: local ``-j 1``, local ``-j N``, and Ray.

    python benchmarks/executors.py                        # the repository's navbuild.toml, all targets
    python benchmarks/executors.py --jobs 4               # another -j
    python benchmarks/executors.py --ray ray:auto         # a running cluster instead of a local Ray
    python benchmarks/executors.py --formats onnx,torch-compile,aoti --skip-ray   # long builds, fp32

Each run builds in a fresh copy of the repository (its committed HEAD, ``git archive``) with its own
empty store; the Ray run gets an empty ``file://`` remote cache (the executor's shared medium) and,
without --ray, a local Ray instance (one CPU slot per core) started by navbuild itself (its start
is part of the figure, as a user sees it). Figures are the wall time of the ``navbuild`` process; ratios
are to ``-j 1`` of the same run of this script. The machine's core count bounds what -j can give.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fresh_copy(parent: Path, name: str, formats: list[str] | None) -> Path:
    folder = parent / name
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    if formats:  # every model gets these formats, fp32 only
        config = folder / "navbuild.toml"
        text = re.sub(r'^formats = \[.*\]$', f"formats = {json.dumps(formats)}", config.read_text(), flags=re.M)
        config.write_text(re.sub(r'^precisions = \[.*\]$', 'precisions = ["fp32"]', text, flags=re.M))
    return folder


def build(folder: Path, words: list[str], env: dict[str, str]) -> tuple[float, dict[str, dict]]:
    report = folder / "run.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "navbuild.cli", "-q", "--json", str(report), "all", *words],
                          cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"navbuild all {' '.join(words)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return seconds, json.loads(report.read_text())


def counts(records: dict[str, dict]) -> str:
    by: dict[str, int] = {}
    for record in records.values():
        by[record["status"]] = by.get(record["status"], 0) + 1
    nodes = {r.get("node") for r in records.values()} - {None}
    return ", ".join(f"{n} {s}" for s, n in sorted(by.items())) + (f"; {len(nodes)} node(s)" if nodes else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--ray", default="ray", help="the --executor word (default: a local Ray instance)")
    parser.add_argument("--skip-ray", action="store_true")
    parser.add_argument("--formats", help="comma-separated formats for every model, fp32 only (default: as committed)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="navbuild-executors-") as tmp:
        tmp_path = Path(tmp)
        env["NAVBUILD_RAY_STORE"] = str(tmp_path / "ray-node-stores")
        runs = [("local -j 1", []), (f"local -j {args.jobs}", ["-j", str(args.jobs)])]
        if not args.skip_ray:
            runs.append((f"ray ({args.ray})", ["--executor", args.ray, "--remote-cache",
                                               f"file://{tmp_path / 'ray-cache'}"]))
        figures = []
        for index, (label, words) in enumerate(runs):
            formats = args.formats.split(",") if args.formats else None
            seconds, records = build(fresh_copy(tmp_path, f"run{index}", formats), words, env)
            figures.append((label, seconds, counts(records)))
            print(f"{label:24} {seconds:7.1f} s   {counts(records)}", flush=True)
        base = figures[0][1]
        print(f"\nmachine: {os.cpu_count()} cores; load average now {os.getloadavg()[0]:.2f}")
        for label, seconds, _ in figures[1:]:
            print(f"{label} / local -j 1: {seconds / base:.2f}x")


if __name__ == "__main__":
    main()
