"""Data: the audio bucket, the models bucket, the task database and the Redis cache."""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from cdk_constructs.audio_bucket import AudioBucket, ModelsBucket
from cdk_constructs.database import Database
from cdk_constructs.redis_cache import RedisCache
from cdk_constructs.webhook_key import webhook_signing_key
from phases import PhaseConfig


class DataStack(Stack):
    """Exposes `audio` (bucket + log bucket), `models`, `database`, `cache` and `webhook_key`
    (the completion webhooks' signing key, or None: one key for whichever compute signs, so a
    switch between computes does not change what receivers verify with)."""

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
        self.models = ModelsBucket(self, "Models", config=config, log_bucket=self.audio.log_bucket)
        self.database = Database(
            self,
            "Database",
            config=config.database,
            vpc=vpc,
            log_retention_days=config.observability.log_retention_days,
        )
        self.cache = RedisCache(self, "Cache", config=config.cache, vpc=vpc)
        self.webhook_key = webhook_signing_key(self) if config.webhook is not None else None
