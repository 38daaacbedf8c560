"""Reports: JSON file, PNG plot of the declared size, rich table and progress, Graphviz DOT."""
from __future__ import annotations

import io
import json
import re
import shutil

import numpy as np
import pytest
from rich.console import Console

from navbuild.view import graph_dot
from navbuild.view.plots import HEIGHT_PX, WIDTH_PX, plot_profile
from navbuild.measure.profiling import ProfileConfig, ProfilePoint, ProfileResult, profile
from navbuild.view.report import (
    REPORT_JSON, RichProgress, fmt_ms, load_report, print_report, profile_table, report_dict, write_report,
)
from navbuild.measure.selection import Candidate, select


def _result(runner: str, base: float, per: float, sizes, oom=None, unstable=()) -> ProfileResult:
    points = []
    for b in sizes:
        lat = base + per * b
        points.append(ProfilePoint(b, lat, lat * .05, lat * .9, lat * 1.5, lat, lat * 1.08, lat * 1.15,
                                   lat * 1.3, b / lat * 1e3, 3, 75, b not in unstable))
    return ProfileResult(points, runner=runner, device="cpu", oom_batch_size=oom)


@pytest.fixture
def results():
    return {
        "cnn:torchscript": _result("torchscript", 0.9, 0.05, [1, 2, 4, 8, 16, 32, 64]),
        "cnn:onnx": _result("onnxruntime", 0.5, 0.04, [1, 2, 4, 8, 16, 32, 64], unstable=(8,)),
        "cnn:trt-fp16": _result("tensorrt", 0.15, 0.012, [1, 2, 4, 8, 16, 32, 64, 128], oom=256),
        "cnn:reference": _result("torch-eager", 1.2, 0.07, [1, 2, 4]),
        "cnn:trt-int8": ProfileResult([], runner="tensorrt", oom_batch_size=1),
    }


@pytest.fixture
def selection(results):
    correct = {t: t != "cnn:reference" for t in results}
    return select({t: Candidate(r, correct[t]) for t, r in results.items()}, "max-throughput")


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width, height


def test_write_report_files(tmp_path, results, selection):
    out = tmp_path / "navbuild-out" / "cnn" / "report"
    paths = write_report("cnn", results, selection, out)
    assert paths == {"json": out / REPORT_JSON, "png": out / "profile.png"}
    data = json.loads(paths["json"].read_text())
    assert data["model"] == "cnn" and data["selected"] == "cnn:trt-fp16"
    assert list(data["targets"]) == sorted(results)
    assert data["targets"]["cnn:trt-fp16"]["oom_batch_size"] == 256
    assert data["selection"]["excluded"]["cnn:reference"] == "failed its correctness check"
    model, back, sel = load_report(paths["json"])
    assert model == "cnn" and back["cnn:onnx"].batch_sizes == results["cnn:onnx"].batch_sizes
    assert sel.target == "cnn:trt-fp16"
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries


def test_png_is_real_and_of_the_declared_size(tmp_path, results, selection):
    path = plot_profile("cnn", results, tmp_path / "profile.png", selection)
    assert _png_size(path) == (WIDTH_PX, HEIGHT_PX) == (1600, 700)
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (1600, 700)
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5  # something was drawn


def test_png_without_selection_and_without_points(tmp_path):
    path = plot_profile("empty", {"e:onnx": ProfileResult([], runner="onnxruntime")}, tmp_path / "p.png")
    assert _png_size(path) == (WIDTH_PX, HEIGHT_PX)
    one = {"m:onnx": _result("onnxruntime", 1.0, 0.0, [1])}
    assert _png_size(plot_profile("one", one, tmp_path / "q.png")) == (WIDTH_PX, HEIGHT_PX)


def test_report_from_a_real_profile(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(4, 4).eval()
    config = ProfileConfig(batch_sizes=(1, 8), warmup_s=0.0, window_s=0.001)
    with torch.inference_mode():
        result = profile(lambda x: model(x), [torch.randn(2, 4)], config, name="torch-eager")
    sel = select({"lin:reference": Candidate(result, True)}, "min-latency")
    paths = write_report("lin", {"lin:reference": result}, sel, tmp_path)
    assert _png_size(paths["png"]) == (WIDTH_PX, HEIGHT_PX)
    assert report_dict("lin", {"lin:reference": result}, sel)["selected"] == "lin:reference"


def test_rich_table(results, selection):
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(profile_table("cnn", results, selection))
    text = console.file.getvalue()
    for header in ("target", "runner", "batch", "p50", "p95", "p99", "samples/s", "stable"):
        assert header in text
    selected_rows = [line for line in text.splitlines() if "\u2605" in line and "strategy" not in line]
    assert len(selected_rows) == 1 and re.search(r"\b128\b", selected_rows[0])
    assert "2nd" in text and "OOM" in text and "excl" in text
    assert "excluded cnn:reference: failed its correctness check" in text
    assert "unstable" in text  # the point that did not stabilize


def test_print_report_many_models(results, selection):
    console = Console(file=io.StringIO(), width=100, color_system=None)
    print_report({"b": (results, None), "a": (results, selection)}, console)
    text = console.file.getvalue()
    assert text.index("a  (latency") < text.index("b  (latency")


def test_fmt_ms():
    assert [fmt_ms(v) for v in (0.001234, 0.0456, 1.234, 45.67, 123.4, 12345.6)] == [
        "0.00123", "0.0456", "1.23", "45.7", "123", "12,346"]


def test_rich_progress_follows_events():
    console = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False)
    with RichProgress(console=console) as bars:
        callback = bars.callback("m:onnx")
        config = ProfileConfig(batch_sizes=(1, 2), warmup_runs=1, warmup_s=0.0, min_window_runs=3,
                               window_s=0.0)
        profile(lambda x: x, [np.ones((1, 2))], config, progress=callback)
        task = bars.progress.tasks[0]
        assert task.completed == task.total == 2 and task.fields["status"] == "done"


# -- graph -----------------------------------------------------------------------------------------
NODES = ["cnn:samples", "cnn:reference", "cnn:onnx", "cnn:onnx.check", "cnn:trt-fp16", "mlp:onnx"]
EDGES = [("cnn:samples", "cnn:reference"), ("cnn:reference", "cnn:onnx"), ("cnn:onnx", "cnn:onnx.check"),
         ("cnn:onnx", "cnn:trt-fp16"), ("cnn:reference", "cnn:onnx.check")]
STATES = {"cnn:samples": "cached", "cnn:reference": "built", "cnn:onnx": "stale",
          "cnn:onnx.check": "failed", "cnn:trt-fp16": "skipped"}


def test_dot_structure():
    text = graph_dot.to_dot(NODES, EDGES, STATES)
    assert text.startswith("digraph navbuild {") and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    for upstream, downstream in EDGES:
        assert f'"{upstream}" -> "{downstream}";' in text
    for name in NODES:
        assert re.search(rf'^\s*"{re.escape(name)}" \[label=', text, re.M), name
    fill = {state: style[0] for state, style in graph_dot.STATE_STYLES.items()}
    assert re.search(rf'"cnn:onnx.check" \[[^\]]*fillcolor="{fill["failed"]}"', text)
    assert re.search(rf'"cnn:samples" \[[^\]]*fillcolor="{fill["cached"]}"', text)
    assert re.search(r'"cnn:trt-fp16" \[[^\]]*style="filled,rounded,dashed"', text)
    assert re.search(r'"mlp:onnx" \[[^\]]*fillcolor="#ffffff"', text)  # no state: unknown
    # one cluster per model plus the legend, with a node per state
    assert len(re.findall(r"subgraph cluster_\d+", text)) == 2
    assert "subgraph cluster_legend" in text
    for state in graph_dot.STATES:
        assert f'"__legend__:{state}" [label="{state}"' in text
    # deterministic whatever the input order
    assert graph_dot.to_dot(reversed(NODES), reversed(EDGES), STATES) == text


def test_dot_quotes_odd_names_and_adds_edge_only_nodes():
    text = graph_dot.to_dot([], [('we"ird:a', "we\"ird:b\\c")], {}, legend=False, title=None)
    assert '"we\\"ird:a" -> "we\\"ird:b\\\\c";' in text
    assert "cluster_legend" not in text and "label=\"navbuild" not in text


def test_render_without_dot_returns_false(tmp_path, monkeypatch):
    monkeypatch.setattr(graph_dot.shutil, "which", lambda name: None)
    assert graph_dot.render("digraph { a -> b }", tmp_path / "g.png") is False
    assert not (tmp_path / "g.png").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed")
def test_render_with_dot(tmp_path):
    path = tmp_path / "graph.png"
    assert graph_dot.render(graph_dot.to_dot(NODES, EDGES, STATES), path) is True
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert graph_dot.render("digraph { this is not dot", tmp_path / "bad.png") is False
    assert not (tmp_path / "bad.png").exists()


def test_a_spread_past_the_stability_bound_is_marked_in_the_table_and_the_report(tmp_path, results, selection):
    noisy = results["cnn:torchscript"]
    noisy.config = {"stability_pct": 10.0}
    noisy.points[0].spread_pct = 85.0  # batch 1: a busy machine
    noisy.points[1].spread_pct = 4.0
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(profile_table("cnn", results, selection))
    row = next(line for line in console.file.getvalue().splitlines() if "cnn:torchscript" in line)
    assert "unstable \u00b185%" in row
    data = json.loads(write_report("cnn", results, selection, tmp_path, png=False)["json"].read_text())
    assert data["unstable"] == {"cnn:torchscript": [1]}
