"""Data: the audio bucket, the task database and the Redis cache."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from cdk_constructs.audio_bucket import AudioBucket
from cdk_constructs.database import Database
from cdk_constructs.redis_cache import RedisCache
from phases import PhaseConfig


class DataStack(Stack):
    """Exposes `audio` (bucket + log bucket), `database` and `cache`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PhaseConfig,
        vpc: ec2.IVpc,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.audio = AudioBucket(self, "Audio", config=config)
        self.database = Database(
            self,
            "Database",
            config=config.database,
            vpc=vpc,
            log_retention_days=config.observability.log_retention_days,
        )
        self.cache = RedisCache(self, "Cache", config=config.cache, vpc=vpc)
