"""``python -m capacity {plan,crossover,cost,serve,assumptions,docs}``.

Bad input prints one line naming the field and exits 2; nothing is half-written. Inputs outside
the brief's ranges (1K-1M tasks/month, 0.5-10 min) are planned all the same, with a
``warning:`` line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from capacity.assumptions import AssumptionError, Assumptions, iter_leaves, load_assumptions
from capacity.model import DEFAULT_MINUTES, DEFAULT_TASKS, Plan, cost_series, plan
from capacity.usage import DAYS_LIMITS, Usage, UsageError, plan_from_usage, read_usage

PHASE_NAMES = {1: "MVP", 2: "Growth", 3: "Scale"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _by_hour(gpus: tuple[int, ...]) -> str:
    return "00-23h  " + " ".join(str(n) for n in gpus)


def _usd(v: float) -> str:
    return f"${v:,.0f}"


def _count(v: int | None) -> str:
    return "never (within 100M tasks/month)" if v is None else f"{v:,}"


def render_plan(p: Plan) -> str:
    m = {line.name: line.monthly_usd for line in p.managed_lines}
    s = [line.monthly_usd for line in p.self_hosted_lines]
    rows = [
        ("recommended phase", f"{p.recommended_phase} ({PHASE_NAMES[p.recommended_phase]})"),
        ("why", p.reason),
        (
            "STT GPUs / LLM GPUs",
            f"{p.stt_gpus} / {p.llm_gpus}"
            f"   (if self-hosting: {p.self_hosted_stt_gpus} / {p.self_hosted_llm_gpus}, "
            f"phase {p.self_hosted_phase})",
        ),
        ("KEDA max replicas", f"stt {p.stt_max_replicas}, llm {p.llm_max_replicas}"),
        (
            "GPU hours / month",
            f"stt {p.stt_gpu_hours:,.0f}, llm {p.llm_gpu_hours:,.0f}   (if self-hosting; "
            f"whole GPUs each hour, busiest hour {p.peak_to_average:.2g}x the average)",
        ),
        ("STT GPUs by hour", _by_hour(p.stt_gpus_by_hour)),
        ("LLM GPUs by hour", _by_hour(p.llm_gpus_by_hour)),
        (
            "self-hosted monthly",
            f"{_usd(p.self_hosted_monthly_usd)}   (GPUs "
            f"{_usd(s[0] + s[1])} + phase {p.self_hosted_phase} platform {_usd(s[2])})",
        ),
        (
            "managed monthly",
            f"{_usd(p.managed_monthly_usd)}   ("
            + " + ".join(f"{k} {_usd(v)}" for k, v in m.items())
            + ")",
        ),
        ("savings", f"{p.savings_pct:.1f}%   ({_usd(p.savings_usd)}/month)"),
        (
            "crossover",
            f"{_count(p.crossover_tasks_per_month)} tasks/month at {p.avg_audio_minutes:g} min",
        ),
        (
            "peak load",
            f"{p.peak_audio_minutes_per_minute:g} audio min/min (STT), "
            f"{p.peak_output_tokens_per_second:g} output tokens/s from "
            f"{p.llm_input_tokens_per_task:,.0f}-token prompts (LLM)",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"Capacity plan: {p.tasks_per_month:,} tasks/month x {p.avg_audio_minutes:g} min audio"]
    out += [f"  {k:<{width}}  {v}" for k, v in rows]
    if p.sensitivity:
        out.append("Assumptions that move the answer most (each moved -20% / +20%):")
        for x in p.sensitivity:
            out.append(
                f"  {x.assumption} = {x.base:g} ({x.low:g} / {x.high:g}): savings "
                f"{x.savings_pct_low:.1f}% / {x.savings_pct_high:.1f}%, crossover "
                f"{_count(x.crossover_low)} / {_count(x.crossover_high)}, phase "
                f"{x.recommended_phase_low} / {x.recommended_phase_high}"
            )
            out.append(f"    source: {x.source}")
    return "\n".join(out)


def render_usage(u: Usage) -> str:
    pct = u.audio_minutes_percentiles
    length = (
        "not measured"
        if u.avg_audio_minutes is None
        else f"mean {u.avg_audio_minutes:.2f} min, p50 {pct['p50']:.2f}, p90 {pct['p90']:.2f}, "
        f"p99 {pct['p99']:.2f}, max {pct['max']:.2f}   ({u.measured_tasks:,} measured)"
    )
    average_hour = u.tasks / (u.days * 24)
    busiest = (
        f"{u.busiest_hour:%Y-%m-%d %H:00} UTC, {u.busiest_hour_tasks:,} tasks "
        f"({u.busiest_hour_tasks / average_hour:.1f}x the average hour)"
        if u.busiest_hour
        else "-"
    )
    rows = [
        ("tasks / month", f"{u.tasks_per_month:,.0f}"),
        ("audio length", length),
        ("tasks by hour", "00-23h UTC  " + " ".join(f"{n:,}" for n in u.tasks_by_hour)),
        ("busiest hour", busiest),
    ]
    out = [
        f"Measured usage: {u.tasks:,} tasks queued {u.since:%Y-%m-%d %H:%M} to "
        f"{u.until:%Y-%m-%d %H:%M} UTC ({u.days} days) in {u.database}"
    ]
    out += [f"  {k:<14}  {v}" for k, v in rows]
    return "\n".join(out)


def _add_assumption_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--assumptions",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="TOML or JSON file overriding defaults (same shape as defaults.toml)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        dest="sets",
        help="override one assumption, e.g. --set gpu.spot_share=0.7",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m capacity", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("plan", help="phase, GPUs and monthly cost for a workload")
    p.add_argument(
        "--tasks-per-month",
        type=int,
        default=None,
        help=f"monthly tasks (default {DEFAULT_TASKS:,}; with --from-usage: the measured volume)",
    )
    p.add_argument(
        "--avg-audio-minutes",
        type=float,
        default=None,
        help=f"average audio length (default {DEFAULT_MINUTES:g}; with --from-usage: measured)",
    )
    p.add_argument(
        "--from-usage",
        action="store_true",
        help="plan from the tasks in DATABASE_URL (read-only): volume, audio lengths and "
        "hourly profile; --tasks-per-month / --avg-audio-minutes then replace the measured value",
    )
    p.add_argument(
        "--days",
        type=int,
        default=30,
        help=f"with --from-usage: the last N days of tasks ({DAYS_LIMITS[0]}-{DAYS_LIMITS[1]}, "
        "default 30)",
    )
    p.add_argument("--json", action="store_true")
    _add_assumption_args(p)

    c = sub.add_parser("crossover", help="draw managed vs self-hosted cost against volume")
    c.add_argument("--out", type=Path, default=Path("crossover.png"))
    c.add_argument("--avg-audio-minutes", type=float, default=3.0)
    c.add_argument("--tasks-per-month", type=int, default=None, help="mark this volume")
    _add_assumption_args(c)

    k = sub.add_parser("cost", help="fixed monthly cost of a synthesized cloud assembly")
    k.add_argument("assembly", type=Path)
    k.add_argument("--json", action="store_true")
    _add_assumption_args(k)

    s = sub.add_parser("serve", help="the interactive planner page")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0, help="0 picks a free port")
    _add_assumption_args(s)

    a = sub.add_parser("assumptions", help="every assumption with its value and source")
    a.add_argument("--json", action="store_true")
    _add_assumption_args(a)

    d = sub.add_parser("docs", help="regenerate the tables of docs/capacity.md (defaults only)")
    d.add_argument("file", type=Path, nargs="?", default=None, help="default: docs/capacity.md")
    d.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")
    return parser


def _cost(args: argparse.Namespace, a: Assumptions) -> str:
    from capacity.assembly import estimate_assembly  # noqa: PLC0415 - only this command needs it

    result = estimate_assembly(args.assembly, a)
    if args.json:
        return result.model_dump_json(indent=2)
    out = [f"Fixed monthly cost of {result.assembly} (usage-billed traffic not included)"]
    for line in result.lines:
        usd = "unpriced" if line.monthly_usd is None else f"{line.monthly_usd:>10,.2f}"
        out.append(
            f"  {usd:>10}  {line.stack}/{line.logical_id}  {line.resource_type}: {line.detail}"
        )
    out.append(f"  {result.total_monthly_usd:>10,.2f}  TOTAL USD/month")
    unpriced = sum(1 for line in result.lines if not line.priced)
    if unpriced:
        out.append(f"  {unpriced} resource(s) unpriced: not in the total")
    if result.usage_based:
        counted = ", ".join(f"{t} x{n}" for t, n in result.usage_based.items())
        out.append(f"  no fixed cost (usage-billed or free): {counted}")
    return "\n".join(out)


def _assumptions(args: argparse.Namespace, a: Assumptions) -> str:
    data = a.model_dump(mode="json")
    del data["sources"]
    rows = [(path, value, a.source_of(path)) for path, value in iter_leaves(data)]
    if args.json:
        return json.dumps([{"path": p, "value": v, "source": s} for p, v, s in rows], indent=2)
    return "\n".join(f"{p} = {v!r}    # {s}" for p, v, s in rows)


def _warn(lines: Sequence[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def _plan(args: argparse.Namespace, a: Assumptions) -> str:
    if not args.from_usage:
        tasks = DEFAULT_TASKS if args.tasks_per_month is None else args.tasks_per_month
        minutes = DEFAULT_MINUTES if args.avg_audio_minutes is None else args.avg_audio_minutes
        result = plan(tasks, minutes, a)
        _warn(result.warnings)
        return result.model_dump_json(indent=2) if args.json else render_plan(result)
    usage = read_usage(
        os.environ.get("DATABASE_URL"), args.days, hours_per_month=a.load.hours_per_month
    )
    result = plan_from_usage(
        usage, a, tasks_per_month=args.tasks_per_month, avg_audio_minutes=args.avg_audio_minutes
    )
    _warn(usage.warnings + result.warnings)
    if args.json:
        return json.dumps(
            {**result.model_dump(mode="json"), "usage": usage.model_dump(mode="json")}, indent=2
        )
    return render_usage(usage) + "\n" + render_plan(result)


def _docs(args: argparse.Namespace) -> int:
    from capacity import docs  # noqa: PLC0415 - only this command renders the docs

    path = args.file or docs.DOC
    if args.check:
        stale = docs.stale_blocks(path)
        if stale:
            print(
                f"{path}: out of date: {', '.join(stale)} (run `make capacity-docs`)",
                file=sys.stderr,
            )
            return 1
        print(f"{path}: up to date")
        return 0
    changed = docs.write(path)
    print(f"{path}: {'updated ' + ', '.join(changed) if changed else 'already up to date'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "docs":
            return _docs(args)
        a = load_assumptions(args.assumptions, args.sets)
        if args.command == "plan":
            print(_plan(args, a))
        elif args.command == "crossover":
            from capacity.chart import write_png  # noqa: PLC0415 - matplotlib only when drawing

            if args.tasks_per_month is not None:
                plan(args.tasks_per_month, args.avg_audio_minutes, a, with_sensitivity=False)
            series = cost_series(args.avg_audio_minutes, a)
            write_png(series, args.out, marker_tasks=args.tasks_per_month)
            print(
                f"wrote {args.out} (crossover at "
                f"{_count(series.crossover_tasks_per_month)} tasks/month)"
            )
        elif args.command == "cost":
            print(_cost(args, a))
        elif args.command == "assumptions":
            print(_assumptions(args, a))
        else:
            from capacity.server import serve  # noqa: PLC0415

            serve(a, args.host, args.port, database_url=os.environ.get("DATABASE_URL"))
    except (AssumptionError, UsageError) as exc:
        print(f"python -m capacity {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0
