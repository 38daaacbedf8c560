"""Every GPU of a machine builds: one project of small models, compiled, built cold on 1, 2 and all cards.

    PYTHONPATH=. python3 benchmarks/multi_gpu.py                  # 8 models, torchscript-trace + torch-compile fp16
    PYTHONPATH=. python3 benchmarks/multi_gpu.py --models 16 --cards 1,4,8 --formats torch-compile,aoti

Each row builds the same project (``--models`` small CNNs, each its own weights, ``device = "cuda"``)
cold, in a fresh folder with an empty store (so with empty inductor and Triton caches, which live in
the store's rule cache), with ``CUDA_VISIBLE_DEVICES`` naming the first K cards: navbuild's default,
one GPU target per card at once (``--gpu-jobs`` unset), each in a worker pinned to its card; CPU
targets with ``-j`` (``--jobs``, the same for every row). It prints, per card count: the wall time
of ``navbuild all`` as a user sees it, the speed-up over one card, how many targets each card built,
checked and profiled, and whether every artifact's digest equals the one-card build's; then which
card built which artifact. ``--out FILE`` writes it all as JSON too.

On one GPU only the one-card row runs; on a machine without a GPU the project builds on the CPU in
fp32 (one row, "cpu"), which checks the script, not the cards. No network: navbuild's own rule families
are registered for the child processes from pyproject.toml when this checkout is not installed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = '''import torch


def build_model():
    torch.manual_seed({seed})
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, {width}, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d({width}, {width}, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear({width}, 10)).eval()


def make_samples():
    import numpy as np

    rng = np.random.default_rng({seed})
    return [rng.standard_normal((4, 3, 32, 32)).astype(np.float32) for _ in range(2)]
'''

CONFIG = '''[project]
name = "multi-gpu"
device = "{device}"

[profile]
batch_sizes = [32]
budget_s = {budget}

[correctness.precision.fp16]
atol = 5e-2
rtol = 5e-2
'''

MODEL_TABLE = '''
[models.m{index}]
framework = "torch"
entry = "models/m{index}.py:build_model"
samples = "models/m{index}.py:make_samples"
inputs = ["image"]
outputs = ["logits"]
max_batch_size = 32

[models.m{index}.targets]
formats = {formats}
precisions = ["{precision}"]
'''


def write_project(folder: Path, models: int, formats: list[str], precision: str, device: str, budget: float) -> Path:
    (folder / "models").mkdir(parents=True)
    text = CONFIG.format(device=device, budget=budget)
    for index in range(models):
        width = 16 + 8 * (index % 4)  # four sizes, each model its own weights
        (folder / "models" / f"m{index}.py").write_text(MODEL.format(seed=index, width=width))
        text += MODEL_TABLE.format(index=index, formats=json.dumps(formats), precision=precision)
        for compiled in {"torch-compile", "aoti"} & set(formats):  # one batch bucket: one compile a target
            text += f"\n[models.m{index}.targets.{compiled}]\nbuckets = [32]\n"
    (folder / "navbuild.toml").write_text(text)
    return folder / "navbuild.toml"


def registered_families(scratch: Path) -> list[str]:
    """An import path that registers this checkout's rule families (the ``navbuild.rules`` entry points
    of pyproject.toml) when navbuild is not installed here; empty when it is."""
    if any(ep.dist and ep.dist.name == "navbuild" for ep in metadata.entry_points(group="navbuild.rules")):
        return []
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dist = scratch / "site" / f"navbuild-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: navbuild\nVersion: {project['version']}\n")
    points = project["entry-points"]["navbuild.rules"]
    (dist / "entry_points.txt").write_text("[navbuild.rules]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
    return [str(scratch / "site")]


def build(config: Path, cards: list[int] | None, jobs: int, env: dict[str, str]) -> tuple[float, dict, str]:
    run_env = dict(env)
    if cards is not None:
        run_env.update(CUDA_VISIBLE_DEVICES=",".join(map(str, cards)), CUDA_DEVICE_ORDER="PCI_BUS_ID")
    report = config.parent / "records.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "navbuild.cli", "--config", str(config), "-q", "--json", str(report),
                           "all", "-j", str(jobs)], env=run_env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    records = json.loads(report.read_text()) if report.exists() else {}
    if done.returncode not in (0, 1) or not records:
        sys.exit(f"navbuild exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, records, done.stdout + done.stderr


def is_artifact(name: str) -> bool:
    return not name.endswith((".check", ".profile"))


def per_card(records: dict[str, dict]) -> dict[int, dict[str, int]]:
    """Card -> how many builds, checks and profiles ran on it."""
    found: dict[int, dict[str, int]] = {}
    for name, record in records.items():
        if record.get("gpu") is None:
            continue
        kind = "profile" if name.endswith(".profile") else "check" if name.endswith(".check") else "build"
        found.setdefault(record["gpu"], {"build": 0, "check": 0, "profile": 0})[kind] += 1
    return dict(sorted(found.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--formats", default="torchscript-trace,torch-compile")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--cards", default=None, help="card counts to run (default: 1, 2 and all)")
    parser.add_argument("--jobs", type=int, default=2, help="-j: CPU targets at once, every row")
    parser.add_argument("--budget", type=float, default=1.0, help="[profile] budget_s per target")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    from navbuild.engine import fingerprint  # no framework: nvidia-ml-py or nvidia-smi

    gpus = fingerprint.gpus()
    names = {gpu["index"]: gpu["name"] for gpu in gpus}
    print("machine:", ", ".join(f"GPU {i}: {n}" for i, n in names.items()) or "no GPU (rows on the CPU)",
          f"| {os.cpu_count()} CPUs", flush=True)
    counts = [int(c) for c in args.cards.split(",")] if args.cards else sorted({1, min(2, len(gpus)), len(gpus)})
    counts = [c for c in counts if 0 < c <= len(gpus)] if gpus else [0]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]

    rows = []
    with tempfile.TemporaryDirectory(prefix="navbuild-multi-gpu-") as scratch_name:
        scratch = Path(scratch_name)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), *registered_families(scratch), *filter(None, [os.environ.get("PYTHONPATH")])])}
        for count in counts:
            config = write_project(scratch / f"cards-{count}", args.models, formats,
                                   args.precision if count else "fp32", "cuda" if count else "cpu", args.budget)
            cards = [gpu["index"] for gpu in gpus[:count]] if count else None
            seconds, records, output = build(config, cards, args.jobs, env)
            rows.append({"cards": count, "seconds": seconds, "records": records, "output": output})
            print(f"{count or 'cpu'} card(s): {seconds:.1f} s", flush=True)

    first = rows[0]["records"]
    table = []
    print(f"\n{args.models} models, formats {', '.join(formats)} ({args.precision if gpus else 'fp32'}), -j {args.jobs}, "
          f"profile budget {args.budget:g} s")
    print(f"{'cards':>5} | {'wall s':>7} | {'speed-up':>8} | {'statuses':<28} | {'digests = 1 card':<16} | "
          f"per card: builds/checks/profiles")
    for row in rows:
        records = row["records"]
        statuses: dict[str, int] = {}
        for record in records.values():
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1
        artifacts = [n for n in records if is_artifact(n) and records[n]["status"] == "built"]
        same = [n for n in artifacts if records[n]["digest"] == first.get(n, {}).get("digest")]
        cards_text = "; ".join(f"{card}: {c['build']}/{c['check']}/{c['profile']}"
                               for card, c in per_card(records).items()) or "-"
        line = {"cards": row["cards"], "seconds": round(row["seconds"], 1),
                "speedup": round(rows[0]["seconds"] / row["seconds"], 2), "statuses": statuses,
                "digests_equal": f"{len(same)}/{len(artifacts)}", "per_card": per_card(records),
                "built_on": {n: records[n].get("gpu") for n in artifacts if records[n].get("gpu") is not None}}
        table.append(line)
        status_text = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        print(f"{row['cards'] or 'cpu':>5} | {row['seconds']:7.1f} | {line['speedup']:7.2f}x | {status_text:<28} | "
              f"{line['digests_equal']:<16} | {cards_text}")
    for line in table:  # which card built what
        if line["built_on"]:
            print(f"\n{line['cards']} card(s), artifacts by card:")
            by_card: dict[int, list[str]] = {}
            for name, card in line["built_on"].items():
                by_card.setdefault(card, []).append(name)
            for card, built in sorted(by_card.items()):
                print(f"  GPU {card} ({names.get(card, '?')}): {', '.join(sorted(built))}")
    failed = {n: r.get("reason") for row in rows for n, r in row["records"].items() if r["status"] == "failed"}
    for name, reason in sorted(failed.items())[:10]:
        print(f"failed: {name}: {reason}")
    if args.out:
        args.out.write_text(json.dumps({"machine": names, "cpus": os.cpu_count(), "models": args.models,
                                        "formats": formats, "precision": args.precision, "jobs": args.jobs,
                                        "rows": table}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
