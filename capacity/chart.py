"""The cost crossover chart: managed vs self-hosted monthly cost by volume (matplotlib, Agg)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter

from capacity.assumptions import AssumptionError
from capacity.model import Series

PHASE_COLOURS = {1: "#e8f1fb", 2: "#e9f7ec", 3: "#fdf1e3"}
PHASE_NAMES = {1: "Phase 1: MVP", 2: "Phase 2: Growth", 3: "Phase 3: Scale"}


def _usd(value: float, _pos: object = None) -> str:
    return f"${value / 1000:,.0f}K" if value >= 10_000 else f"${value:,.0f}"


def _tasks(value: float, _pos: object = None) -> str:
    return f"{value / 1e6:g}M" if value >= 1e6 else f"{value / 1e3:g}K"


def figure(series: Series, *, marker_tasks: int | None = None) -> Figure:
    """The chart as a Figure: phase bands behind, crossover marked, optional current volume.

    Every label is placed inside the figure: the phase names sit inside their bands (the last
    one right-aligned a few points in from the edge) and constrained layout keeps room for the
    first and last tick labels.
    """
    fig = Figure(figsize=(8, 4.5), dpi=90, layout=ConstrainedLayoutEngine(w_pad=0.12, h_pad=0.08))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = series.tasks_per_month
    start = 0
    for i in range(1, len(xs) + 1):
        if i == len(xs) or series.recommended_phase[i] != series.recommended_phase[start]:
            phase = series.recommended_phase[start]
            right = xs[i] if i < len(xs) else xs[-1]
            ax.axvspan(xs[start], right, color=PHASE_COLOURS[phase], zorder=0)
            last = i == len(xs)
            narrow = right / xs[start] < 4
            if last and narrow:  # hug the right edge, inside the axes
                x_text, align, dx = right, "right", -4
            elif narrow and start == 0:
                x_text, align, dx = xs[start], "left", 4
            else:
                x_text, align, dx = (xs[start] * right) ** 0.5, "center", 0
            ax.annotate(
                PHASE_NAMES[phase],
                xy=(x_text, 0.97),
                xycoords=("data", "axes fraction"),
                xytext=(dx, 0),
                textcoords="offset points",
                ha=align,
                va="top",
                fontsize=8,
                color="#444",
                bbox={"boxstyle": "round,pad=0.2", "fc": (1, 1, 1, 0.6), "ec": "none"},
            )
            start = i
    ax.plot(
        xs,
        series.managed_monthly_usd,
        color="#1f6fb4",
        lw=2,
        label="Managed (AWS Transcribe + Bedrock)",
    )
    ax.plot(xs, series.self_hosted_monthly_usd, color="#2e9a4a", lw=2, label="Self-hosted (GPU)")
    cross = series.crossover_tasks_per_month
    if cross is not None and xs[0] <= cross <= xs[-1]:
        ax.axvline(cross, color="#c0392b", ls="--", lw=1)
        ax.annotate(
            f"crossover ~{cross:,} tasks/month",
            xy=(cross, 0.5),
            xycoords=("data", "axes fraction"),
            xytext=(-4 if cross > (xs[0] * xs[-1]) ** 0.5 else 6, 0),
            textcoords="offset points",
            fontsize=8,
            color="#c0392b",
            rotation=90,
            va="center",
            ha="right" if cross > (xs[0] * xs[-1]) ** 0.5 else "left",
        )
    if marker_tasks is not None and xs[0] <= marker_tasks <= xs[-1]:
        ax.axvline(marker_tasks, color="#555", lw=1, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(xs[0], xs[-1])
    ax.xaxis.set_major_formatter(FuncFormatter(_tasks))
    ax.yaxis.set_major_formatter(FuncFormatter(_usd))
    ax.set_xlabel("tasks per month")
    ax.set_ylabel("USD per month")
    ax.set_title(
        f"Monthly cost vs volume, {series.avg_audio_minutes:.3g} min average audio", fontsize=10
    )
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    return fig


def draw(series: Series, *, marker_tasks: int | None = None) -> bytes:
    """PNG bytes of the chart."""
    buf = io.BytesIO()
    figure(series, marker_tasks=marker_tasks).savefig(buf, format="png")
    return buf.getvalue()


def write_png(series: Series, out: Path, *, marker_tasks: int | None = None) -> None:
    """Write the chart to ``out`` atomically; a bad path fails before anything is written."""
    if out.suffix.lower() != ".png":
        raise AssumptionError(f"invalid --out: {out} must end in .png")
    parent = out.parent if str(out.parent) else Path()
    if not parent.is_dir():
        raise AssumptionError(f"invalid --out: directory {parent} does not exist")
    data = draw(series, marker_tasks=marker_tasks)
    fd, tmp = tempfile.mkstemp(prefix=".crossover-", suffix=".png", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a chart is meant to be read
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
