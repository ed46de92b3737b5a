"""Messaging: the SQS task queues and their dead-letter queues."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from cdk_constructs.task_queues import TaskQueues
from phases import PhaseConfig


class MessagingStack(Stack):
    """Exposes `queues` (`TaskQueues`)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PhaseConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.queues = TaskQueues(self, "Queues", config=config.queues, modes=config.queue_modes)
