"""The capacity planner: GPUs, monthly costs, the recommended phase and the crossover volume.

Managed (phase 1) = phase 1 platform + Transcribe (tiered, per audio minute) + Bedrock (tokens).
Self-hosted (phase 2 or 3) = that phase's platform + GPU hours of the STT and LLM pools.

Load follows the day: ``load.hourly_profile`` spreads each day's tasks over the 24 hours. In each
hour a pool runs whole GPUs, ceil(that hour's load / (throughput x target utilisation)), never
below the warm minimum; the month is billed for the sum of those GPU hours (every day has the same
shape), each hour's GPUs split into On-Demand and Spot by ``gpu.on_demand_base_gpus`` and
``gpu.spot_share``. The busiest hour's GPUs are the pool's KEDA max replicas.

STT load is audio minutes per wall-clock minute. LLM load is GPU time: each summary prefills its
prompt (overhead + transcript tokens, which grow with the audio) and decodes its output, at the
per-GPU prefill and decode throughputs.

The self-hosting phase follows from scale: phase 2 while every pool fits phase 2's pool limit,
else phase 3. The recommendation follows from cost: phase 1 until self-hosting saves at least
``phases.min_savings_fraction_to_self_host`` of the managed bill.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from capacity.assumptions import (
    HOURS_PER_DAY,
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

_NOT_PERTURBED = ("load.hours_per_month", "load.hourly_profile")
CROSSOVER_SEARCH = (100, 100_000_000)
"""Volumes (tasks/month) searched for the crossover."""

DEFAULT_TASKS = 50_000
DEFAULT_MINUTES = 3.0
"""The brief's example: the workload planned when none is given."""
TASKS_LIMITS = (1, 1_000_000_000)
MINUTES_LIMITS = (0.0, 240.0)  # above 0; Transcribe takes files of at most 4 hours
QUANTILE_MAX = 24 * 60.0  # a measured file may be longer than Transcribe takes; not a day
BRIEF_TASKS = (1_000, 1_000_000)
BRIEF_MINUTES = (0.5, 10.0)
"""The brief's slider ranges: outside them the plan is still computed, with a warning."""

MAX_GPUS_PER_POOL = 1_000_000
"""A pool that would need more GPUs than this in one hour means an assumption is off by orders."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Pool(NamedTuple):
    """One GPU pool over the day: GPUs in each hour, billed GPU hours and their cost per month."""

    by_hour: tuple[int, ...]
    gpu_hours: float
    usd: float

    @property
    def peak(self) -> int:
        return max(self.by_hour)


class Costs(NamedTuple):
    transcribe_usd: float
    bedrock_usd: float
    managed_fixed_usd: float
    managed_usd: float
    stt_peak_load: float
    llm_peak_load: float
    llm_input_tokens: float
    stt: Pool
    llm: Pool
    self_hosted_phase: Phase
    self_hosted_fixed_usd: float
    self_hosted_usd: float
    recommended_phase: Phase

    @property
    def stt_gpus(self) -> int:
        return self.stt.peak

    @property
    def llm_gpus(self) -> int:
        return self.llm.peak


def _transcribe_usd(minutes: float, a: Assumptions) -> float:
    cost, lower = 0.0, 0.0
    for tier in a.transcribe.tiers:
        upper = math.inf if tier.up_to_minutes is None else tier.up_to_minutes
        if minutes > lower:
            cost += (min(minutes, upper) - lower) * tier.usd_per_minute
        lower = upper
    return cost


def billed_minutes_per_task(
    avg_audio_minutes: float, a: Assumptions, quantiles: Sequence[float] | None = None
) -> float:
    """Transcribe minutes billed per task: the mean, plus what the per-request minimum adds.

    ``quantiles`` are equal-mass points of the audio-length distribution (minutes); without them
    every task is taken to be ``avg_audio_minutes`` long.
    """
    floor = a.transcribe.minimum_billed_seconds / 60
    points = quantiles or (avg_audio_minutes,)
    top_up = math.fsum(max(q, floor) - q for q in points) / len(points)
    return avg_audio_minutes + top_up


def _whole_gpus(load: float, capacity: float, path: str) -> int:
    need = load / capacity
    if not need <= MAX_GPUS_PER_POOL:
        raise AssumptionError(
            f"invalid {path}: a pool would need more than {MAX_GPUS_PER_POOL:,} GPUs in one "
            "hour at this throughput"
        )
    return math.ceil(need - 1e-9)


def _pool(avg_load: float, per_gpu: float, instance_type: str, path: str, a: Assumptions) -> Pool:
    """Whole GPUs per hour for a load whose daily average is ``avg_load`` (per GPU: ``per_gpu``)."""
    capacity = per_gpu * a.gpu.target_utilisation
    floor = a.gpu.min_gpus_per_pool
    by_hour = tuple(
        max(floor, _whole_gpus(avg_load * HOURS_PER_DAY * share, capacity, path))
        for share in a.load.hourly_shares
    )
    days = a.load.hours_per_month / HOURS_PER_DAY
    base = a.gpu.on_demand_base_gpus
    on_demand_base = sum(min(n, base) for n in by_hour)
    above = sum(max(n - base, 0) for n in by_hour)
    inst = a.gpu.instances[instance_type]
    s = a.gpu.spot_share
    usd_per_day = on_demand_base * inst.on_demand_usd_per_hour + above * (
        s * inst.spot_usd_per_hour + (1 - s) * inst.on_demand_usd_per_hour
    )
    return Pool(by_hour=by_hour, gpu_hours=days * sum(by_hour), usd=days * usd_per_day)


def llm_input_tokens(avg_audio_minutes: float, a: Assumptions) -> float:
    """Prompt tokens of one summary: the instructions plus the transcript."""
    t = a.summary
    return t.prompt_overhead_tokens + t.transcript_tokens_per_audio_minute * avg_audio_minutes


def llm_gpu_seconds_per_task(avg_audio_minutes: float, a: Assumptions) -> float:
    """GPU time of one summary on vLLM: prefill of the prompt, then decode of the output."""
    llm = a.gpu.llm
    return (
        llm_input_tokens(avg_audio_minutes, a) / llm.prefill_tokens_per_second
        + a.summary.output_tokens / llm.decode_tokens_per_second
    )


def evaluate(
    tasks_per_month: float,
    avg_audio_minutes: float,
    a: Assumptions,
    quantiles: Sequence[float] | None = None,
) -> Costs:
    """All costs for one volume, without the crossover search or sensitivity."""
    hours = a.load.hours_per_month
    transcribe = _transcribe_usd(
        tasks_per_month * billed_minutes_per_task(avg_audio_minutes, a, quantiles), a
    )
    price = a.bedrock.prices[a.bedrock.model]
    input_tokens = llm_input_tokens(avg_audio_minutes, a)
    per_task = (
        input_tokens * price.input_usd_per_1k_tokens
        + a.summary.output_tokens * price.output_usd_per_1k_tokens
    ) / 1000
    bedrock = tasks_per_month * per_task
    managed_fixed = phase_fixed_usd(1, a)
    managed = managed_fixed + transcribe + bedrock

    stt_avg = tasks_per_month * avg_audio_minutes / (hours * 60)  # audio min per wall min
    llm_avg = tasks_per_month * llm_gpu_seconds_per_task(avg_audio_minutes, a) / (hours * 3600)
    g = a.gpu
    stt = _pool(
        stt_avg,
        g.stt.audio_minutes_per_gpu_minute,
        g.stt.instance_type,
        "gpu.stt.audio_minutes_per_gpu_minute",
        a,
    )
    llm = _pool(  # load in GPU-seconds per second
        llm_avg,
        1.0,
        g.llm.instance_type,
        "gpu.llm.prefill_tokens_per_second or gpu.llm.decode_tokens_per_second",
        a,
    )
    self_phase: Phase = 2 if max(stt.peak, llm.peak) <= g.phase2_max_gpus_per_pool else 3
    self_fixed = phase_fixed_usd(self_phase, a)
    self_hosted = self_fixed + stt.usd + llm.usd

    worth_it = managed - self_hosted >= a.phases.min_savings_fraction_to_self_host * managed
    recommended: Phase = self_phase if worth_it else 1
    peak = a.load.peak_to_average
    output_tokens_per_second = tasks_per_month * a.summary.output_tokens / (hours * 3600)
    return Costs(
        transcribe,
        bedrock,
        managed_fixed,
        managed,
        stt_avg * peak,
        output_tokens_per_second * peak,
        input_tokens,
        stt,
        llm,
        self_phase,
        self_fixed,
        self_hosted,
        recommended,
    )


def crossover_tasks_per_month(
    avg_audio_minutes: float, a: Assumptions, quantiles: Sequence[float] | None = None
) -> int | None:
    """Smallest monthly volume at which self-hosting costs no more than managed services.

    None when self-hosting never catches up within ``CROSSOVER_SEARCH``.
    """

    def cheaper(tasks: float) -> bool:
        c = evaluate(tasks, avg_audio_minutes, a, quantiles)
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
    stt_gpus_by_hour: tuple[int, ...] = Field(
        description="STT GPUs running in each hour 0..23 if self-hosting"
    )
    llm_gpus_by_hour: tuple[int, ...] = Field(
        description="LLM GPUs running in each hour 0..23 if self-hosting"
    )
    stt_gpu_hours: float = Field(description="STT GPU hours billed per month if self-hosting")
    llm_gpu_hours: float = Field(description="LLM GPU hours billed per month if self-hosting")
    self_hosted_monthly_usd: float = Field(description="GPU hours + fixed platform, USD/month")
    managed_monthly_usd: float = Field(description="Transcribe + Bedrock + phase 1 platform")
    savings_usd: float = Field(description="managed minus self-hosted, USD/month")
    savings_pct: float = Field(description="savings as a percentage of the managed cost")
    crossover_tasks_per_month: int | None = Field(
        description="volume from which self-hosting is cheaper, at this audio length"
    )
    managed_lines: tuple[LineItem, ...]
    self_hosted_lines: tuple[LineItem, ...]
    peak_to_average: float = Field(description="busiest hour / average hour of the daily profile")
    peak_audio_minutes_per_minute: float = Field(description="STT load at the peak hour")
    peak_output_tokens_per_second: float = Field(description="LLM output at the peak hour")
    llm_input_tokens_per_task: float = Field(description="prompt tokens of one summary")
    warnings: tuple[str, ...] = Field(
        description="inputs outside the brief's ranges (1K-1M tasks, 0.5-10 min): still computed"
    )
    sensitivity: tuple[Sensitivity, ...] = Field(
        description="the two assumptions that move the savings most"
    )


def _savings(c: Costs) -> tuple[float, float]:
    s = c.managed_usd - c.self_hosted_usd
    return s, 100 * s / c.managed_usd


def _perturbed(path: str) -> bool:
    return not any(path == p or path.startswith(p + ".") for p in _NOT_PERTURBED)


def sensitivity(
    tasks_per_month: float,
    avg_audio_minutes: float,
    a: Assumptions,
    top: int = 2,
    quantiles: Sequence[float] | None = None,
) -> tuple[Sensitivity, ...]:
    """The ``top`` assumptions whose +/-SENSITIVITY_STEP change moves the savings most."""
    base_savings, _ = _savings(evaluate(tasks_per_month, avg_audio_minutes, a, quantiles))
    data = a.model_dump(mode="json")
    del data["sources"]
    ranked: list[tuple[float, str, float, Assumptions, Assumptions]] = []
    for path, value in iter_leaves(data):
        if not _perturbed(path) or isinstance(value, bool) or not isinstance(value, float):
            continue
        if value == 0:
            continue
        try:
            lo = with_value(a, path, value * (1 - SENSITIVITY_STEP))
            hi = with_value(a, path, value * (1 + SENSITIVITY_STEP))
            moved = max(
                abs(
                    _savings(evaluate(tasks_per_month, avg_audio_minutes, x, quantiles))[0]
                    - base_savings
                )
                for x in (lo, hi)
            )
        except AssumptionError:
            continue  # e.g. a utilisation that would pass 1: not a valid what-if
        if moved > 0 and math.isfinite(moved):
            ranked.append((moved, path, value, lo, hi))
    ranked.sort(key=lambda r: (-r[0], r[1]))
    out = []
    for _, path, value, lo, hi in ranked[:top]:
        c_lo = evaluate(tasks_per_month, avg_audio_minutes, lo, quantiles)
        c_hi = evaluate(tasks_per_month, avg_audio_minutes, hi, quantiles)
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
                crossover_low=crossover_tasks_per_month(avg_audio_minutes, lo, quantiles),
                crossover_high=crossover_tasks_per_month(avg_audio_minutes, hi, quantiles),
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


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_workload(
    tasks_per_month: float,
    avg_audio_minutes: float,
    quantiles: Sequence[float] | None = None,
) -> None:
    """Reject workloads the model is not meant for (inf and NaN included), naming the field."""
    low, high = TASKS_LIMITS
    if not (_is_number(tasks_per_month) and low <= tasks_per_month <= high):
        raise AssumptionError(
            f"invalid tasks_per_month: must be between {low:,} and {high:,} (got {tasks_per_month})"
        )
    above, most = MINUTES_LIMITS
    if not (_is_number(avg_audio_minutes) and above < avg_audio_minutes <= most):
        raise AssumptionError(
            f"invalid avg_audio_minutes: must be above {above:g} and at most {most:g} "
            f"(Transcribe's 4-hour limit per file) (got {avg_audio_minutes})"
        )
    if quantiles is not None and not (
        len(quantiles) > 0 and all(_is_number(q) and 0 <= q <= QUANTILE_MAX for q in quantiles)
    ):
        raise AssumptionError(
            f"invalid audio quantiles: must be minutes from 0 to {QUANTILE_MAX:g} "
            f"(got {quantiles!r})"
        )


def workload_warnings(tasks_per_month: float, avg_audio_minutes: float) -> tuple[str, ...]:
    """One line per input outside the brief's ranges; the plan is computed all the same."""
    out = []
    lo, hi = BRIEF_TASKS
    if not lo <= tasks_per_month <= hi:
        out.append(
            f"tasks_per_month {tasks_per_month:,.0f} is outside the brief's {lo:,}-{hi:,}: "
            "the assumptions were chosen for that range"
        )
    lo_m, hi_m = BRIEF_MINUTES
    if not lo_m <= avg_audio_minutes <= hi_m:
        out.append(
            f"avg_audio_minutes {avg_audio_minutes:g} is outside the brief's {lo_m:g}-{hi_m:g} "
            "min: the assumptions were chosen for that range"
        )
    return tuple(out)


def _check_finite(c: Costs) -> None:
    values = (c.managed_usd, c.self_hosted_usd, c.stt.gpu_hours, c.llm.gpu_hours)
    if not all(math.isfinite(v) for v in values):
        raise AssumptionError(
            "invalid assumptions: the monthly cost is too large to compute; check the prices "
            "and throughputs you overrode"
        )


def plan(
    tasks_per_month: int,
    avg_audio_minutes: float,
    assumptions: Assumptions | None = None,
    *,
    with_sensitivity: bool = True,
    audio_quantiles: Sequence[float] | None = None,
) -> Plan:
    """Plan capacity and cost for a workload; the one entry point the CDK app needs.

    ``audio_quantiles``: equal-mass points of the measured audio-length distribution (minutes),
    when known; they refine Transcribe's per-request minimum charge.
    """
    validate_workload(tasks_per_month, avg_audio_minutes, audio_quantiles)
    a = assumptions or default_assumptions()
    q = tuple(audio_quantiles) if audio_quantiles else None
    c = evaluate(tasks_per_month, avg_audio_minutes, a, q)
    _check_finite(c)
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
        stt_gpus_by_hour=c.stt.by_hour,
        llm_gpus_by_hour=c.llm.by_hour,
        stt_gpu_hours=round(c.stt.gpu_hours, 1),
        llm_gpu_hours=round(c.llm.gpu_hours, 1),
        self_hosted_monthly_usd=round(c.self_hosted_usd, 2),
        managed_monthly_usd=round(c.managed_usd, 2),
        savings_usd=round(savings, 2),
        savings_pct=round(pct, 1),
        crossover_tasks_per_month=crossover_tasks_per_month(avg_audio_minutes, a, q),
        managed_lines=(
            LineItem(name="AWS Transcribe", monthly_usd=round(c.transcribe_usd, 2)),
            LineItem(
                name=f"Amazon Bedrock ({a.bedrock.model})", monthly_usd=round(c.bedrock_usd, 2)
            ),
            LineItem(name="phase 1 platform (fixed)", monthly_usd=round(c.managed_fixed_usd, 2)),
        ),
        self_hosted_lines=(
            LineItem(
                name=f"STT GPUs ({a.gpu.stt.instance_type}, {c.stt.gpu_hours:,.0f} GPU hours)",
                monthly_usd=round(c.stt.usd, 2),
            ),
            LineItem(
                name=f"LLM GPUs ({a.gpu.llm.instance_type}, {c.llm.gpu_hours:,.0f} GPU hours)",
                monthly_usd=round(c.llm.usd, 2),
            ),
            LineItem(
                name=f"phase {c.self_hosted_phase} platform (fixed)",
                monthly_usd=round(c.self_hosted_fixed_usd, 2),
            ),
        ),
        peak_to_average=round(a.load.peak_to_average, 3),
        peak_audio_minutes_per_minute=round(c.stt_peak_load, 2),
        peak_output_tokens_per_second=round(c.llm_peak_load, 2),
        llm_input_tokens_per_task=round(c.llm_input_tokens, 1),
        warnings=workload_warnings(tasks_per_month, avg_audio_minutes),
        sensitivity=(
            sensitivity(tasks_per_month, avg_audio_minutes, a, quantiles=q)
            if with_sensitivity
            else ()
        ),
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
    audio_quantiles: Sequence[float] | None = None,
) -> Series:
    """Managed and self-hosted monthly cost at ``points`` volumes spaced evenly on a log axis."""
    validate_workload(lo, avg_audio_minutes, audio_quantiles)
    a = assumptions or default_assumptions()
    q = tuple(audio_quantiles) if audio_quantiles else None
    ratio = (hi / lo) ** (1 / (points - 1))
    tasks = tuple(sorted({round(lo * ratio**i) for i in range(points)}))
    costs = [evaluate(t, avg_audio_minutes, a, q) for t in tasks]
    for c in costs:
        _check_finite(c)
    return Series(
        avg_audio_minutes=avg_audio_minutes,
        tasks_per_month=tasks,
        managed_monthly_usd=tuple(round(c.managed_usd, 2) for c in costs),
        self_hosted_monthly_usd=tuple(round(c.self_hosted_usd, 2) for c in costs),
        recommended_phase=tuple(c.recommended_phase for c in costs),
        crossover_tasks_per_month=crossover_tasks_per_month(avg_audio_minutes, a, q),
    )
