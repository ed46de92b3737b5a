"""The capacity planner: GPUs, monthly costs, the recommended phase and the crossover volume.

Managed (phase 1) = phase 1 platform + Transcribe (tiered, per audio minute) + Bedrock (tokens).
Self-hosted (phase 2 or 3) = that phase's platform + GPU hours of the STT and LLM pools.

GPUs per pool are sized for the peak hour: ceil(peak load / (throughput x target utilisation)),
never below the warm minimum. That count is the pool's KEDA max replicas. GPU *hours* are billed
for the autoscaled fleet: the average load / (throughput x utilisation), never below the warm
minimum, at the Spot/On-Demand blended price.

The self-hosting phase follows from scale: phase 2 while every pool fits phase 2's pool limit,
else phase 3. The recommendation follows from cost: phase 1 until self-hosting saves at least
``phases.min_savings_fraction_to_self_host`` of the managed bill.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from capacity.assumptions import (
    AssumptionError,
    Assumptions,
    default_assumptions,
    iter_leaves,
    with_value,
)
from capacity.pricing import phase_fixed_usd

Phase = Literal[1, 2, 3]

SENSITIVITY_STEP = 0.2
"""Each assumption is moved this share down and up to measure how much it moves the answer."""

_NOT_PERTURBED = frozenset({"load.hours_per_month"})
CROSSOVER_SEARCH = (100, 100_000_000)
"""Volumes (tasks/month) searched for the crossover."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Costs(NamedTuple):
    transcribe_usd: float
    bedrock_usd: float
    managed_fixed_usd: float
    managed_usd: float
    stt_peak_load: float
    llm_peak_load: float
    stt_gpus: int
    llm_gpus: int
    stt_billed_gpus: float
    llm_billed_gpus: float
    stt_gpu_usd: float
    llm_gpu_usd: float
    self_hosted_phase: Phase
    self_hosted_fixed_usd: float
    self_hosted_usd: float
    recommended_phase: Phase


def _transcribe_usd(minutes: float, a: Assumptions) -> float:
    cost, lower = 0.0, 0.0
    for tier in a.transcribe.tiers:
        upper = math.inf if tier.up_to_minutes is None else tier.up_to_minutes
        if minutes > lower:
            cost += (min(minutes, upper) - lower) * tier.usd_per_minute
        lower = upper
    return cost


def _gpu_hourly(instance_type: str, a: Assumptions) -> float:
    inst = a.gpu.instances[instance_type]
    s = a.gpu.spot_share
    return s * inst.spot_usd_per_hour + (1 - s) * inst.on_demand_usd_per_hour


def _pool(avg_load: float, per_gpu: float, a: Assumptions) -> tuple[int, float]:
    """(GPUs at peak, GPUs billed on average) for a load and a per-GPU throughput."""
    capacity = per_gpu * a.gpu.target_utilisation
    peak = avg_load * a.load.peak_to_average / capacity
    floor = a.gpu.min_gpus_per_pool
    return max(floor, math.ceil(peak - 1e-9)), max(float(floor), avg_load / capacity)


def evaluate(tasks_per_month: float, avg_audio_minutes: float, a: Assumptions) -> Costs:
    """All costs for one volume, without the crossover search or sensitivity."""
    hours = a.load.hours_per_month
    billed_minutes = max(avg_audio_minutes, a.transcribe.minimum_billed_seconds / 60)
    transcribe = _transcribe_usd(tasks_per_month * billed_minutes, a)
    b = a.bedrock
    price = b.prices[b.model]
    input_tokens = (
        b.prompt_overhead_tokens + b.transcript_tokens_per_audio_minute * avg_audio_minutes
    )
    per_task = (
        input_tokens * price.input_usd_per_1k_tokens
        + b.output_tokens_per_summary * price.output_usd_per_1k_tokens
    ) / 1000
    bedrock = tasks_per_month * per_task
    managed_fixed = phase_fixed_usd(1, a)
    managed = managed_fixed + transcribe + bedrock

    stt_avg = tasks_per_month * avg_audio_minutes / (hours * 60)  # audio min per wall min
    llm_avg = tasks_per_month * b.output_tokens_per_summary / (hours * 3600)  # tokens/s
    stt_gpus, stt_billed = _pool(stt_avg, a.gpu.stt.audio_minutes_per_gpu_minute, a)
    llm_gpus, llm_billed = _pool(llm_avg, a.gpu.llm.output_tokens_per_second, a)
    stt_usd = stt_billed * _gpu_hourly(a.gpu.stt.instance_type, a) * hours
    llm_usd = llm_billed * _gpu_hourly(a.gpu.llm.instance_type, a) * hours
    self_phase: Phase = 2 if max(stt_gpus, llm_gpus) <= a.gpu.phase2_max_gpus_per_pool else 3
    self_fixed = phase_fixed_usd(self_phase, a)
    self_hosted = self_fixed + stt_usd + llm_usd

    worth_it = managed - self_hosted >= a.phases.min_savings_fraction_to_self_host * managed
    recommended: Phase = self_phase if worth_it else 1
    peak = a.load.peak_to_average
    return Costs(
        transcribe,
        bedrock,
        managed_fixed,
        managed,
        stt_avg * peak,
        llm_avg * peak,
        stt_gpus,
        llm_gpus,
        stt_billed,
        llm_billed,
        stt_usd,
        llm_usd,
        self_phase,
        self_fixed,
        self_hosted,
        recommended,
    )


def crossover_tasks_per_month(avg_audio_minutes: float, a: Assumptions) -> int | None:
    """Smallest monthly volume at which self-hosting costs no more than managed services.

    None when self-hosting never catches up within ``CROSSOVER_SEARCH``.
    """

    def cheaper(tasks: float) -> bool:
        c = evaluate(tasks, avg_audio_minutes, a)
        return c.self_hosted_usd <= c.managed_usd

    lo, hi = CROSSOVER_SEARCH
    steps = 400
    ratio = (hi / lo) ** (1 / steps)
    prev = float(lo)
    if cheaper(prev):
        return lo
    for i in range(1, steps + 1):
        cur = float(lo * ratio**i)
        if cheaper(cur):
            below, above = math.floor(prev), math.ceil(cur)
            while above - below > 1:
                mid = (below + above) // 2
                below, above = (below, mid) if cheaper(mid) else (mid, above)
            return above
        prev = cur
    return None


class Sensitivity(_Frozen):
    """How the answer moves when one assumption moves SENSITIVITY_STEP down and up."""

    assumption: str = Field(description="dotted path of the assumption")
    source: str = Field(description="where its default comes from")
    base: float = Field(description="value used")
    low: float = Field(description="value moved down")
    high: float = Field(description="value moved up")
    savings_usd_low: float = Field(description="monthly savings with the low value, USD")
    savings_usd_high: float = Field(description="monthly savings with the high value, USD")
    savings_pct_low: float
    savings_pct_high: float
    recommended_phase_low: Phase
    recommended_phase_high: Phase
    crossover_low: int | None = Field(description="crossover with the low value, tasks/month")
    crossover_high: int | None = Field(description="crossover with the high value, tasks/month")


class LineItem(_Frozen):
    name: str
    monthly_usd: float


class Plan(_Frozen):
    """The planner's answer for one workload."""

    tasks_per_month: int = Field(description="monthly tasks planned for")
    avg_audio_minutes: float = Field(description="average audio length, minutes")
    recommended_phase: Phase = Field(description="1 MVP (managed), 2 Growth, 3 Scale")
    reason: str = Field(description="why this phase, in one sentence")
    stt_gpus: int = Field(description="STT GPUs the recommended phase runs at peak (0 in phase 1)")
    llm_gpus: int = Field(description="LLM GPUs the recommended phase runs at peak (0 in phase 1)")
    stt_max_replicas: int = Field(description="KEDA maxReplicaCount for the STT pool (1 GPU/pod)")
    llm_max_replicas: int = Field(description="KEDA maxReplicaCount for the LLM pool (1 GPU/pod)")
    self_hosted_phase: Literal[2, 3] = Field(description="phase self-hosting needs at this scale")
    self_hosted_stt_gpus: int = Field(description="STT GPUs at peak if self-hosting")
    self_hosted_llm_gpus: int = Field(description="LLM GPUs at peak if self-hosting")
    self_hosted_monthly_usd: float = Field(description="GPU hours + fixed platform, USD/month")
    managed_monthly_usd: float = Field(description="Transcribe + Bedrock + phase 1 platform")
    savings_usd: float = Field(description="managed minus self-hosted, USD/month")
    savings_pct: float = Field(description="savings as a percentage of the managed cost")
    crossover_tasks_per_month: int | None = Field(
        description="volume from which self-hosting is cheaper, at this audio length"
    )
    managed_lines: tuple[LineItem, ...]
    self_hosted_lines: tuple[LineItem, ...]
    peak_audio_minutes_per_minute: float = Field(description="STT load at the peak hour")
    peak_output_tokens_per_second: float = Field(description="LLM load at the peak hour")
    sensitivity: tuple[Sensitivity, ...] = Field(
        description="the two assumptions that move the savings most"
    )


def _savings(c: Costs) -> tuple[float, float]:
    s = c.managed_usd - c.self_hosted_usd
    return s, 100 * s / c.managed_usd


def sensitivity(
    tasks_per_month: float, avg_audio_minutes: float, a: Assumptions, top: int = 2
) -> tuple[Sensitivity, ...]:
    """The ``top`` assumptions whose +/-SENSITIVITY_STEP change moves the savings most."""
    base_savings, _ = _savings(evaluate(tasks_per_month, avg_audio_minutes, a))
    data = a.model_dump(mode="json")
    del data["sources"]
    ranked: list[tuple[float, str, float, Assumptions, Assumptions]] = []
    for path, value in iter_leaves(data):
        if path in _NOT_PERTURBED or isinstance(value, bool) or not isinstance(value, float):
            continue
        if value == 0:
            continue
        try:
            lo = with_value(a, path, value * (1 - SENSITIVITY_STEP))
            hi = with_value(a, path, value * (1 + SENSITIVITY_STEP))
        except AssumptionError:
            continue  # e.g. a utilisation that would pass 1: not a valid what-if
        moved = max(
            abs(_savings(evaluate(tasks_per_month, avg_audio_minutes, x))[0] - base_savings)
            for x in (lo, hi)
        )
        if moved > 0:
            ranked.append((moved, path, value, lo, hi))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    out = []
    for _, path, value, lo, hi in ranked[:top]:
        c_lo = evaluate(tasks_per_month, avg_audio_minutes, lo)
        c_hi = evaluate(tasks_per_month, avg_audio_minutes, hi)
        s_lo, p_lo = _savings(c_lo)
        s_hi, p_hi = _savings(c_hi)
        out.append(
            Sensitivity(
                assumption=path,
                source=a.source_of(path),
                base=value,
                low=float(f"{value * (1 - SENSITIVITY_STEP):.6g}"),
                high=float(f"{value * (1 + SENSITIVITY_STEP):.6g}"),
                savings_usd_low=round(s_lo, 2),
                savings_usd_high=round(s_hi, 2),
                savings_pct_low=round(p_lo, 1),
                savings_pct_high=round(p_hi, 1),
                recommended_phase_low=c_lo.recommended_phase,
                recommended_phase_high=c_hi.recommended_phase,
                crossover_low=crossover_tasks_per_month(avg_audio_minutes, lo),
                crossover_high=crossover_tasks_per_month(avg_audio_minutes, hi),
            )
        )
    return tuple(out)


def _reason(c: Costs, a: Assumptions) -> str:
    if c.recommended_phase == 1:
        return (
            f"managed services cost ${c.managed_usd:,.0f}/month against "
            f"${c.self_hosted_usd:,.0f} self-hosted; self-hosting must save at least "
            f"{a.phases.min_savings_fraction_to_self_host:.0%}"
        )
    limit = a.gpu.phase2_max_gpus_per_pool
    if c.recommended_phase == 2:
        return (
            f"self-hosting saves ${c.managed_usd - c.self_hosted_usd:,.0f}/month and both pools "
            f"fit phase 2's limit of {limit} GPUs"
        )
    return (
        f"self-hosting saves ${c.managed_usd - c.self_hosted_usd:,.0f}/month and a pool needs "
        f"more than phase 2's limit of {limit} GPUs"
    )


def validate_workload(tasks_per_month: float, avg_audio_minutes: float) -> None:
    """Reject workloads the model is not meant for, naming the field."""
    if not (isinstance(tasks_per_month, int | float) and 1 <= tasks_per_month <= 1e9):
        raise AssumptionError(
            f"invalid tasks_per_month: must be between 1 and 1,000,000,000 (got {tasks_per_month})"
        )
    if not (isinstance(avg_audio_minutes, int | float) and 0 < avg_audio_minutes <= 240):
        raise AssumptionError(
            "invalid avg_audio_minutes: must be above 0 and at most 240 (Transcribe's 4-hour "
            f"limit per file) (got {avg_audio_minutes})"
        )


def plan(
    tasks_per_month: int,
    avg_audio_minutes: float,
    assumptions: Assumptions | None = None,
    *,
    with_sensitivity: bool = True,
) -> Plan:
    """Plan capacity and cost for a workload; the one entry point the CDK app needs."""
    validate_workload(tasks_per_month, avg_audio_minutes)
    a = assumptions or default_assumptions()
    c = evaluate(tasks_per_month, avg_audio_minutes, a)
    savings, pct = _savings(c)
    hosted = c.recommended_phase != 1
    return Plan(
        tasks_per_month=int(tasks_per_month),
        avg_audio_minutes=float(avg_audio_minutes),
        recommended_phase=c.recommended_phase,
        reason=_reason(c, a),
        stt_gpus=c.stt_gpus if hosted else 0,
        llm_gpus=c.llm_gpus if hosted else 0,
        stt_max_replicas=c.stt_gpus if hosted else 0,
        llm_max_replicas=c.llm_gpus if hosted else 0,
        self_hosted_phase=2 if c.self_hosted_phase == 2 else 3,
        self_hosted_stt_gpus=c.stt_gpus,
        self_hosted_llm_gpus=c.llm_gpus,
        self_hosted_monthly_usd=round(c.self_hosted_usd, 2),
        managed_monthly_usd=round(c.managed_usd, 2),
        savings_usd=round(savings, 2),
        savings_pct=round(pct, 1),
        crossover_tasks_per_month=crossover_tasks_per_month(avg_audio_minutes, a),
        managed_lines=(
            LineItem(name="AWS Transcribe", monthly_usd=round(c.transcribe_usd, 2)),
            LineItem(
                name=f"Amazon Bedrock ({a.bedrock.model})", monthly_usd=round(c.bedrock_usd, 2)
            ),
            LineItem(name="phase 1 platform (fixed)", monthly_usd=round(c.managed_fixed_usd, 2)),
        ),
        self_hosted_lines=(
            LineItem(
                name=f"STT GPUs ({a.gpu.stt.instance_type}, {c.stt_billed_gpus:.2f} on average)",
                monthly_usd=round(c.stt_gpu_usd, 2),
            ),
            LineItem(
                name=f"LLM GPUs ({a.gpu.llm.instance_type}, {c.llm_billed_gpus:.2f} on average)",
                monthly_usd=round(c.llm_gpu_usd, 2),
            ),
            LineItem(
                name=f"phase {c.self_hosted_phase} platform (fixed)",
                monthly_usd=round(c.self_hosted_fixed_usd, 2),
            ),
        ),
        peak_audio_minutes_per_minute=round(c.stt_peak_load, 2),
        peak_output_tokens_per_second=round(c.llm_peak_load, 2),
        sensitivity=sensitivity(tasks_per_month, avg_audio_minutes, a) if with_sensitivity else (),
    )


class Series(_Frozen):
    """Monthly cost against volume, for the chart and the web page."""

    avg_audio_minutes: float
    tasks_per_month: tuple[int, ...]
    managed_monthly_usd: tuple[float, ...]
    self_hosted_monthly_usd: tuple[float, ...]
    recommended_phase: tuple[Phase, ...]
    crossover_tasks_per_month: int | None


def cost_series(
    avg_audio_minutes: float,
    assumptions: Assumptions | None = None,
    *,
    lo: int = 1_000,
    hi: int = 1_000_000,
    points: int = 121,
) -> Series:
    """Managed and self-hosted monthly cost at ``points`` volumes spaced evenly on a log axis."""
    validate_workload(lo, avg_audio_minutes)
    a = assumptions or default_assumptions()
    ratio = (hi / lo) ** (1 / (points - 1))
    tasks = tuple(sorted({round(lo * ratio**i) for i in range(points)}))
    costs = [evaluate(t, avg_audio_minutes, a) for t in tasks]
    return Series(
        avg_audio_minutes=avg_audio_minutes,
        tasks_per_month=tasks,
        managed_monthly_usd=tuple(round(c.managed_usd, 2) for c in costs),
        self_hosted_monthly_usd=tuple(round(c.self_hosted_usd, 2) for c in costs),
        recommended_phase=tuple(c.recommended_phase for c in costs),
        crossover_tasks_per_month=crossover_tasks_per_month(avg_audio_minutes, a),
    )
