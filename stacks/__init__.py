"""The stacks of each phase, wired together in deployment order."""

from __future__ import annotations

from aws_cdk import Aspects, Environment, Stack, Tags
from constructs import Construct

from cdk_constructs.removal import RetainExceptOnCreate
from phases import Phase, PhaseConfig
from stacks.compute_ecs import ComputeEcsStack
from stacks.compute_eks import ComputeEksStack
from stacks.data import DataStack
from stacks.messaging import MessagingStack
from stacks.network import NetworkStack
from stacks.observability import ObservabilityStack
from stacks.pipeline import PipelineStack

IMPLEMENTED_PHASES: tuple[Phase, ...] = (Phase.MVP, Phase.GROWTH, Phase.SCALE)


class PhaseNotBuiltError(RuntimeError):
    """The configuration is valid but this phase's stacks do not exist yet."""


def build_platform(scope: Construct, config: PhaseConfig) -> list[Stack]:
    """Add every stack of `config.phase` to `scope` and return them in deployment order."""
    if config.phase not in IMPLEMENTED_PHASES:
        built = ", ".join(str(int(p)) for p in IMPLEMENTED_PHASES)
        raise PhaseNotBuiltError(
            f"phase {int(config.phase)} ({config.phase.name.lower()}) is configured but its "
            f"stacks are not built yet; implemented phases: {built}"
        )
    env = Environment(account=config.account, region=config.region)
    prefix = config.stack_prefix

    def name(part: str) -> str:
        return f"{prefix}-{part}"

    network = NetworkStack(scope, name("Network"), config=config, env=env)
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
    compute: ComputeEcsStack | ComputeEksStack
    if config.compute == "ecs":
        compute = ComputeEcsStack(
            scope,
            name("ComputeEcs"),
            config=config,
            vpc=network.vpc,
            audio=data.audio,
            database=data.database,
            cache=data.cache,
            queues=messaging.queues,
            env=env,
        )
    else:
        compute = ComputeEksStack(
            scope,
            name("ComputeEks"),
            config=config,
            vpc=network.vpc,
            database=data.database,
            cache=data.cache,
            queues=messaging.queues,
            env=env,
        )
    observability = ObservabilityStack(
        scope,
        name("Observability"),
        config=config,
        queues=messaging.queues,
        compute=compute.signals,
        upload_function=pipeline.upload_function,
        failed_uploads=pipeline.failed_events,
        database=data.database,
        cache=data.cache,
        env=env,
    )
    stacks: list[Stack] = [network, data, messaging, pipeline, compute, observability]
    for stack in stacks:
        Tags.of(stack).add("project", config.project)
        Tags.of(stack).add("phase", str(int(config.phase)))
        Tags.of(stack).add("env", config.env.value)
        Aspects.of(stack).add(RetainExceptOnCreate())
    return stacks
