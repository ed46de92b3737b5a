"""The planner's answers: the brief's example, the ends of the range, monotonicity, crossover."""

from __future__ import annotations

import itertools
import math

import pytest

from capacity import AssumptionError, Assumptions, crossover_tasks_per_month, plan
from capacity.assumptions import with_value
from capacity.model import evaluate

VOLUMES = [round(1_000 * 1000 ** (i / 59)) for i in range(60)]  # 1K..1M on a log grid
AUDIO = [0.5, 1.0, 3.0, 6.0, 10.0]


def test_the_briefs_example_recommends_phase_2_with_one_gpu_per_pool(defaults: Assumptions) -> None:
    p = plan(50_000, 3.0, defaults)
    assert p.recommended_phase == 2
    assert (p.stt_gpus, p.llm_gpus) == (1, 1)
    assert (p.stt_max_replicas, p.llm_max_replicas) == (1, 1)
    assert p.managed_monthly_usd == pytest.approx(3_850, rel=0.05)
    assert p.self_hosted_monthly_usd == pytest.approx(1_340, rel=0.20)
    assert abs(p.savings_pct - 65) <= 10
    # the managed bill is 150,000 audio minutes at the brief's $0.024 plus Bedrock and phase 1
    assert p.managed_lines[0].monthly_usd == pytest.approx(150_000 * 0.024)
    assert sum(x.monthly_usd for x in p.managed_lines) == pytest.approx(p.managed_monthly_usd)
    assert sum(x.monthly_usd for x in p.self_hosted_lines) == pytest.approx(
        p.self_hosted_monthly_usd, abs=0.02
    )


def test_small_volume_stays_on_managed_services_with_no_gpus(defaults: Assumptions) -> None:
    p = plan(1_000, 3.0, defaults)
    assert p.recommended_phase == 1
    assert (p.stt_gpus, p.llm_gpus) == (0, 0)
    assert p.savings_pct < 0  # self-hosting would cost more
    assert "managed" in p.reason


def test_a_million_tasks_needs_phase_3(defaults: Assumptions) -> None:
    p = plan(1_000_000, 3.0, defaults)
    assert p.recommended_phase == 3
    assert max(p.stt_gpus, p.llm_gpus) > defaults.gpu.phase2_max_gpus_per_pool
    assert p.self_hosted_monthly_usd < p.managed_monthly_usd


@pytest.mark.parametrize("minutes", AUDIO)
def test_more_tasks_never_need_fewer_gpus_or_cost_less(
    defaults: Assumptions, minutes: float
) -> None:
    plans = [plan(t, minutes, defaults, with_sensitivity=False) for t in VOLUMES]
    for before, after in itertools.pairwise(plans):
        assert after.stt_gpus >= before.stt_gpus, (before.tasks_per_month, after.tasks_per_month)
        assert after.llm_gpus >= before.llm_gpus
        assert after.self_hosted_stt_gpus >= before.self_hosted_stt_gpus
        assert after.self_hosted_llm_gpus >= before.self_hosted_llm_gpus
        assert after.managed_monthly_usd >= before.managed_monthly_usd
        assert after.self_hosted_monthly_usd >= before.self_hosted_monthly_usd
        assert after.recommended_phase >= before.recommended_phase


@pytest.mark.parametrize("tasks", [1_000, 20_000, 200_000, 1_000_000])
def test_longer_audio_never_needs_fewer_gpus_or_costs_less(
    defaults: Assumptions, tasks: int
) -> None:
    plans = [plan(tasks, m, defaults, with_sensitivity=False) for m in AUDIO]
    for before, after in itertools.pairwise(plans):
        assert after.self_hosted_stt_gpus >= before.self_hosted_stt_gpus
        assert after.managed_monthly_usd > before.managed_monthly_usd
        assert after.self_hosted_monthly_usd >= before.self_hosted_monthly_usd


def test_crossover_exists_and_comes_sooner_when_audio_is_longer(defaults: Assumptions) -> None:
    crossings = [crossover_tasks_per_month(m, defaults) for m in AUDIO]
    assert all(c is not None for c in crossings)
    values = [c for c in crossings if c is not None]
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == len(values)
    for minutes, cross in zip(AUDIO, values, strict=True):
        at = evaluate(cross, minutes, defaults)
        below = evaluate(cross - 1, minutes, defaults)
        assert at.self_hosted_usd <= at.managed_usd
        assert below.self_hosted_usd > below.managed_usd


def test_the_phase_follows_cost_not_a_volume_table(defaults: Assumptions) -> None:
    # Transcribe five times cheaper: 50K tasks no longer pay for GPUs
    cheap = with_value(defaults, "transcribe.tiers.0.usd_per_minute", 0.0048)
    assert plan(50_000, 3.0, cheap).recommended_phase == 1
    # phase 2 pools sized for 16 GPUs: a million tasks fit phase 2
    roomy = with_value(defaults, "gpu.phase2_max_gpus_per_pool", 16)
    assert plan(1_000_000, 3.0, roomy).recommended_phase == 2
    # Whisper twice as fast: fewer STT GPUs at a million tasks
    fast = with_value(defaults, "gpu.stt.audio_minutes_per_gpu_minute", 80.0)
    assert plan(1_000_000, 3.0, fast).stt_gpus < plan(1_000_000, 3.0, defaults).stt_gpus


def test_gpus_are_sized_for_the_peak_hour(defaults: Assumptions) -> None:
    p = plan(1_000_000, 3.0, defaults, with_sensitivity=False)
    g = defaults.gpu
    peak = 1_000_000 * 3.0 / (730 * 60) * defaults.load.peak_to_average
    assert p.peak_audio_minutes_per_minute == pytest.approx(peak, abs=0.01)
    per_gpu = g.stt.audio_minutes_per_gpu_minute * g.target_utilisation
    assert p.stt_gpus == math.ceil(peak / per_gpu)


def test_transcribe_volume_tiers_and_minimum_charge(defaults: Assumptions) -> None:
    # 100K tasks x 3 min = 300K minutes: 250K at tier 1, 50K at tier 2
    p = plan(100_000, 3.0, defaults, with_sensitivity=False)
    assert p.managed_lines[0].monthly_usd == pytest.approx(250_000 * 0.024 + 50_000 * 0.015)
    # a 6-second clip is billed as the 15-second minimum
    short = plan(10_000, 0.1, defaults, with_sensitivity=False)
    assert short.managed_lines[0].monthly_usd == pytest.approx(10_000 * 0.25 * 0.024)


def test_sensitivity_names_the_two_assumptions_that_move_savings_most(
    defaults: Assumptions,
) -> None:
    p = plan(50_000, 3.0, defaults)
    assert len(p.sensitivity) == 2
    top = p.sensitivity[0]
    assert top.assumption == "transcribe.tiers.0.usd_per_minute"
    assert top.source  # every assumption says where it comes from
    # a dearer Transcribe makes self-hosting pay more and sooner
    assert top.savings_pct_high > p.savings_pct > top.savings_pct_low
    assert top.crossover_high is not None and top.crossover_low is not None
    assert top.crossover_high < top.crossover_low
    swing = [abs(s.savings_usd_high - s.savings_usd_low) for s in p.sensitivity]
    assert swing[0] >= swing[1] > 0


def test_invalid_workloads_are_rejected_by_name(defaults: Assumptions) -> None:
    with pytest.raises(AssumptionError, match="tasks_per_month"):
        plan(0, 3.0, defaults)
    with pytest.raises(AssumptionError, match="avg_audio_minutes"):
        plan(50_000, -1.0, defaults)


def test_gpus_follow_the_day_in_whole_gpus_and_are_billed_hour_by_hour(
    defaults: Assumptions,
) -> None:
    # 1M tasks x 1 min: the average hour needs 0.8 GPU, the busiest hour 2.4 of them
    p = plan(1_000_000, 1.0, defaults, with_sensitivity=False)
    g = defaults.gpu
    per_gpu = g.stt.audio_minutes_per_gpu_minute * g.target_utilisation
    average_hour = 1_000_000 * 1.0 / (730 * 60)
    shares = defaults.load.hourly_shares
    assert p.stt_gpus_by_hour == tuple(
        max(1, math.ceil(average_hour * 24 * s / per_gpu)) for s in shares
    )
    assert p.stt_gpu_hours == pytest.approx(730 / 24 * sum(p.stt_gpus_by_hour), abs=0.1)
    assert p.stt_max_replicas == max(p.stt_gpus_by_hour) == 3
    # spreading the average evenly would bill one warm GPU (730 h); the day needs ~1.5 GPUs
    assert p.stt_gpu_hours / 730 == pytest.approx(1.54, abs=0.01)
    blended = 0.5 * 0.40 + 0.5 * 1.006
    assert p.self_hosted_lines[0].monthly_usd == pytest.approx(p.stt_gpu_hours * blended, abs=0.5)


def test_a_flat_day_needs_no_more_than_its_average(defaults: Assumptions) -> None:
    flat = with_value(defaults, "load.hourly_profile", [1.0] * 24)
    p = plan(1_000_000, 3.0, flat, with_sensitivity=False)
    assert p.peak_to_average == 1.0
    assert len(set(p.stt_gpus_by_hour)) == 1
    busy = plan(1_000_000, 3.0, defaults, with_sensitivity=False)
    assert busy.stt_max_replicas > p.stt_max_replicas


def test_spot_and_on_demand_split_per_hour(defaults: Assumptions) -> None:
    # one On-Demand GPU each hour, every GPU above it on Spot
    mixed = with_value(with_value(defaults, "gpu.on_demand_base_gpus", 1), "gpu.spot_share", 1.0)
    p = plan(1_000_000, 3.0, mixed, with_sensitivity=False)
    days = 730 / 24
    expected = days * sum(1.006 + (n - 1) * 0.40 for n in p.stt_gpus_by_hour)
    assert p.self_hosted_lines[0].monthly_usd == pytest.approx(expected, abs=0.5)
    on_demand = with_value(defaults, "gpu.spot_share", 0.0)
    assert plan(1_000_000, 3.0, on_demand, with_sensitivity=False).self_hosted_lines[
        0
    ].monthly_usd == pytest.approx(p.stt_gpu_hours * 1.006, abs=0.5)


def test_llm_gpu_time_grows_with_the_prompt_that_longer_audio_makes(
    defaults: Assumptions,
) -> None:
    short = plan(1_000_000, 0.5, defaults, with_sensitivity=False)
    long = plan(1_000_000, 10.0, defaults, with_sensitivity=False)
    assert (short.llm_input_tokens_per_task, long.llm_input_tokens_per_task) == (600, 2_500)
    assert long.llm_gpu_hours > short.llm_gpu_hours
    assert long.self_hosted_lines[1].monthly_usd > short.self_hosted_lines[1].monthly_usd


def test_prefill_and_decode_figures_reproduce_the_benchmark_they_come_from(
    defaults: Assumptions,
) -> None:
    """vLLM on one A10G: 550 tokens in, 150 out, 290 output tokens/s measured at concurrency 16."""
    llm = defaults.gpu.llm
    seconds = 550 / llm.prefill_tokens_per_second + 150 / llm.decode_tokens_per_second
    assert 150 / seconds == pytest.approx(290, rel=0.05)


def test_inputs_outside_the_briefs_ranges_are_planned_with_a_warning(
    defaults: Assumptions,
) -> None:
    assert plan(50_000, 3.0, defaults, with_sensitivity=False).warnings == ()
    p = plan(2_000_000, 12.0, defaults, with_sensitivity=False)
    assert len(p.warnings) == 2
    assert "tasks_per_month" in p.warnings[0] and "avg_audio_minutes" in p.warnings[1]
    assert p.recommended_phase == 3
    assert "tasks_per_month" in plan(500, 0.2, defaults, with_sensitivity=False).warnings[0]


@pytest.mark.parametrize(
    ("tasks", "minutes"),
    [(math.nan, 3.0), (math.inf, 3.0), (1e309, 3.0), (50_000, math.nan), (50_000, math.inf)],
)
def test_inf_and_nan_workloads_are_refused_by_name(
    defaults: Assumptions, tasks: float, minutes: float
) -> None:
    with pytest.raises(AssumptionError, match=r"tasks_per_month|avg_audio_minutes"):
        plan(tasks, minutes, defaults)  # type: ignore[arg-type]


def test_measured_short_clips_pay_transcribes_minimum(defaults: Assumptions) -> None:
    # half the tasks are 6-second clips billed as 15 s, half are 5.9 min: mean 3 min
    quantiles = [0.1] * 50 + [5.9] * 50
    p = plan(10_000, 3.0, defaults, with_sensitivity=False, audio_quantiles=quantiles)
    assert p.managed_lines[0].monthly_usd == pytest.approx(10_000 * (3.0 + 0.5 * 0.15) * 0.024)
