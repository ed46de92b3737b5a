"""The HMAC-SHA256 key workers sign completion webhooks with (`AIPP_WEBHOOK_SECRET_ARN`)."""

from __future__ import annotations

from aws_cdk import aws_secretsmanager as sm
from constructs import Construct

from cdk_constructs.nag import acknowledge


def webhook_signing_key(scope: Construct, construct_id: str = "WebhookSigningKey") -> sm.ISecret:
    """A generated 64-character key in Secrets Manager, rotated by hand with the receiver."""
    key = sm.Secret(
        scope,
        construct_id,
        description="HMAC-SHA256 key the workers sign completion webhooks with",
        generate_secret_string=sm.SecretStringGenerator(
            password_length=64, exclude_punctuation=True
        ),
    )
    acknowledge(
        key,
        "AwsSolutions-SMG4",
        "The receiver verifies signatures with this key; rotating it is coordinated "
        "with the receiver by hand (docs/operations.md), not on a timer.",
    )
    return key
