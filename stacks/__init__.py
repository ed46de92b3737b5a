"""The stacks of an environment, wired together in deployment order.

An environment keeps its stacks for its whole life: they are named by project and environment
(`Aipp-Prod-Data`), never by phase. The phase decides what is in them, and which compute stacks
exist: ComputeEcs (phase 1), ComputeEks (phases 2-3), or both while a switch between them is
staged (`config.transition`, docs/phase-switch.md).
"""

from __future__ import annotations

from collections.abc import Callable

from aws_cdk import Aspects, Environment, Stack, Tags
from constructs import Construct

from cdk_constructs.removal import RetainExceptOnCreate
from phases import PhaseConfig
from stacks.compute_ecs import ComputeEcsStack
from stacks.compute_eks import ComputeEksStack
from stacks.data import DataStack
from stacks.edge import EdgeStack
from stacks.messaging import MessagingStack
from stacks.network import NetworkStack
from stacks.observability import ObservabilityStack
from stacks.pipeline import PipelineStack

# Stacks that hold state: the same names in every phase, never removed by a switch.
STATEFUL_STACKS = ("Network", "Data", "Messaging")


def build_platform(scope: Construct, config: PhaseConfig) -> list[Stack]:
    """Add every stack of the configured environment to `scope`, in deployment order."""
    env = _environment(config)

    def name(part: str) -> str:
        return f"{config.stack_prefix}-{part}"

    network = NetworkStack(scope, name("Network"), config=config, env=env)
    edge = EdgeStack(scope, name("Edge"), config=config, env=env)
    data = DataStack(scope, name("Data"), config=config, vpc=network.vpc, env=env)
    messaging = MessagingStack(scope, name("Messaging"), config=config, env=env)
    pipeline = PipelineStack(
        scope,
        name("Pipeline"),
        config=config,
        vpc=network.vpc,
        audio=data.audio,
        database=data.database,
        queues=messaging.queues,
        env=env,
    )
    observability = ObservabilityStack(
        scope,
        name("Observability"),
        config=config,
        queues=messaging.queues,
        upload_function=pipeline.upload_function,
        failed_uploads=pipeline.failed_events,
        database=data.database,
        cache=data.cache,
        env=env,
    )
    stacks: list[Stack] = [network, edge, data, messaging, pipeline, observability]
    stacks += _computes(
        scope,
        config,
        name,
        network=network,
        edge=edge,
        data=data,
        messaging=messaging,
        observability=observability,
    )
    for stack in stacks:
        Tags.of(stack).add("project", config.project)
        Tags.of(stack).add("env", config.env.value)
        Tags.of(stack).add("phase", str(int(config.phase)))
        Aspects.of(stack).add(RetainExceptOnCreate())
    return stacks


def _computes(
    scope: Construct,
    config: PhaseConfig,
    name: Callable[[str], str],
    *,
    network: NetworkStack,
    edge: EdgeStack,
    data: DataStack,
    messaging: MessagingStack,
    observability: ObservabilityStack,
) -> list[Stack]:
    """The compute stacks the config runs: one, or both while a switch is staged."""
    env = _environment(config)
    computes: list[Stack] = []
    if "ecs" in config.computes:
        computes.append(
            ComputeEcsStack(
                scope,
                name("ComputeEcs"),
                config=config,
                vpc=network.vpc,
                edge=edge,
                audio=data.audio,
                database=data.database,
                cache=data.cache,
                queues=messaging.queues,
                alarm_topic=observability.topic,
                webhook_key=data.webhook_key,
                env=env,
            )
        )
    if "eks" in config.computes:
        computes.append(
            ComputeEksStack(
                scope,
                name("ComputeEks"),
                config=config,
                vpc=network.vpc,
                edge=edge,
                audio=data.audio,
                models=data.models,
                database=data.database,
                cache=data.cache,
                queues=messaging.queues,
                alarm_topic=observability.topic,
                webhook_key=data.webhook_key,
                env=env,
            )
        )
    return computes


def _environment(config: PhaseConfig) -> Environment:
    """Environment-agnostic unless config names the account or region."""
    return Environment(account=config.account, region=config.region)
