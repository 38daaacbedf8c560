"""What a user takes out of navbuild, beside the artifact and the hand-written torch, in one run.

Usage (repository root, PYTHONPATH set to it):
    python benchmarks/api_speed.py --out api-speed            # GPU: batch 64, fp16, full-size models
    python benchmarks/api_speed.py --cpu --out api-speed-cpu  # CPU, tiny models and sizes (a smoke run)

Per model (torchvision resnet50 and convnext_tiny at 224x224, a Hugging Face BertModel from its
default config at sequence 128; with --cpu: resnet18 and mobilenet_v3_small at 32x32, a 2-layer
BertModel at sequence 16; all built in one workspace, so they share the compile cache), ``navbuild.torch.optimize`` builds its ``torch-compile`` target at the
precision, then these rows are timed in this process, each as a stopwatch around a plain loop (one
synchronisation at its end; the median of ``--reps`` loops):

- ``run_prepared``: the artifact's runner on inputs already on the device (what the profiler times);
- ``runner.run``: a plain loop over the runner's tensor-native call (the feed check included);
- ``profile``: ``profile_runner`` on that runner in this process, and the build's stored figure;
- ``get_model``: ``package.get_model()`` called as the model is, inputs on the device;
- ``eager``: the model cast to the precision; ``compile default`` and ``compile reduce-overhead``:
  hand-written ``torch.compile`` of it (reduce-overhead on a GPU only).

First, the Python overhead of a call: a Linear layer at batch 1 (TorchScript), ``run_prepared``,
``runner.run`` and ``get_model`` in microseconds per call. Then a two-module pipeline (the BertModel -> a Linear head) wrapped with ``navbuild.Module``,
optimized in place and loaded (``load_optimized()``, and with ``cuda_graphs=True`` on a GPU), beside
the same two modules eager and hand-compiled. A row that fails prints its error and the run goes on;
a model whose build fails skips the rows that need it. ``--budget-s`` bounds the run (390 s on a
GPU): no model starts in its last 120 s, no row after it, and what is skipped says so. The
table is written again after each model, so a run stopped from outside keeps what it measured. Progress lines carry timestamps; the table
is printed and written to ``<out>/api_speed.md`` (and ``api_speed.json``). Asserts nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STARTED = time.perf_counter()
# models in the order they run (the pipeline right after the BertModel: they share its compiled graphs)
GPU = dict(batch=64, precision="fp16", image=224, seq=128, models=("overhead", "resnet50", "bert", "pipeline",
                                                                   "convnext_tiny"),
           window_s=0.5, budget_s=5.0, reps=3)
CPU = dict(batch=2, precision="fp32", image=32, seq=16, models=("overhead", "resnet18", "bert", "pipeline",
                                                              "mobilenet_v3_small"),
           window_s=0.2, budget_s=2.0, reps=5)
LAST_MODEL_S = 120.0  # no model starts later than this before the end of --budget-s


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - STARTED:6.1f}s] {message}", flush=True)


class Table:
    """Rows of (model, row, samples/s or None, note); a failed row keeps its error as the note."""

    def __init__(self, deadline: float = float("inf")) -> None:
        self.rows: list[dict[str, Any]] = []
        self.deadline = deadline  # perf_counter time after which no row starts

    def add(self, model: str, row: str, rate: float | None, note: str = "") -> None:
        self.rows.append({"model": model, "row": row, "samples_per_s": rate, "note": note})
        say(f"{model:>14} | {row:<34} | {_rate(rate):>12} | {note}")

    def rate(self, model: str, row: str) -> float | None:
        return next((r["samples_per_s"] for r in self.rows if r["model"] == model and r["row"] == row), None)

    def attempt(self, model: str, row: str, measure: Callable[[], float | tuple[float, str]]) -> float | None:
        """``measure()`` as one row; an exception becomes the row's note and the run goes on."""
        if time.perf_counter() > self.deadline:
            self.add(model, row, None, "skipped: the time budget was spent")
            return None
        try:
            value = measure()
        except Exception as exc:  # noqa: BLE001 - one failed row must not end a scarce GPU run
            self.add(model, row, None, f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
            traceback.print_exc(limit=3, file=sys.stdout)
            return None
        rate, note = value if isinstance(value, tuple) else (value, "")
        self.add(model, row, rate, note)
        return rate

    def markdown(self, header: str) -> str:
        lines = [header, "", "| model | row | samples/s | x run_prepared | note |", "|---|---|---:|---:|---|"]
        for row in self.rows:
            base = (self.rate(row["model"], "run_prepared") or self.rate(row["model"], "in-place hand compile default")
                    or self.rate(row["model"], "linear run_prepared"))
            ratio = f"{row['samples_per_s'] / base:.2f}" if row["samples_per_s"] and base else ""
            lines.append(f"| {row['model']} | {row['row']} | {_rate(row['samples_per_s'])} | {ratio} | {row['note']} |")
        return "\n".join(lines) + "\n"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


# -- timing: a stopwatch around a plain loop ---------------------------------------------------------
def loop_rate(call: Callable[[], Any], sync: Callable[[], None], batch: int, window_s: float, reps: int) -> float:
    """Samples per second of ``call`` in a plain loop: warm-up calls, then ``reps`` loops of about
    ``window_s`` each, one synchronisation at the end of each; the median loop."""
    for _ in range(3):
        call()
    sync()
    started = time.perf_counter()
    call()
    sync()
    calls = max(3, int(window_s / max(time.perf_counter() - started, 1e-6)))
    rates = []
    for _ in range(reps):
        sync()
        started = time.perf_counter()
        for _ in range(calls):
            call()
        sync()
        rates.append(batch * calls / (time.perf_counter() - started))
    return statistics.median(rates)


# -- models -------------------------------------------------------------------------------------------
def make_model(name: str, settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The model (fp32, eval, on the CPU) and one sample of keyword arguments at the batch size."""
    import torch

    torch.manual_seed(0)
    batch = settings["batch"]
    if name == "bert":
        from transformers import BertConfig, BertModel

        config = BertConfig() if not settings["cpu"] else BertConfig(
            num_hidden_layers=2, hidden_size=64, num_attention_heads=2, intermediate_size=128, vocab_size=1000)
        model = BertModel(config).eval()
        ids = torch.randint(0, config.vocab_size, (batch, settings["seq"]))
        return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    import torchvision

    model = getattr(torchvision.models, name)(weights=None).eval()
    return model, {"x": torch.randn(batch, 3, settings["image"], settings["image"])}


def optimize_config(settings: dict[str, Any], workspace: Path) -> Any:
    import navbuild

    return navbuild.OptimizeConfig(
        target_formats=("torch-compile",), target_precisions=(settings["precision"],),
        target_device=settings["device"], workspace=workspace,
        optimization_profile={"batch_sizes": [settings["batch"]], "budget_s": settings["budget_s"]},
        custom_configs={"torch-compile": {"buckets": [settings["batch"]]}})


def compiled_target(package: Any) -> str:
    usable = [name for name, t in package.targets.items() if t.format == "torch-compile" and t.usable and t.correct]
    if not usable:
        raise RuntimeError("no correct torch-compile target: " + "; ".join(
            f"{n}: {t.status} {t.reason or ''}" for n, t in package.targets.items()))
    return usable[0]


def on_device(sample: dict[str, Any], device: str) -> dict[str, Any]:
    return {key: value.to(device) for key, value in sample.items()}


def cast_model(model: Any, settings: dict[str, Any]) -> Any:
    model = copy.deepcopy(model).to(settings["device"])
    return model.half() if settings["precision"] == "fp16" else model


def hand_rows(table: Table, label: str, model: Any, sample: dict[str, Any], settings: dict[str, Any],
              prefix: str = "") -> None:
    """Eager at the precision, then hand-written torch.compile in each mode, in this process."""
    import torch

    args, kwargs = _call_args(sample)
    eager = cast_model(model, settings)
    time_it = _timer(settings)

    def run_with(module: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return module(*args, **kwargs)
        return call

    table.attempt(label, f"{prefix}eager {settings['precision']}", lambda: time_it(run_with(eager)))
    for mode in settings["modes"]:
        torch._dynamo.reset()
        started = time.perf_counter()
        compiled = torch.compile(eager, mode=mode)

        def measure(compiled: Any = compiled, started: float = started) -> tuple[float, str]:
            run_with(compiled)()  # the compile
            compile_s = time.perf_counter() - started
            return time_it(run_with(compiled)), f"compiled in {compile_s:.0f} s"
        table.attempt(label, f"{prefix}hand compile {mode}", measure)
    torch._dynamo.reset()


def _call_args(sample: dict[str, Any]) -> tuple[tuple, dict]:
    return ((sample["x"],), {}) if list(sample) == ["x"] else ((), sample)


def _timer(settings: dict[str, Any]) -> Callable[[Callable[[], Any]], float]:
    from navbuild.measure.timing import torch_cuda_sync

    sync = torch_cuda_sync if settings["device"] == "cuda" else (lambda: None)
    return lambda call: loop_rate(call, sync, settings["batch"], settings["window_s"], settings["reps"])


def model_rows(table: Table, name: str, settings: dict[str, Any], out: Path) -> None:
    import navbuild
    from navbuild.measure.profiling import ProfileConfig, profile_runner

    say(f"{name}: building its torch-compile target ({settings['precision']}, batch {settings['batch']})")
    model, sample = make_model(name, settings)
    device = settings["device"]
    feed_sample = on_device(sample, device)
    started = time.perf_counter()
    try:
        package = navbuild.torch.optimize(model, [_as_dataloader_item(sample)], optimize_config(settings, out / "workspace"),
                                          name=name.replace("_", "-"), quiet=True)
        target = compiled_target(package)
    except Exception as exc:  # noqa: BLE001
        table.add(name, "navbuild optimize", None, f"FAILED {type(exc).__name__}: {str(exc)[:200]}")
        traceback.print_exc(limit=3, file=sys.stdout)
        hand_rows(table, name, model, feed_sample, settings)
        return
    table.add(name, "navbuild optimize", None, f"{target} built in {time.perf_counter() - started:.0f} s")
    time_it = _timer(settings)
    optimized = package.get_model(target=target, device=device)  # its runner serves every row below
    runner = optimized.runner
    args, kwargs = _call_args(feed_sample)
    try:
        feed = optimized.bind(args, kwargs)  # the runner's input names, as get_model binds them
        prepared = runner.prepare(feed)
        table.attempt(name, "run_prepared", lambda: time_it(lambda: runner.run_prepared(prepared)))
        table.attempt(name, "runner.run (plain loop)", lambda: time_it(lambda: runner.run(feed)))
        table.attempt(name, "get_model", lambda: time_it(lambda: optimized(*args, **kwargs)))

        def profiled(timer: str) -> tuple[float, str]:
            host = {key: value.cpu().numpy() for key, value in feed.items()}
            config = ProfileConfig(batch_sizes=(settings["batch"],), budget_s=settings["budget_s"], timer=timer)
            point = profile_runner(runner, host, config).points[0]
            stored = ((package.profile(target) or {}).get("points") or [{}])[0].get("throughput")
            loop = table.rate(name, "run_prepared")
            note = f"p50 {point.p50_ms:.3f} ms; the build's figure {_rate(stored)}"
            if loop:
                note += f"; {100 * (point.throughput / loop - 1):+.1f}% vs the run_prepared loop"
            return point.throughput, note
        # the build's settings (the wall clock around windows of back-to-back calls), and CUDA events
        for timer in ("wall", "cuda-events") if device == "cuda" else ("wall",):
            table.attempt(name, f"profile ({timer}, this process)", lambda timer=timer: profiled(timer))
    finally:
        optimized.close()
    hand_rows(table, name, model, feed_sample, settings)


def _as_dataloader_item(sample: dict[str, Any]) -> Any:
    return sample["x"] if list(sample) == ["x"] else sample


# -- the Python overhead of a call ------------------------------------------------------------------
def overhead_rows(table: Table, settings: dict[str, Any], out: Path) -> None:
    """A Linear layer at batch 1 (TorchScript, fp32): what runner.run and get_model add to the
    artifact's own call, in microseconds per call."""
    import torch

    import navbuild

    label = "overhead"
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 4).eval()
    x = torch.randn(1, 16)
    config = navbuild.OptimizeConfig(target_formats=("torchscript-trace",), target_precisions=("fp32",),
                                     target_device=settings["device"], workspace=out / "workspace", profiling=False)
    package = navbuild.torch.optimize(model, [x], config, name="linear", quiet=True)
    optimized = package.get_model(target=next(iter(package.artifacts)), device=settings["device"])
    runner, x = optimized.runner, x.to(settings["device"])
    feed = optimized.bind((x,), {})
    prepared = runner.prepare(feed)
    settings = {**settings, "batch": 1}
    time_it = _timer(settings)
    base = None
    for row, call in (("linear run_prepared", lambda: runner.run_prepared(prepared)),
                      ("linear runner.run", lambda: runner.run(feed)), ("linear get_model", lambda: optimized(x))):
        def measure(call: Callable[[], Any] = call) -> tuple[float, str]:
            rate = time_it(call)
            return rate, f"{1e6 / rate:.1f} us per call" + (f", {1e6 / rate - 1e6 / base:+.1f} us" if base else "")
        rate = table.attempt(label, row, measure)
        base = base or rate
    optimized.close()


# -- the in-place pipeline ----------------------------------------------------------------------------
class Pipeline:
    """A BertModel and a Linear head on its pooled output."""

    def __init__(self, encoder: Any, head: Any) -> None:
        self.encoder, self.head = encoder, head

    def __call__(self, input_ids: Any, attention_mask: Any) -> Any:
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).pooler_output)


def pipeline_rows(table: Table, settings: dict[str, Any], out: Path) -> None:
    import torch

    import navbuild
    from navbuild.api import inplace

    label = "pipeline"
    encoder, sample = make_model("bert", settings)
    head = torch.nn.Linear(encoder.config.hidden_size, 2).eval()
    device = settings["device"]
    ids, mask = sample["input_ids"].to(device), sample["attention_mask"].to(device)
    time_it = _timer(settings)

    # the same modules by hand: eager and compiled at the precision, one call of each per pipeline call
    hand = {"encoder": cast_model(encoder, settings), "head": cast_model(head, settings)}

    def hand_pipeline(encoder: Any, head: Any) -> Callable[[], Any]:
        pipe = Pipeline(encoder, head)

        def call() -> Any:
            with torch.no_grad():
                return pipe(ids, mask)
        return call
    table.attempt(label, f"in-place hand eager {settings['precision']}", lambda: time_it(hand_pipeline(**hand)))
    for mode in settings["modes"]:
        torch._dynamo.reset()
        compiled = {key: torch.compile(module, mode=mode) for key, module in hand.items()}
        table.attempt(label, f"in-place hand compile {mode}", lambda: time_it(hand_pipeline(**compiled)))
    torch._dynamo.reset()

    say("pipeline: optimizing the encoder and the head in place")
    inplace.forget()
    pipe = Pipeline(navbuild.Module(copy.deepcopy(encoder).to(device), name="encoder"),
                    navbuild.Module(copy.deepcopy(head).to(device), name="head"))
    started = time.perf_counter()
    try:
        navbuild.optimize(pipe, [(ids, mask)], optimize_config(settings, out / "workspace"), quiet=True)
        chosen = navbuild.load_optimized(quiet=True)
    except Exception as exc:  # noqa: BLE001
        table.add(label, "in-place navbuild", None, f"FAILED {type(exc).__name__}: {str(exc)[:200]}")
        traceback.print_exc(limit=3, file=sys.stdout)
        return
    table.add(label, "in-place optimize", None, f"{chosen} in {time.perf_counter() - started:.0f} s")

    def navbuild_pipeline() -> Callable[[], Any]:
        def call() -> Any:
            with torch.no_grad():
                return pipe(ids, mask)
        return call

    def note() -> str:
        fallbacks = pipe.encoder.fallbacks + pipe.head.fallbacks
        return f"{chosen}" + (f"; {fallbacks} calls ran the original code" if fallbacks else "")
    table.attempt(label, "in-place navbuild", lambda: (time_it(navbuild_pipeline()), note()))
    if device == "cuda":
        chosen = navbuild.load_optimized(quiet=True, cuda_graphs=True)
        table.attempt(label, "in-place navbuild cuda_graphs", lambda: (time_it(navbuild_pipeline()), note()))
    inplace.forget()


def write_table(table: Table, out: Path, card: str, settings: dict[str, Any]) -> str:
    import torch

    header = (f"api_speed on {card}, torch {torch.__version__}, batch {settings['batch']}, {settings['precision']}, "
              f"{time.perf_counter() - STARTED:.0f} s")
    text = table.markdown(header)
    (out / "api_speed.md").write_text(text)
    (out / "api_speed.json").write_text(json.dumps({"header": header, "rows": table.rows}, indent=1))
    return text


# -- main -------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny models and sizes on the CPU")
    parser.add_argument("--out", type=Path, default=Path("api-speed"), help="folder for the workspace and the table")
    parser.add_argument("--models", help="comma-separated subset of the models and 'pipeline'")
    parser.add_argument("--reps", type=int, default=None, help="timed loops per row, the median reported "
                        "(default 3 on the GPU, 5 with --cpu)")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="the run's time: no model starts in its last 120 s and no row after it; what is "
                             "skipped says so (default 390 on the GPU, none with --cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch's CPU threads (default 1 with --cpu: on a shared machine more threads than "
                             "free cores make every figure noise)")
    args = parser.parse_args()
    if args.budget_s is None:
        args.budget_s = float("inf") if args.cpu else 390.0

    import torch

    if args.threads or args.cpu:
        torch.set_num_threads(args.threads or 1)

    settings = dict(CPU if args.cpu else GPU, cpu=args.cpu)
    settings["reps"] = args.reps or settings["reps"]
    settings["device"] = "cpu" if args.cpu else "cuda"
    if settings["device"] == "cuda" and not torch.cuda.is_available():
        sys.exit("no GPU here: run with --cpu for the tiny CPU version")
    settings["modes"] = ("default", "reduce-overhead") if settings["device"] == "cuda" else ("default",)
    args.out.mkdir(parents=True, exist_ok=True)
    card = torch.cuda.get_device_name() if settings["device"] == "cuda" else "CPU"
    say(f"torch {torch.__version__} on {card} ({torch.get_num_threads()} CPU threads); batch {settings['batch']}, "
        f"{settings['precision']}")
    names = args.models.split(",") if args.models else list(settings["models"])
    table = Table(deadline=STARTED + args.budget_s)
    for name in names:
        if time.perf_counter() - STARTED > args.budget_s - LAST_MODEL_S:
            table.add(name, "skipped", None, f"too little of the {args.budget_s:.0f} s budget was left to start it")
            continue
        try:
            if name == "pipeline":
                pipeline_rows(table, settings, args.out)
            elif name == "overhead":
                overhead_rows(table, settings, args.out)
            else:
                model_rows(table, name, settings, args.out)
        except Exception as exc:  # noqa: BLE001 - the next model still runs
            table.add(name, "error", None, f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            traceback.print_exc(limit=5, file=sys.stdout)
        finally:
            if settings["device"] == "cuda":
                torch.cuda.empty_cache()
            write_table(table, args.out, card, settings)  # after each model: a killed run keeps its rows
    print(write_table(table, args.out, card, settings))
    say(f"wrote {args.out / 'api_speed.md'}")


if __name__ == "__main__":
    main()
