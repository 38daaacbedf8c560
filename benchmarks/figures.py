"""Per-target figures from a build's records (``navbuild ... --json run.json``).

Usage: python benchmarks/figures.py run.json [--baseline torch]
Prints, per artifact: status, worst correctness error, p50 latency at the smallest batch,
throughput at the largest batch, and the ratio of that throughput to the baseline target's
(torch eager fp32 by default) measured in the same run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def figures(records: dict) -> list[dict]:
    rows = []
    for name, record in records.items():
        if name.endswith((".check", ".profile")) or name.split(":", 1)[1] in ("samples", "reference"):
            continue
        check = records.get(f"{name}.check") or {}
        profile = records.get(f"{name}.profile") or {}
        points = sorted((profile.get("metadata") or {}).get("points", []), key=lambda p: p["batch_size"])
        outputs = ((check.get("correctness") or {}).get("outputs") or {}).values()
        rows.append({
            "target": name, "status": record["status"], "reason": record.get("reason") or check.get("reason") or "",
            "max_abs": max((o.get("max_abs", 0.0) for o in outputs), default=None),
            "small": points[0] if points else None, "large": points[-1] if points else None,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("records", type=Path)
    parser.add_argument("--baseline", default="torch", help="target short name the ratios are relative to")
    args = parser.parse_args()
    rows = figures(json.loads(args.records.read_text()))
    base = {}
    for row in rows:
        model, short = row["target"].split(":", 1)
        if short == args.baseline and row["large"]:
            base[model] = row["large"]["throughput"]
    print(f"{'target':34} {'status':8} {'max abs err':>11} {'p50 ms @bs':>16} {'samples/s @bs':>18} {'x eager':>8}")
    for row in rows:
        model = row["target"].split(":", 1)[0]
        small, large = row["small"], row["large"]
        err = f"{row['max_abs']:.2e}" if row["max_abs"] is not None else "-"
        lat = f"{small['p50_ms']:.3f} @{small['batch_size']}" if small else "-"
        thr = f"{large['throughput']:.1f} @{large['batch_size']}" if large else "-"
        ratio = f"{large['throughput'] / base[model]:.2f}" if large and base.get(model) else "-"
        print(f"{row['target']:34} {row['status']:8} {err:>11} {lat:>16} {thr:>18} {ratio:>8}"
              + (f"  {row['reason'][:90]}" if row["status"] != "built" and row["status"] != "cached" else ""))


if __name__ == "__main__":
    main()
