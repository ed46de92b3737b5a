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
