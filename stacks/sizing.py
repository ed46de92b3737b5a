"""`-c phase=auto`: the capacity planner picks the phase and sizes the GPU pools and KEDA.

`cdk synth -c phase=auto -c tasks_per_month=50000 -c avg_audio_minutes=3` asks the planner
(`capacity.plan`) which phase the workload needs, then sets each GPU pool's Spot and On-Demand
maxima to the GPUs the planner says the peak needs (never below the group's minimum; either
capacity type can carry the peak, and the priority expander tries Spot first) and KEDA's
maxReplicaCount per task type to the same figure. Explicit `-c overrides` still win.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from capacity import AssumptionError, Plan, plan
from phases import ConfigError, PhaseConfig, load_config
from phases.loader import deep_merge, parse_overrides


@dataclass(frozen=True)
class AutoSizing:
    """The planner's answer and the config it produced."""

    plan: Plan
    config: PhaseConfig

    def summary(self) -> str:
        p = self.plan
        line = (
            f"phase=auto: {p.tasks_per_month:,} tasks/month x {p.avg_audio_minutes:g} min -> "
            f"phase {p.recommended_phase} ({p.reason})"
        )
        if self.config.eks is not None:
            pools = ", ".join(
                f"{pool.name} GPUs spot<= {pool.spot.max} on-demand<= {pool.on_demand.max}"
                for pool in self.config.eks.gpu_pools
            )
            keda = ", ".join(
                f"{k.value} {v}" for k, v in sorted(self.config.eks.worker_max_replicas.items())
            )
            line += f"; {pools}; KEDA max replicas {keda}"
        return (
            f"{line}; self-hosted ${p.self_hosted_monthly_usd:,.0f}/month vs managed "
            f"${p.managed_monthly_usd:,.0f}/month"
        )


def _number(context: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> int | float:
    raw = context.get(key)
    if raw is None:
        raise ConfigError(f"phase=auto needs -c {key}=<number>")
    try:
        value = kind(str(raw))
    except ValueError:
        raise ConfigError(f"invalid {key}: {raw!r} is not a number") from None
    return value


def auto_config(context: Mapping[str, Any]) -> AutoSizing:
    """Plan with the capacity model, then build the config for the phase it recommends."""
    tasks = int(_number(context, "tasks_per_month", int))
    minutes = float(_number(context, "avg_audio_minutes", float))
    try:
        answer = plan(tasks, minutes, with_sensitivity=False)
    except AssumptionError as exc:
        raise ConfigError(str(exc)) from None
    env = context.get("env", "staging")
    phase = str(answer.recommended_phase)
    base = load_config(phase, env, context.get("overrides"))
    sized: dict[str, Any] = {}
    if base.eks is not None:
        need = {"stt": max(answer.stt_gpus, 1), "llm": max(answer.llm_gpus, 1)}
        sized["eks"] = {
            "gpu_pools": [
                {
                    **pool.model_dump(mode="json"),
                    "spot": {
                        "min": pool.spot.min,
                        "max": max(pool.spot.min, need[pool.purpose.value]),
                    },
                    "on_demand": {
                        "min": pool.on_demand.min,
                        "max": max(pool.on_demand.min, need[pool.purpose.value]),
                    },
                }
                for pool in base.eks.gpu_pools
            ],
            "worker_max_replicas": {
                "stt": max(answer.stt_max_replicas, 1),
                "llm": max(answer.llm_max_replicas, 1),
            },
        }
    overrides = deep_merge(sized, parse_overrides(context.get("overrides")))
    config = load_config(phase, env, json.dumps(overrides))
    return AutoSizing(plan=answer, config=config)
