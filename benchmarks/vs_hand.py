"""navbuild's picks beside the hand-written torch a user would try, timed the same way in one run.

Usage (repository root):
    python benchmarks/vs_hand.py                       # GPU: resnet50 and encoder of examples/navbuild-gpu.toml
    python benchmarks/vs_hand.py --quick               # CPU, tiny settings: cnn and encoder, batch 4
    python benchmarks/vs_hand.py --models resnet50 --budget-s 420 --json out.json

Per model, in this order:
1. navbuild, cold: a copy of the model's project (its files and its table of the config) in a fresh
   folder, so the store and the compile caches start empty; ``navbuild <targets>`` in a subprocess,
   timed. The default targets are ``<model>:torch`` and every ``torch-compile-fp16`` variant of the
   model (``--targets`` changes them). Then the strategies' picks (max-throughput, min-latency) are
   read from the build's status, loaded through their runners with the build's cache folder, and
   timed here.
2. Hand-written, in this process, torch defaults (``--hand-cudnn-benchmark`` turns cuDNN's autotuner
   on for them too): eager fp32; eager fp16 channels-last (channels-last only for 4-D inputs);
   ``torch.compile`` fp16 in modes default and max-autotune-no-cudagraphs, compiled afresh for each
   measured batch (dynamo reset between) in an empty inductor cache of their own.
3. navbuild, warm: the same command again (every target cached), then the picks again with
   ``--force-downstream`` (built, checked and profiled again on the now warm compile cache): the
   graphs compiled must be 0.

Both sides are timed by one function: per call ``synchronize``, ``perf_counter``, the call,
``synchronize``; warm-up calls first; the median of the timed calls. Throughput is the batch over
that median. With ``--budget-s`` the stages that would start after the budget is spent are skipped
and say so. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HAND_MODES = ("default", "max-autotune-no-cudagraphs")
STRATEGIES = ("max-throughput", "min-latency")


# -- timing: one method for both sides ---------------------------------------------------------------
def median_latency_s(call: Callable[[], Any], sync: Callable[[], None], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        call()
    sync()
    times = []
    for _ in range(runs):
        sync()
        started = time.perf_counter()
        call()
        sync()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class Clock:
    def __init__(self, budget_s: float | None) -> None:
        self.started, self.budget_s = time.perf_counter(), budget_s

    def left(self) -> float:
        return float("inf") if self.budget_s is None else self.budget_s - (time.perf_counter() - self.started)


# -- the project copy and navbuild runs --------------------------------------------------------------
def copy_project(config: Path, model: str, work: Path, overrides: dict[str, Any]) -> Path:
    """``work/navbuild.toml`` holding only ``model`` (with its files copied alongside), store and
    outputs inside ``work``."""
    data = tomllib.loads(config.read_text())
    table = data["models"][model]
    root = config.parent
    files = {table["entry"].rsplit(":", 1)[0], table["samples"].rsplit(":", 1)[0], *table.get("sources", [])}
    for pattern in files:
        for path in root.glob(pattern):
            dest = work / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    device = overrides.get("device", data["project"].get("device", "cpu"))
    project = {"project": {"name": f"vs-hand-{model}", "device": device,
                           "store": ".navbuild", "out": "navbuild-out"},
               "profile": {**data.get("profile", {}), **overrides.get("profile", {})},
               "correctness": data.get("correctness", {}), "models": {model: table}}
    for fmt, options in overrides.get("formats", {}).items():
        table.setdefault("targets", {}).setdefault(fmt, {}).update(options)
    if "max_batch_size" in overrides:
        table["max_batch_size"] = overrides["max_batch_size"]
    path = work / "navbuild.toml"
    path.write_text(to_toml(project))
    return path


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Enough TOML for a navbuild.toml: tables of strings, numbers, booleans and lists of them."""
    scalars = [f"{toml_key(key)} = {json.dumps(value)}" for key, value in data.items() if not isinstance(value, dict)]
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(line + "\n" for line in scalars)
    for key, value in data.items():
        if isinstance(value, dict):
            text += "\n" + to_toml(value, f"{prefix}.{toml_key(key)}" if prefix else toml_key(key))
    return text


def toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key)


def navbuild(config: Path, words: list[str], log: Path, timeout: float) -> tuple[float, int | None, dict]:
    """One ``navbuild`` run in a subprocess of its own session (compile workers die with it)."""
    report = log.with_suffix(".json")
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "navbuild.cli", "-c", str(config), "--json", str(report),
                                 *words], stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env,
                                start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
    seconds = time.perf_counter() - started
    return seconds, code, json.loads(report.read_text()) if report.exists() else {}


def graphs_compiled(records: dict, out: Path) -> int:
    """Graphs that inductor compiled in a run: the builds, checks and profiles that ran (cached ones
    did nothing). A profile's count is in its profile.json (``runner_info``)."""
    total = 0
    for name, record in records.items():
        if record.get("status") != "built":
            continue
        total += int((record.get("metadata") or {}).get("graphs_compiled", 0) or 0)
        total += int(((record.get("correctness") or {}).get("runner_info") or {}).get("graphs_compiled", 0) or 0)
        if name.endswith(".profile"):
            model, short = name.removesuffix(".profile").split(":", 1)
            profile = out / model / short / "profile.json"
            if profile.is_file():
                total += int(json.loads(profile.read_text()).get("runner_info", {}).get("graphs_compiled", 0) or 0)
    return total


def default_targets(config: Path, model: str) -> list[str]:
    from navbuild.engine.project import open_project

    graph = open_project(config).graph
    return [f"{model}:torch"] + [name for name in graph.aliases.get("torch-compile-fp16", [])
                                 if name.startswith(f"{model}:")]


# -- navbuild's picks, timed here ----------------------------------------------------------------------
def picks(config: Path, model: str) -> dict[str, dict[str, Any]]:
    """Each strategy's pick with what is needed to run it: target, runner, folder, cache folder."""
    from navbuild.deploy import status
    from navbuild.engine import fingerprint
    from navbuild.engine.project import open_project
    from navbuild.hashing import digest_value

    session = open_project(config)
    try:
        collected, figures = status.collect_all(session, [model])
        entry, measured = collected["models"][model], figures["models"][model]  # profiles are in the figures
        chosen = {}
        for strategy in STRATEGIES:
            short = entry["selected"].get(strategy)
            if not short:
                continue
            target = session.graph.targets[f"{model}:{short}"]
            cache = None
            if target.rule.device_bound:
                cache = session.store.rule_cache_dir(target.rule.name, digest_value(fingerprint.device(target.device)))
            chosen[strategy] = {"target": target.name, "runner": target.rule.runner, "dir": session.out_dir(target),
                                "cache_dir": cache, "spec": target.spec, "device": target.device,
                                "precision": target.precision, "profile": measured["targets"][short].get("profile")}
        return chosen
    finally:
        session.close()


def time_runner(pick: dict[str, Any], feeds: dict[int, dict], sync: Callable[[], None], args) -> dict[str, float]:
    from navbuild.engine.registry import default_registry

    runner = default_registry().runner(pick["runner"])(pick["dir"], pick["spec"], pick["device"], pick["precision"])
    runner.cache_dir = pick["cache_dir"]
    figures = {}
    with runner:
        figures["graphs_compiled_on_load"] = runner.runtime_info().get("graphs_compiled", 0)
        for batch, feed in feeds.items():
            prepared = runner.prepare(feed)
            latency = median_latency_s(lambda: runner.run_prepared(prepared), runner.synchronize,
                                       args.warmup, args.runs)
            figures[f"latency_ms@{batch}"] = latency * 1e3
            figures[f"throughput@{batch}"] = batch / latency
    return figures


# -- hand-written ---------------------------------------------------------------------------------------
def hand_rows(model_fn: Callable[[], Any], sample: dict, args, clock: Clock) -> list[dict[str, Any]]:
    import torch

    device = args.device
    names = list(sample)
    image_input = any(array.ndim == 4 and array.dtype.kind == "f" for array in sample.values())
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []

    def inputs(batch: int, dtype: Any, channels_last: bool) -> tuple:
        tensors = []
        for name in names:
            t = torch.from_numpy(tile(sample[name], batch)).to(device)
            if t.is_floating_point():
                t = t.to(dtype)
                if channels_last and t.dim() == 4:
                    t = t.contiguous(memory_format=torch.channels_last)
            tensors.append(t)
        return tuple(tensors)

    def measure(label: str, make: Callable[[], Any], dtype: Any, channels_last: bool, compiled: str | None) -> None:
        row: dict[str, Any] = {"row": label, "compile_s": {}}
        for batch in args.hand_batches or (args.batch, 1):
            if clock.left() < args.stage_reserve_s:
                row.setdefault("skipped", f"time budget spent before batch {batch}")
                continue
            if compiled:
                torch._dynamo.reset()  # a fresh compile, warmed at the measured batch only
            module = make()
            if channels_last:
                module = module.to(memory_format=torch.channels_last)
            fn = torch.compile(module, mode=compiled) if compiled else module
            args_ = inputs(batch, dtype, channels_last)
            with torch.inference_mode():
                started = time.perf_counter()
                fn(*args_)
                sync()
                row["compile_s"][batch] = time.perf_counter() - started
                latency = median_latency_s(lambda: fn(*args_), sync, args.warmup, args.runs)
            row[f"latency_ms@{batch}"] = latency * 1e3
            row[f"throughput@{batch}"] = batch / latency
        rows.append(row)
        print_row(row, args.batch)

    half = torch.float16
    measure("eager fp32", lambda: model_fn().float().to(device).eval(), torch.float32, False, None)
    measure("eager fp16" + (" channels-last" if image_input else ""), lambda: model_fn().to(device).half().eval(),
            half, image_input, None)
    for mode in args.hand_modes:
        measure(f"torch.compile fp16 {mode}", lambda: model_fn().to(device).half().eval(), half, False, mode)
    return rows


def tile(array: Any, batch: int) -> Any:
    import numpy as np

    return np.take(array, np.arange(batch) % array.shape[0], axis=0)


# -- printing -------------------------------------------------------------------------------------------
def print_row(row: dict[str, Any], batch: int) -> None:
    thr = row.get(f"throughput@{batch}")
    lat = row.get("latency_ms@1")
    compile_s = row.get("compile_s") or {}
    compile_text = "/".join(f"{compile_s[b]:.1f}" for b in (batch, 1) if b in compile_s) or "-"
    if "graphs_compiled_on_load" in row:
        compile_text = f"{row['graphs_compiled_on_load']} compiled"
    print(f"  {row['row'][:58]:58} {compile_text:>13} {fmt(thr, '{:,.0f}'):>12} {fmt(lat, '{:.3f}'):>10}"
          + (f"   ({row['skipped']})" if row.get("skipped") else ""), flush=True)


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def report(model: str, rows: list[dict], nav: dict[str, dict], builds: dict[str, Any], batch: int) -> dict[str, Any]:
    compiled_hand = [r for r in rows if r["row"].startswith("torch.compile") and r.get(f"throughput@{batch}")]
    best_compile = max(compiled_hand, key=lambda r: r[f"throughput@{batch}"], default=None)
    eager32 = next((r for r in rows if r["row"] == "eager fp32"), {})
    best_latency = min((r for r in rows if r.get("latency_ms@1")), key=lambda r: r["latency_ms@1"], default=None)
    thr_pick = nav.get("max-throughput", {}).get(f"throughput@{batch}")
    lat_pick = nav.get("min-latency", {}).get("latency_ms@1")
    summary = {
        "max_throughput_vs_best_hand_compile": thr_pick / best_compile[f"throughput@{batch}"]
        if thr_pick and best_compile else None,
        "max_throughput_vs_eager_fp32": thr_pick / eager32[f"throughput@{batch}"]
        if thr_pick and eager32.get(f"throughput@{batch}") else None,
        "min_latency_p50_vs_best_hand": lat_pick / best_latency["latency_ms@1"] if lat_pick and best_latency else None,
    }
    print(f"\n  {model}: ratios (navbuild / hand-written, same timing method)")
    print(f"    max-throughput @{batch} / best hand torch.compile ({best_compile['row'] if best_compile else '-'}): "
          f"{ratio(thr_pick, best_compile and best_compile[f'throughput@{batch}'])}   goal >= 1.0x")
    print(f"    max-throughput @{batch} / eager fp32: "
          f"{ratio(thr_pick, eager32.get(f'throughput@{batch}'))}   goal >= 3.5x")
    print(f"    min-latency p50 @1 / best hand p50 @1 ({best_latency['row'] if best_latency else '-'}): "
          f"{ratio(lat_pick, best_latency and best_latency['latency_ms@1'])}   goal <= 1.0x")
    cold, warm, forced = builds.get("cold"), builds.get("warm"), builds.get("forced")
    print(f"  navbuild build: cold {describe_build(cold)}; warm {describe_build(warm)}; "
          f"warm --force-downstream of the picks {describe_build(forced)}", flush=True)
    return summary


def describe_build(build: dict | None) -> str:
    if not build:
        return "not run"
    if build.get("skipped"):
        return f"skipped ({build['skipped']})"
    statuses: dict[str, int] = {}
    for record in build["records"].values():
        statuses[record["status"]] = statuses.get(record["status"], 0) + 1
    exit_text = "timed out" if build["exit"] is None else f"exit {build['exit']}"
    return (f"{build['seconds']:.1f} s ({exit_text}, {', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))}, "
            f"{build['graphs_compiled']} graphs compiled)")


# -- one model --------------------------------------------------------------------------------------------
def run_model(model: str, args, clock: Clock, work: Path) -> dict[str, Any]:
    import torch

    from navbuild import tensors
    from navbuild.rule import call_entry

    overrides = quick_overrides(args) if args.quick else {}
    config = copy_project(args.config, model, work / model, overrides)
    targets = args.targets or default_targets(config, model)
    print(f"\n== {model}: navbuild {' '.join(targets)}", flush=True)
    print(f"  {'':58} {'compile s':>13} {f'samples/s @{args.batch}':>12} {'p50 ms @1':>10}")
    builds: dict[str, Any] = {}
    seconds, code, records = navbuild(config, targets, work / model / "cold.log", clock.left())
    out = work / model / "navbuild-out"
    builds["cold"] = {"seconds": seconds, "exit": code, "records": records,
                      "graphs_compiled": graphs_compiled(records, out)}
    print(f"  navbuild cold build: {describe_build(builds['cold'])}; log {work / model / 'cold.log'}", flush=True)
    samples = tensors.load(out / model / "samples" / "samples.tensors")
    sample = samples[0]
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    nav: dict[str, dict] = {}
    feeds = {batch: {name: tile(array, batch) for name, array in sample.items()} for batch in (args.batch, 1)}
    for strategy, pick in picks(config, model).items():
        figures = time_runner(pick, feeds, sync, args)
        nav[strategy] = {"target": pick["target"], **figures}
        print_row({"row": f"navbuild {strategy}: {pick['target']}", **figures}, args.batch)
    torch._dynamo.reset()
    torch.backends.cudnn.benchmark = bool(args.hand_cudnn_benchmark)  # navbuild's CUDA runners turned it on
    root = args.config.parent
    table = tomllib.loads(args.config.read_text())["models"][model]
    rows = hand_rows(lambda: call_entry(root, table["entry"]), sample, args, clock)
    forced = sorted({pick["target"] for pick in nav.values()}) or targets
    for name, words in (("warm", targets), ("forced", [*forced, "--force-downstream"])):
        if clock.left() < args.stage_reserve_s:
            builds[name] = {"skipped": "time budget spent"}
            continue
        seconds, code, records = navbuild(config, words, work / model / f"{name}.log", clock.left())
        builds[name] = {"seconds": seconds, "exit": code, "records": records,
                        "graphs_compiled": graphs_compiled(records, out)}
    summary = report(model, rows, nav, builds, args.batch)
    for build in builds.values():
        build.pop("records", None)
    return {"model": model, "targets": targets, "hand": rows, "navbuild": nav, "builds": builds, "ratios": summary}


def quick_overrides(args) -> dict[str, Any]:
    """CPU-sized settings: small buckets, one compile mode, short profiles."""
    return {"device": "cpu", "max_batch_size": max(args.batch, 1),
            "formats": {"torch-compile": {"buckets": [1, args.batch], "mode": "default", "channels_last": True}},
            "profile": {"batch_sizes": [1, args.batch], "warmup_runs": 1, "warmup_s": 0.0, "min_window_runs": 3,
                        "window_s": 0.0, "stabilization_windows": 1, "min_trials": 1, "max_trials": 2}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "examples" / "navbuild-gpu.toml")
    parser.add_argument("--models", default=None,
                        help="comma-separated (default resnet50,encoder; --quick: cnn,encoder)")
    parser.add_argument("--targets", nargs="*", default=None, help="navbuild targets or aliases to build")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu (default with --quick)")
    parser.add_argument("--batch", type=int, default=None, help="the throughput batch (64; --quick: 4)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls before each measurement")
    parser.add_argument("--runs", type=int, default=None, help="timed calls per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="CPU, tiny settings (a check that it runs)")
    parser.add_argument("--hand-cudnn-benchmark", action="store_true", help="cuDNN autotuner on for the hand side")
    parser.add_argument("--hand-modes", nargs="*", default=None,
                        help=f"torch.compile modes written by hand (default {' '.join(HAND_MODES)}; --quick: default)")
    parser.add_argument("--hand-batches", nargs="*", type=int, default=None,
                        help="batch sizes of the hand-written side (default: the throughput batch and 1); "
                             "max-autotune compiles once per batch, minutes each for ResNet-50")
    parser.add_argument("--budget-s", type=float, default=None, help="skip stages that would start after this")
    parser.add_argument("--stage-reserve-s", type=float, default=0.0, help="a stage starts only with this much left")
    parser.add_argument("--work", type=Path, default=None, help="folder for the project copies and logs")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    args.device = args.device or ("cpu" if args.quick else "cuda")
    args.batch = args.batch or (4 if args.quick else 64)
    args.warmup = args.warmup or (3 if args.quick else 20)
    args.runs = args.runs or (10 if args.quick else 100)
    if args.hand_modes is None:
        args.hand_modes = ["default"] if args.quick else list(HAND_MODES)
    models = (args.models or ("cnn,encoder" if args.quick else "resnet50,encoder")).split(",")
    clock = Clock(args.budget_s)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="vs-hand-inductor-")  # the hand side's, empty
    from navbuild.engine.registry import default_registry

    default_registry()  # navbuild's modules before torch, as in navbuild's own processes (compile_cache.py says why)
    import torch

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"vs_hand: {device_name}, torch {torch.__version__}, batch {args.batch} and 1, median of {args.runs} calls "
          f"after {args.warmup}; hand-written side with cudnn.benchmark={bool(args.hand_cudnn_benchmark)}", flush=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="vs-hand-"))
    results = {"device": device_name, "torch": torch.__version__, "batch": args.batch, "models": []}
    for model in models:
        if clock.left() <= args.stage_reserve_s:
            print(f"\n== {model}: skipped, the time budget is spent", flush=True)
            continue
        results["models"].append(run_model(model, args, clock, work))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
