"""`make bench-report`: the README's performance tables, regenerated from benchmarks/results/.

For each kind of result (`make_test-*`, `api_cpu-*`, `api_bench-*`, `pipeline_bench-*`) it takes
every file labelled `before` and every file labelled `after` (BENCH_LABEL when it was written;
an unlabelled one counts as `after`), reports the median of each figure over the runs of a
label (the benchmarks share the machine with whatever else runs on it: one run can be off by a
quarter), and rewrites the README between the markers `<!-- bench-report:begin -->` and
`<!-- bench-report:end -->`. Every run of a kind must come from one machine, or it stops with
an error. `--check` only says whether the README is current (exit 1 when not).
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from support import RESULTS, ROOT, minutes_and_seconds

README = ROOT / "README.md"
BEGIN, END = "<!-- bench-report:begin -->", "<!-- bench-report:end -->"
SERVICES = ("s3", "sqs", "db", "redis")


def median(values: list[Any]) -> Any:
    """The median of each number across runs (dicts by key, lists by position); anything else,
    and any flag, as the newest run has it."""
    newest = values[-1]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        middle = statistics.median(values)
        whole = all(isinstance(v, int) for v in values) and middle == int(middle)
        return int(middle) if whole else round(middle, 3)
    if all(isinstance(v, dict) for v in values):
        return {k: median([v[k] for v in values if k in v]) for k in newest}
    if all(isinstance(v, list) and len(v) == len(newest) for v in values):
        return [median([v[i] for v in values]) for i in range(len(newest))]
    return newest


class MixedMachines(Exception):
    """The runs of one kind were made on different machines."""


def machine_of(document: dict[str, Any]) -> str:
    machine = document.get("machine", {})
    return f"{machine.get('cpus', '?')} cores ({machine.get('cpu_model', 'unknown CPU')})"


def summarized(kind: str, label: str) -> tuple[list[Path], dict[str, Any]] | None:
    """The runs of `kind` labelled `label` and the median of their figures. Every run of a
    kind, before and after, must come from one machine: a median or a comparison across
    machines says nothing about the code (`MixedMachines`)."""
    runs = [(path, json.loads(path.read_text())) for path in sorted(RESULTS.glob(f"{kind}-*.json"))]
    machines = sorted({machine_of(document) for _, document in runs})
    if len(machines) > 1:
        raise MixedMachines(
            f"benchmarks/results/ holds {kind} runs from {len(machines)} machines"
            f" ({'; '.join(machines)}): keep one machine's runs (older ones stay in git history)"
        )
    found = [(path, d) for path, d in runs if (d.get("label") or "after") == label]
    if not found:
        return None
    return [path for path, _ in found], median([document for _, document in found])


def conditions(paths: list[Path], document: dict[str, Any]) -> str:
    machine = document.get("machine", {})
    load = machine.get("load_average_at_start")
    busy = f", load average {load[0]:g} at start" if load else ""
    runs = (
        f"`{paths[0].relative_to(ROOT)}`"
        if len(paths) == 1
        else f"median of {len(paths)} runs (`{paths[0].relative_to(ROOT)}` and"
        f" {len(paths) - 1} more)"
    )
    return (
        f"{runs}: {machine.get('cpus', '?')} cores"
        f" ({machine.get('cpu_model', 'unknown CPU')}), Python {machine.get('python', '?')}{busy}"
    )


def suite_section() -> list[str]:
    if summarized("make_test", "after") is None:
        return []
    lines = ["`make time-test` (`make test`: lint, then pytest; wall and CPU seconds):", ""]
    lines += ["| | wall | CPU seconds | pytest | measured |", "|---|---|---|---|---|"]
    for label in ("before", "after"):
        found = summarized("make_test", label)
        if found is None:
            continue
        path, d = found
        wall = d["wall_seconds"]
        lines.append(
            f"| {label} | {minutes_and_seconds(wall)} | {d['cpu_seconds']:.0f}"
            f" | {d['pytest']} | {conditions(path, d)}; `{d['command']}` |"
        )
    return lines


def api_section() -> list[str]:
    lines = [
        "`make bench-api` (the API as the image runs it, real PostgreSQL and Redis, moto for S3"
        " and SQS, the load generator on the same cores; the anchor is pgbench's single-row"
        " INSERT + COMMIT rate at 16 clients in the same run):",
        "",
        "| operation | clients | req/s before | req/s after | p99 ms before | p99 ms after"
        " | API CPU ms/req before | API CPU ms/req after | PostgreSQL / client CPU ms/req after"
        " | cores busy after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    before, after = summarized("api_bench", "before"), summarized("api_bench", "after")
    if after is None:
        return []
    rows_before = {
        (r["operation"], r["concurrency"]): r for r in (before[1]["results"] if before else [])
    }
    for row in after[1]["results"]:
        old = rows_before.get((row["operation"], row["concurrency"]), {})
        lines.append(
            f"| {row['operation']} | {row['concurrency']} | {old.get('throughput_rps', '')}"
            f" | {row['throughput_rps']} | {old.get('p99_ms', '')} | {row['p99_ms']}"
            f" | {old.get('api_cpu_ms_per_request', '')} | {row['api_cpu_ms_per_request']}"
            f" | {row.get('database_cpu_ms_per_request', '')}"
            f" / {row.get('client_cpu_ms_per_request', '')}"
            f" | {row.get('machine_busy_percent', '')}% |"
        )
    lines.append("")
    for label, found in (("before", before), ("after", after)):
        if found is None:
            continue
        path, d = found
        shares = ", ".join(
            f"{name} {facts['share_of_anchor']:.1%} (target {facts['share_target']:.0%}),"
            f" p99 at 1 client {facts['p99_ms_1_client']} ms"
            for name, facts in d["summary"].items()
        )
        workers = d["api_workers"]
        processes = (
            "one API process per core" if workers == "per core" else f"{workers} API process(es)"
        )
        lines.append(
            f"- {label}: {processes}; anchor"
            f" {d['anchor']['tps']:.0f} inserts/s; {shares}; {conditions(path, d)}."
        )
    return lines


def api_cpu_section() -> list[str]:
    before, after = summarized("api_cpu", "before"), summarized("api_cpu", "after")
    if after is None:
        return []
    lines = [
        "`make bench-api-cpu` (the app's own CPU time per request, in process, no server or"
        " client; the least of several rounds, the figure a busy machine disturbs least):",
        "",
        "| operation | CPU ms/request before | after | change |",
        "|---|---|---|---|",
    ]
    old = before[1]["cpu_ms_per_request"] if before else {}
    for name, ms in after[1]["cpu_ms_per_request"].items():
        change = f"{ms / old[name] - 1:+.0%}" if name in old else ""
        lines.append(f"| {name} | {old.get(name, '')} | {ms} | {change} |")
    lines.append("")
    for label, found in (("before", before), ("after", after)):
        if found is not None:
            lines.append(f"- {label}: {conditions(*found)}.")
    return lines


def pipeline_section() -> list[str]:
    before, after = summarized("pipeline_bench", "before"), summarized("pipeline_bench", "after")
    if after is None:
        return []
    lines = [
        "`make bench-pipeline` (worker processes with instant providers, real PostgreSQL and"
        " Redis, moto for S3 and SQS, all on the same cores; overhead is a task's time in the"
        " workers outside the providers; calls are counted and timed in the workers, per"
        " completed task, receives left out of the times):",
        "",
        "| workers x jobs | | tasks/min | overhead mean / p95 ms | worker CPU ms/task"
        " | moto / PostgreSQL / Redis / driver CPU ms/task | cores busy | "
        + " | ".join(f"{s} calls" for s in SERVICES)
        + " | ms in "
        + " / ".join(SERVICES)
        + " calls |",
        "|---|---|---|---|---|---|---|" + "---|" * (len(SERVICES) + 1),
    ]
    old_rows = {
        (r["workers"], r["concurrency_per_worker"]): r
        for r in (before[1]["results"] if before else [])
    }
    for row in after[1]["results"]:
        key = (row["workers"], row["concurrency_per_worker"])
        for label, r in (("before", old_rows.get(key)), ("after", row)):
            if r is None:
                continue
            o = r["overhead_ms_per_task"]
            calls = r["calls_per_task"]["services"]
            others = " / ".join(f"{v:g}" for v in r.get("others_cpu_ms_per_task", {}).values())
            busy = r.get("machine_busy_percent")
            lines.append(
                f"| {key[0]} x {key[1]} | {label} | {r['tasks_per_minute']}"
                f" | {o['mean']} / {o['p95']} | {r.get('worker_cpu_ms_per_task', '')}"
                f" | {others} | {'' if busy is None else f'{busy:g}%'} | "
                + " | ".join(f"{calls.get(s, 0):g}" for s in SERVICES)
                + " | "
                + " / ".join(f"{v:g}" for v in r["calls_per_task"].get("ms_in_calls", {}).values())
                + " |"
            )
    lines.append("")
    for label, found in (("before", before), ("after", after)):
        if found is not None:
            lines.append(f"- {label}: {conditions(*found)}.")
    return lines


def render() -> str:
    parts = [BEGIN, "<!-- generated by `make bench-report` from benchmarks/results/ -->", ""]
    for section in (suite_section(), api_cpu_section(), api_section(), pipeline_section()):
        if section:
            parts += [*section, ""]
    parts.append(END)
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"error: README.md has no {BEGIN} ... {END} section", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    try:
        updated = head + render() + tail
    except MixedMachines as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if "--check" in argv:
        if updated != text:
            print("README.md's performance tables are stale: run `make bench-report`")
            return 1
        return 0
    README.write_text(updated)
    print("README.md: performance tables regenerated from benchmarks/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
