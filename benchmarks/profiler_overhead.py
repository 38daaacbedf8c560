"""How much the profiler costs and how repeatable it is, next to torch.utils.benchmark.Timer.

    python benchmarks/profiler_overhead.py [--device cuda] [--timer wall|cuda-events] [--repeats 10]

Prints, for a trivial model (two small Linear layers):
  * the timing floor: the p50 the profiler reports for a no-op callable (its per-call overhead);
  * a default profile (the sweep with default settings): wall time per batch size and in total;
  * the spread of repeated profiles of the same target at batch 1 (coefficient of variation of
    p50 and mean across repeats), next to the spread of repeated torch.utils.benchmark.Timer
    measurements of the same callable, and the two central figures side by side.

On CUDA every profiled call is followed by torch.cuda.synchronize() (or timed with CUDA events
with --timer cuda-events): that is latency. torch's Timer synchronizes only around blocks of
calls, so on a GPU its figure is closer to pipelined throughput and is expected to be lower.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from navbuild.measure.profiling import ProfileConfig, ProgressEvent, profile  # noqa: E402


def cv(values: list[float]) -> float:
    mean = statistics.fmean(values)
    return statistics.pstdev(values) / mean if mean else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--timer", default="wall", choices=("wall", "cuda-events"))
    parser.add_argument("--repeats", type=int, default=10, help="repeated profiles for the spread")
    parser.add_argument("--width", type=int, default=256, help="features of the trivial model")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 steadies a shared CPU)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args()

    import torch
    from torch.utils.benchmark import Timer

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = torch.nn.Sequential(torch.nn.Linear(args.width, args.width), torch.nn.ReLU(),
                                torch.nn.Linear(args.width, args.width)).eval().to(device)
    x1 = torch.randn(1, args.width, device=device)

    def fn(x):
        return model(x)

    figures: dict = {"device": args.device, "timer": args.timer, "torch": torch.__version__,
                     "threads": torch.get_num_threads(),
                     "model": f"Linear({args.width})-ReLU-Linear({args.width})"}
    if args.device.startswith("cuda"):
        figures["gpu"] = torch.cuda.get_device_name(device)
    print(f"navbuild profiler overhead: {figures['model']} on {figures.get('gpu', args.device)}, "
          f"timer={args.timer}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    with torch.inference_mode():
        # 1. the floor: a callable that does nothing (the cost of timing one call)
        floor = profile(lambda x: None, [x1], ProfileConfig(batch_sizes=(1,)), device=args.device)
        figures["noop_p50_us"] = floor.points[0].p50_ms * 1e3
        print(f"\ntiming floor (no-op callable): p50 {floor.points[0].p50_ms * 1e3:.3f} us per call, "
              f"{floor.points[0].runs} runs per 3 windows")

        # 2. a default profile: the sweep, per batch size wall time
        stamps: dict[int, float] = {}
        durations: dict[int, float] = {}

        def on_event(event: ProgressEvent) -> None:
            if event.kind == "start":
                stamps[event.batch_size] = time.perf_counter()
            elif event.kind == "point":
                durations[event.batch_size] = time.perf_counter() - stamps[event.batch_size]

        default_config = ProfileConfig(timer=args.timer)
        result = profile(fn, [x1], default_config, progress=on_event)
        print(f"\ndefault profile: {len(result.points)} batch sizes, stop: {result.stop_reason}, "
              f"total {result.wall_s:.2f} s ({result.wall_s / max(1, len(result.points)):.3f} s per point)")
        print(f"  {'batch':>5} {'wall s':>7} {'windows':>7} {'runs':>7} {'p50 ms':>9} {'p95 ms':>9} "
              f"{'samples/s':>11} stable")
        for p in result.points:
            print(f"  {p.batch_size:>5} {durations[p.batch_size]:>7.3f} {p.windows:>7} {p.runs:>7} "
                  f"{p.p50_ms:>9.4f} {p.p95_ms:>9.4f} {p.throughput:>11,.0f} {'yes' if p.stable else p.note}")
        figures["default_profile"] = {"total_s": result.wall_s, "points": len(result.points),
                                      "per_point_s": {b: round(d, 4) for b, d in durations.items()},
                                      "result": result.to_dict()}

        # 3. spread of repeated profiles at batch 1, next to torch.utils.benchmark.Timer
        one = ProfileConfig(batch_sizes=(1,), timer=args.timer)
        p50s, means, walls = [], [], []
        for _ in range(args.repeats):
            r = profile(fn, [x1], one)
            p50s.append(r.points[0].p50_ms)
            means.append(r.points[0].mean_ms)
            walls.append(r.wall_s)
        timer = Timer(stmt="fn(x)", globals={"fn": fn, "x": x1})
        torch_medians, torch_means = [], []
        for _ in range(args.repeats):
            m = timer.blocked_autorange(min_run_time=0.2)
            torch_medians.append(m.median * 1e3)
            torch_means.append(m.mean * 1e3)

    print(f"\nrepeatability at batch 1 over {args.repeats} repeats:")
    print(f"  {'':28} {'central ms':>11} {'CV':>7}")
    print(f"  {'navbuild profile p50':28} {statistics.median(p50s):>11.5f} {cv(p50s):>7.2%}")
    print(f"  {'navbuild profile mean':28} {statistics.median(means):>11.5f} {cv(means):>7.2%}")
    print(f"  {'torch Timer median':28} {statistics.median(torch_medians):>11.5f} {cv(torch_medians):>7.2%}")
    print(f"  {'torch Timer mean':28} {statistics.median(torch_means):>11.5f} {cv(torch_means):>7.2%}")
    gap = statistics.median(means) - statistics.median(torch_means)
    print(f"  profile mean - torch mean: {gap * 1e3:+.2f} us per call "
          f"(per-call timing and synchronization; one profile point took {statistics.median(walls):.3f} s)")
    figures["repeat"] = {"repeats": args.repeats, "profile_p50_ms": p50s, "profile_mean_ms": means,
                         "profile_wall_s": walls, "torch_timer_median_ms": torch_medians,
                         "torch_timer_mean_ms": torch_means, "cv_profile_p50": cv(p50s),
                         "cv_profile_mean": cv(means), "cv_torch_median": cv(torch_medians)}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
