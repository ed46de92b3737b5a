"""Capacity planner and cost model of the platform: pure Python, no CDK, nothing else of ours.

>>> from capacity import plan
>>> p = plan(50_000, 3.0)
>>> p.recommended_phase, p.stt_gpus, p.llm_gpus
(2, 1, 1)
"""

from capacity.assumptions import (
    AssumptionError,
    Assumptions,
    default_assumptions,
    load_assumptions,
)
from capacity.model import Plan, Sensitivity, Series, cost_series, crossover_tasks_per_month, plan

__all__ = [
    "AssumptionError",
    "Assumptions",
    "Plan",
    "Sensitivity",
    "Series",
    "cost_series",
    "crossover_tasks_per_month",
    "default_assumptions",
    "load_assumptions",
    "plan",
]
