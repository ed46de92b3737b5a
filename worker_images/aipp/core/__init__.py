"""Shared core: settings, task model, PostgreSQL, S3, Redis and SQS access."""
