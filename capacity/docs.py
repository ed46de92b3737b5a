"""The generated parts of docs/capacity.md: the brief's example, the sweep and the crossovers.

Each part sits between ``<!-- capacity-docs:NAME -->`` and ``<!-- /capacity-docs:NAME -->`` and
is rendered from the shipped defaults by the model itself (``make capacity-docs``); a test fails
when the file and the model disagree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from capacity.assumptions import AssumptionError, Assumptions, default_assumptions
from capacity.model import crossover_tasks_per_month, llm_gpu_seconds_per_task, plan

DOC = Path(__file__).resolve().parent.parent / "docs" / "capacity.md"


class Brief(NamedTuple):
    """The brief's Capacity Planner example, as its page shows it."""

    tasks: int = 50_000
    minutes: float = 3.0
    phase: int = 2
    stt_gpus: int = 1
    llm_gpus: int = 1
    self_hosted: int = 1_340
    managed: int = 3_850
    savings_pct: int = 65


BRIEF = Brief()
SWEEP_TASKS = (1_000, 10_000, 50_000, 100_000, 300_000, 1_000_000)
SWEEP_MINUTES = (0.5, 1.0, 3.0, 10.0)
CROSSOVER_MINUTES = (0.5, 1.0, 3.0, 5.0, 10.0)
PHASE_NAMES = {1: "MVP", 2: "Growth", 3: "Scale"}


def _usd(v: float) -> str:
    return f"${v:,.0f}"


def _tasks(v: int) -> str:
    return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}K"


def even_spread_gpu_hours(tasks: int, minutes: float, a: Assumptions) -> float:
    """GPU hours billed if each pool's average load were spread evenly over the month (never
    below the warm minimum): how the planner billed before it followed the daily profile."""
    g, hours = a.gpu, a.load.hours_per_month
    per_gpu = g.stt.audio_minutes_per_gpu_minute * g.target_utilisation
    stt = tasks * minutes / (hours * 60) / per_gpu
    llm = tasks * llm_gpu_seconds_per_task(minutes, a) / (hours * 3600) / g.target_utilisation
    return sum(max(float(g.min_gpus_per_pool), load) * hours for load in (stt, llm))


def example(a: Assumptions) -> str:
    p = plan(BRIEF.tasks, BRIEF.minutes, a)
    m = {line.name: line.monthly_usd for line in p.managed_lines}
    transcribe, bedrock, fixed1 = m.values()
    gpus = sum(line.monthly_usd for line in p.self_hosted_lines[:2])
    fixed = p.self_hosted_lines[2].monthly_usd
    rows = [
        (
            "recommended phase",
            f"{p.recommended_phase} ({PHASE_NAMES[p.recommended_phase]})",
            f"Phase {BRIEF.phase}: {PHASE_NAMES[BRIEF.phase]}",
        ),
        (
            "STT / LLM GPUs",
            f"{p.stt_gpus} / {p.llm_gpus}",
            f"{BRIEF.stt_gpus} / {BRIEF.llm_gpus}",
        ),
        (
            "managed",
            f"{_usd(p.managed_monthly_usd)} (Transcribe {_usd(transcribe)} + Bedrock "
            f"{_usd(bedrock)} + phase 1 platform {_usd(fixed1)})",
            _usd(BRIEF.managed),
        ),
        (
            "self-hosted",
            f"{_usd(p.self_hosted_monthly_usd)} ({p.stt_gpu_hours + p.llm_gpu_hours:,.0f} "
            f"g5.xlarge GPU hours {_usd(gpus)} + phase {p.self_hosted_phase} platform "
            f"{_usd(fixed)})",
            _usd(BRIEF.self_hosted),
        ),
        ("savings", f"{p.savings_pct:.0f}%", f"{BRIEF.savings_pct}%"),
        ("crossover", f"~{p.crossover_tasks_per_month:,} tasks/month", "(chart only)"),
    ]
    out = ["| | ours | the brief |", "|---|---|---|"]
    out += [f"| {k} | {ours} | {brief} |" for k, ours, brief in rows]
    out.append("")
    for s in p.sensitivity:
        out.append(
            f"- `{s.assumption}` = {s.base:g} moved ±20% ({s.low:g} / {s.high:g}): savings "
            f"{s.savings_pct_low:.0f}% / {s.savings_pct_high:.0f}%, crossover "
            f"{s.crossover_low or 0:,} / {s.crossover_high or 0:,} tasks/month"
        )
    return "\n".join(out)


def sweep(a: Assumptions) -> str:
    out = [
        "| tasks/month | audio | phase | STT / LLM GPUs at peak | GPU hours billed "
        "| if spread evenly | self-hosted | managed | savings |",
        "|---:|---:|:---:|:---:|---:|---:|---:|---:|---:|",
    ]
    for tasks in SWEEP_TASKS:
        for minutes in SWEEP_MINUTES:
            p = plan(tasks, minutes, a, with_sensitivity=False)
            hours = p.stt_gpu_hours + p.llm_gpu_hours
            even = even_spread_gpu_hours(tasks, minutes, a)
            out.append(
                f"| {_tasks(tasks)} | {minutes:g} min | {p.recommended_phase} "
                f"| {p.self_hosted_stt_gpus} / {p.self_hosted_llm_gpus} | {hours:,.0f} "
                f"| {even:,.0f} ({100 * (hours / even - 1):+.0f}%) "
                f"| {_usd(p.self_hosted_monthly_usd)} | {_usd(p.managed_monthly_usd)} "
                f"| {p.savings_pct:.0f}% |"
            )
    return "\n".join(out)


def crossovers(a: Assumptions) -> str:
    out = ["| audio | " + " | ".join(f"{m:g} min" for m in CROSSOVER_MINUTES) + " |"]
    out.append("|---|" + "---:|" * len(CROSSOVER_MINUTES))
    values = [crossover_tasks_per_month(m, a) for m in CROSSOVER_MINUTES]
    out.append(
        "| self-hosting cheaper from (tasks/month) | "
        + " | ".join("never" if v is None else f"{v:,}" for v in values)
        + " |"
    )
    return "\n".join(out)


BLOCKS: dict[str, Callable[[Assumptions], str]] = {
    "example": example,
    "sweep": sweep,
    "crossovers": crossovers,
}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- capacity-docs:{name} -->\n)(.*?)(<!-- /capacity-docs:{name} -->)", re.DOTALL
    )


def render(text: str, a: Assumptions | None = None) -> tuple[str, list[str]]:
    """``text`` with every block regenerated, and the names of the blocks that changed."""
    a = a or default_assumptions()
    changed = []
    for name, make in BLOCKS.items():
        pattern = _pattern(name)
        found = pattern.search(text)
        if found is None:
            raise AssumptionError(f"no <!-- capacity-docs:{name} --> block in the document")
        body = make(a) + "\n"
        if found.group(2) != body:
            changed.append(name)
            text = text[: found.start(2)] + body + text[found.end(2) :]
    return text, changed


def stale_blocks(path: Path = DOC) -> list[str]:
    return render(path.read_text(encoding="utf-8"))[1]


def write(path: Path = DOC) -> list[str]:
    text, changed = render(path.read_text(encoding="utf-8"))
    if changed:
        path.write_text(text, encoding="utf-8")
    return changed
