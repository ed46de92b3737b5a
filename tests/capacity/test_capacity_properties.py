"""Properties of the model over generated workloads, daily profiles and assumption values."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacity import AssumptionError, Assumptions, default_assumptions, load_assumptions, plan
from capacity.assumptions import with_value
from capacity.model import evaluate

DEFAULTS = default_assumptions()
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tasks = st.floats(min_value=1, max_value=1e8)
minutes = st.floats(min_value=0.01, max_value=240)
profiles = st.lists(st.floats(min_value=0, max_value=1e6), min_size=24, max_size=24).filter(
    lambda w: sum(w) > 0
)


@st.composite
def assumptions(draw: st.DrawFn) -> Assumptions:
    a = with_value(DEFAULTS, "load.hourly_profile", draw(profiles))
    a = with_value(a, "gpu.spot_share", draw(st.floats(min_value=0, max_value=1)))
    a = with_value(a, "gpu.on_demand_base_gpus", draw(st.integers(min_value=0, max_value=5)))
    return with_value(a, "gpu.min_gpus_per_pool", draw(st.integers(min_value=1, max_value=4)))


@SETTINGS
@given(a=assumptions(), t1=tasks, t2=tasks, m=minutes)
def test_cost_never_decreases_with_volume(a: Assumptions, t1: float, t2: float, m: float) -> None:
    lo, hi = sorted((t1, t2))
    small, big = evaluate(lo, m, a), evaluate(hi, m, a)
    assert big.managed_usd >= small.managed_usd
    assert big.self_hosted_usd >= small.self_hosted_usd
    assert big.stt.gpu_hours >= small.stt.gpu_hours
    assert big.llm.gpu_hours >= small.llm.gpu_hours


@SETTINGS
@given(a=assumptions(), t=tasks, m1=minutes, m2=minutes)
def test_cost_never_decreases_with_audio_length(
    a: Assumptions, t: float, m1: float, m2: float
) -> None:
    lo, hi = sorted((m1, m2))
    short, long = evaluate(t, lo, a), evaluate(t, hi, a)
    assert long.managed_usd >= short.managed_usd
    assert long.self_hosted_usd >= short.self_hosted_usd
    assert long.llm.gpu_hours >= short.llm.gpu_hours


@SETTINGS
@given(a=assumptions(), t=tasks, m=minutes)
def test_billed_gpu_hours_lie_between_the_warm_minimum_and_the_peak(
    a: Assumptions, t: float, m: float
) -> None:
    c = evaluate(t, m, a)
    hours = a.load.hours_per_month
    for pool in (c.stt, c.llm):
        assert a.gpu.min_gpus_per_pool * hours <= pool.gpu_hours + 1e-6
        assert pool.gpu_hours <= pool.peak * hours + 1e-6
        assert all(isinstance(n, int) for n in pool.by_hour)


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_finite(v) for v in value)
    return True


anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
)


@settings(max_examples=60, deadline=None)
@given(t=anything, m=anything)
def test_no_workload_gives_inf_nan_or_a_traceback(t: float, m: float) -> None:
    try:
        p = plan(t, m, DEFAULTS, with_sensitivity=False)  # type: ignore[arg-type]
    except AssumptionError as exc:
        assert "\n" not in str(exc)
        return
    assert _finite(p.model_dump())


NUMERIC_PATHS = [
    "load.hours_per_month",
    "load.hourly_profile.10",
    "gpu.spot_share",
    "gpu.target_utilisation",
    "gpu.stt.audio_minutes_per_gpu_minute",
    "gpu.llm.prefill_tokens_per_second",
    "gpu.llm.decode_tokens_per_second",
    "gpu.instances.g5.xlarge.on_demand_usd_per_hour",
    "gpu.instances.g5.xlarge.spot_usd_per_hour",
    "transcribe.tiers.0.usd_per_minute",
    "summary.output_tokens",
    "phases.fixed.2.0.count",
]
values = st.one_of(
    st.sampled_from(["Infinity", "-Infinity", "NaN", "1e309", "-1", "0", "1e300", "1e-300"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


@settings(max_examples=80, deadline=None)
@given(path=st.sampled_from(NUMERIC_PATHS), value=values)
def test_no_assumption_value_gives_inf_nan_or_a_traceback(path: str, value: str) -> None:
    try:
        a = load_assumptions(sets=[f"{path}={value}"])
        p = plan(50_000, 3.0, a, with_sensitivity=False)
    except AssumptionError as exc:
        assert "\n" not in str(exc)
        return
    assert _finite(p.model_dump())
