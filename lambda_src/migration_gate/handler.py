"""Deploy-time gate: run the schema migration as a one-off ECS task and wait for its exit.

A CloudFormation custom resource (CDK's provider framework with an is-complete check) calls
`on_event` when it is created or its task definition changes (a new image): it starts the task
and hands its ARN on. `is_complete` is then polled until the task has stopped. Exit code 0
completes the resource and the services, which depend on it, roll on; anything else fails it with
the reason, CloudFormation rolls the deployment back, and no service runs on a schema it does not
match. Deleting the resource does nothing: a migration is not undone.

Plain Python on the Lambda runtime's own boto3; unit-tested with botocore's Stubber.
"""

from __future__ import annotations

from typing import Any

import boto3

STOPPED = "STOPPED"


def _ecs() -> Any:
    return boto3.client("ecs")


def on_event(event: dict[str, Any], _context: Any, ecs: Any = None) -> dict[str, Any]:
    """Start the migration task (create, update); nothing to do on delete."""
    props = event["ResourceProperties"]
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    client = ecs or _ecs()
    answer = client.run_task(
        cluster=props["Cluster"],
        taskDefinition=props["TaskDefinition"],
        launchType="FARGATE",
        count=1,
        startedBy="cdk-migrate",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": props["Subnets"],
                "securityGroups": props["SecurityGroups"],
                "assignPublicIp": "DISABLED",
            }
        },
    )
    tasks = answer.get("tasks") or []
    if not tasks:
        failures = "; ".join(
            f"{f.get('arn', '?')}: {f.get('reason', '?')}" for f in answer.get("failures") or []
        )
        raise RuntimeError(f"the migration task did not start: {failures or 'no task returned'}")
    return {
        # A new task definition revision (a new image) is a new migration run.
        "PhysicalResourceId": props["TaskDefinition"],
        "Data": {"TaskArn": tasks[0]["taskArn"]},
    }


def is_complete(event: dict[str, Any], _context: Any, ecs: Any = None) -> dict[str, Any]:
    """True once the task stopped with exit code 0; an error (failing the deploy) otherwise."""
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    props = event["ResourceProperties"]
    task_arn = event["Data"]["TaskArn"]
    client = ecs or _ecs()
    answer = client.describe_tasks(cluster=props["Cluster"], tasks=[task_arn])
    tasks = answer.get("tasks") or []
    if not tasks:
        raise RuntimeError(f"the migration task {task_arn} is gone; see the ECS console")
    task = tasks[0]
    if task.get("lastStatus") != STOPPED:
        return {"IsComplete": False}
    container: dict[str, Any] = next(
        (c for c in task.get("containers", []) if c.get("name") == props["Container"]), {}
    )
    code = container.get("exitCode")
    if code == 0:
        return {"IsComplete": True, "Data": {"TaskArn": task_arn, "ExitCode": "0"}}
    reason = container.get("reason") or task.get("stoppedReason") or "no reason given"
    raise RuntimeError(
        f"the migration task {task_arn} failed (exit code {code}): {reason}; its output is in "
        f"the log group {props.get('LogGroup', 'of the migration task')}"
    )
