"""PNG plots of profiles: latency and throughput against batch size, one line per target.

One figure per model, always ``WIDTH_PX`` x ``HEIGHT_PX`` pixels: latency on the left (p50 line,
p50 to p95 as a shaded band), throughput on the right, batch size on a log2 axis, one shared
legend to the right of both plots. The selected target is drawn thicker, starred in the legend,
with a star on the point that decided; unstable points have hollow markers.

matplotlib is imported inside the functions (Agg canvas, no pyplot state), so importing this
module costs nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from navbuild.measure.results import ProfileResult

if TYPE_CHECKING:
    from navbuild.measure.selection import Selection

WIDTH_PX, HEIGHT_PX, DPI = 1600, 700, 100
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h", "<", ">")
LOG_RATIO = 30.0  # a y-axis turns logarithmic when its largest value exceeds the smallest this much


def _label(target: str, result: ProfileResult, role: str, excluded: str | None) -> str:
    """``target (runner)`` and, on a second line, its role and what went wrong, if anything."""
    label = ("\u2605 " if role == "selected" else "") + target
    if result.runner and result.runner not in target:
        label += f" ({result.runner})"
    notes = [role] if role else []
    if excluded:
        notes.append(f"excluded: {excluded}")
    elif not result.points:
        notes.append("no measurements")
    if result.oom_batch_size:
        notes.append(f"out of memory at batch {result.oom_batch_size}")
    if notes:
        note = ", ".join(notes)
        label += "\n    " + (note if len(note) <= 44 else note[:43] + "\u2026")
    return label


def _human(value: float, _pos: Any = None) -> str:
    """Tick text without exponents: 0.05, 2.5, 120, 15k, 1.2M."""
    if value == 0:
        return "0"
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _y_scale(ax: Any, values: list[float]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_RATIO:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_ylim(bottom=0, top=max(positive, default=1.0) * 1.12)
    ax.yaxis.set_major_formatter(FuncFormatter(_human))


def plot_profile(model_name: str, results: Mapping[str, ProfileResult], path: Path,
                 selection: "Selection | None" = None, title: str | None = None) -> Path:
    """Write the model's profile PNG to ``path`` atomically; returns ``path``."""
    from matplotlib.figure import Figure  # noqa: PLC0415 - lazy: an optional dependency
    from matplotlib.ticker import FixedLocator, NullLocator

    path = Path(path)
    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    fig.subplots_adjust(left=0.055, right=0.74, bottom=0.11, top=0.86, wspace=0.22)
    ax_lat, ax_thr = fig.subplots(1, 2)
    chosen = selection.chosen if selection else None
    runner_up = selection.runner_up.target if selection and selection.runner_up else None
    excluded = dict(selection.excluded) if selection else {}
    colors = [f"C{i}" for i in range(10)]
    batch_sizes: set[int] = set()
    latencies: list[float] = []
    throughputs: list[float] = []
    handles = []
    for i, target in enumerate(sorted(results)):
        result = results[target]
        points = sorted(result.points, key=lambda p: p.batch_size)
        is_chosen = chosen is not None and chosen.target == target
        color, marker = colors[i % len(colors)], MARKERS[i % len(MARKERS)]
        xs = [p.batch_size for p in points]
        p50 = [p.p50_ms for p in points]
        p95 = [p.p95_ms for p in points]
        thr = [p.throughput for p in points]
        batch_sizes.update(xs)
        latencies += p50 + p95
        throughputs += thr
        style = {"color": color, "marker": marker, "linewidth": 3.2 if is_chosen else 1.8,
                 "markersize": 8 if is_chosen else 6.5, "zorder": 3 if is_chosen else 2,
                 "linestyle": ":" if target in excluded else "-"}
        role = "selected" if is_chosen else "runner-up" if target == runner_up else ""
        (line,) = ax_lat.plot(xs, p50, label=_label(target, result, role, excluded.get(target)), **style)
        ax_lat.fill_between(xs, p50, p95, color=color, alpha=0.14, linewidth=0)
        ax_thr.plot(xs, thr, **style)
        unstable = [p for p in points if not p.stable]
        for ax, ys in ((ax_lat, [p.p50_ms for p in unstable]), (ax_thr, [p.throughput for p in unstable])):
            ax.plot([p.batch_size for p in unstable], ys, linestyle="none", marker=marker, markersize=style["markersize"],
                    markerfacecolor="white", markeredgecolor=color, markeredgewidth=1.8, zorder=4)
        if is_chosen and chosen.batch_size is not None:
            point = result.point(chosen.batch_size)
            if point is not None:
                ax_thr.plot([point.batch_size], [point.throughput], marker="*", markersize=22, color=color,
                            markeredgecolor="black", linestyle="none", zorder=5)
                ax_lat.plot([point.batch_size], [point.p50_ms], marker="*", markersize=22, color=color,
                            markeredgecolor="black", linestyle="none", zorder=5)
        handles.append(line)

    ticks = sorted(batch_sizes) or [1]
    for ax in (ax_lat, ax_thr):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticklabels([str(b) for b in ticks])
        ax.set_xlim(ticks[0] / 1.4, ticks[-1] * 1.4)
        ax.set_xlabel("batch size (log2 scale)", fontsize=12)
        ax.tick_params(labelsize=11)
        ax.grid(True, which="major", alpha=0.35)
    _y_scale(ax_lat, latencies)
    _y_scale(ax_thr, throughputs)
    ax_lat.set_ylabel("latency per batch (ms)", fontsize=12)
    ax_lat.set_title("Latency: p50 line, p50\u2013p95 band", fontsize=13)
    ax_thr.set_ylabel("throughput (samples/s)", fontsize=12)
    ax_thr.set_title("Throughput", fontsize=13)
    if not handles or not latencies:
        for ax in (ax_lat, ax_thr):
            ax.text(0.5, 0.5, "no measurements", ha="center", va="center", transform=ax.transAxes, fontsize=14)

    devices = sorted({r.device for r in results.values() if r.device})
    subtitle = ", ".join(devices)
    if selection is not None:
        subtitle += f"   |   strategy {selection.strategy}: " + (
            f"{chosen.target} at batch {chosen.batch_size}" if chosen and chosen.batch_size else
            chosen.target if chosen else "no candidate qualified")
    fig.suptitle(title or f"{model_name}: latency and throughput by batch size", fontsize=16, y=0.975)
    fig.text(0.5, 0.915, subtitle, ha="center", fontsize=11.5, color="#444444")
    if handles:
        legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.755, 0.86), fontsize=10.5,
                            frameon=False, title="target (runner)", title_fontsize=11.5, borderaxespad=0)
        box = getattr(legend, "_legend_box", None)  # left-aligned title reads better (private API)
        if box is not None:
            box.align = "left"
    fig.text(0.755, 0.11, "hollow marker: not stable\ndotted line: excluded from selection\n"
             "\u2605: the point that won the selection", fontsize=10, color="#444444", va="bottom")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, dpi=DPI, format="png", metadata={"Software": "navbuild"})
    os.replace(tmp, path)
    return path
