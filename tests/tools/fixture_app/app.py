"""A tiny CDK app with the platform's context contract (`-c phase`, `-c env`), for the tests of
`make diff-base`: its stateful resources and tags come from settings.json, so a commit that
edits only that file changes what a deploy would do."""

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs

settings = json.loads((Path(__file__).parent / "settings.json").read_text())
app = cdk.App()
env = app.node.try_get_context("env")
phase = app.node.try_get_context("phase")
stack = cdk.Stack(app, f"Fixture-{env.title()}-Data")
s3.Bucket(stack, "Audio", bucket_name=f"{settings['bucket']}-{env}")
sqs.Queue(stack, "Tasks", retention_period=cdk.Duration.days(settings["retention_days"]))
cdk.Tags.of(stack).add("release", settings["release"])
cdk.Tags.of(stack).add("phase", str(phase))
app.synth()
