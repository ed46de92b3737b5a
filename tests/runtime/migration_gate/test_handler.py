"""The deploy-time migration gate: the ECS calls it makes, and how it ends a deploy."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import Stubber
from migration_gate import handler

from tests.runtime.aipp.worker.providers.stubs import stubbed_client

CLUSTER = "arn:aws:ecs:us-east-1:123456789012:cluster/aipp-prod"
TASK_DEF = "arn:aws:ecs:us-east-1:123456789012:task-definition/migrate:7"
TASK = "arn:aws:ecs:us-east-1:123456789012:task/aipp-prod/0123456789abcdef"
PROPS = {
    "Cluster": CLUSTER,
    "TaskDefinition": TASK_DEF,
    "Container": "App",
    "Subnets": ["subnet-1", "subnet-2"],
    "SecurityGroups": ["sg-1"],
    "LogGroup": "/aipp/migrate",
}


def event(request: str, **extra: Any) -> dict[str, Any]:
    return {"RequestType": request, "ResourceProperties": PROPS, **extra}


def task(status: str, exit_code: int | None = None, reason: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "App"}
    if exit_code is not None:
        container["exitCode"] = exit_code
    if reason:
        container["reason"] = reason
    return {"tasks": [{"taskArn": TASK, "lastStatus": status, "containers": [container]}]}


@pytest.mark.parametrize("request_type", ["Create", "Update"])
def test_create_and_update_start_one_task_in_the_private_subnets(request_type: str) -> None:
    with stubbed_client("ecs") as (ecs, stub):
        stub.add_response(
            "run_task",
            {"tasks": [{"taskArn": TASK}], "failures": []},
            {
                "cluster": CLUSTER,
                "taskDefinition": TASK_DEF,
                "launchType": "FARGATE",
                "count": 1,
                "startedBy": "cdk-migrate",
                "networkConfiguration": {
                    "awsvpcConfiguration": {
                        "subnets": ["subnet-1", "subnet-2"],
                        "securityGroups": ["sg-1"],
                        "assignPublicIp": "DISABLED",
                    }
                },
            },
        )
        answer = handler.on_event(event(request_type), None, ecs)
    assert answer == {"PhysicalResourceId": TASK_DEF, "Data": {"TaskArn": TASK}}


def test_a_task_that_cannot_start_fails_the_deploy_with_the_reason() -> None:
    with stubbed_client("ecs") as (ecs, stub):
        stub.add_response(
            "run_task", {"tasks": [], "failures": [{"arn": TASK_DEF, "reason": "RESOURCE:ENI"}]}
        )
        with pytest.raises(RuntimeError, match=r"did not start: .*RESOURCE:ENI"):
            handler.on_event(event("Create"), None, ecs)


def test_delete_runs_nothing() -> None:
    with stubbed_client("ecs") as (ecs, _stub):
        assert handler.on_event(event("Delete", PhysicalResourceId=TASK_DEF), None, ecs) == {
            "PhysicalResourceId": TASK_DEF
        }
        assert handler.is_complete(event("Delete"), None, ecs) == {"IsComplete": True}


def _poll(stub: Stubber, ecs: Any, answer: dict[str, Any]) -> dict[str, Any]:
    stub.add_response("describe_tasks", answer, {"cluster": CLUSTER, "tasks": [TASK]})
    return handler.is_complete(event("Update", Data={"TaskArn": TASK}), None, ecs)


def test_the_deploy_waits_while_the_migration_runs_and_goes_on_when_it_succeeds() -> None:
    with stubbed_client("ecs") as (ecs, stub):
        assert _poll(stub, ecs, task("PROVISIONING")) == {"IsComplete": False}
        assert _poll(stub, ecs, task("RUNNING")) == {"IsComplete": False}
        assert _poll(stub, ecs, task("STOPPED", exit_code=0))["IsComplete"] is True


def test_a_failed_migration_fails_the_deploy_with_its_exit_code_and_log_group() -> None:
    with stubbed_client("ecs") as (ecs, stub), pytest.raises(RuntimeError) as caught:
        _poll(stub, ecs, task("STOPPED", exit_code=1))
    assert str(caught.value) == (
        f"the migration task {TASK} failed (exit code 1): no reason given; its output is in "
        "the log group /aipp/migrate"
    )


def test_a_task_that_never_ran_its_container_fails_with_ecs_reason() -> None:
    with stubbed_client("ecs") as (ecs, stub), pytest.raises(RuntimeError) as caught:
        _poll(stub, ecs, task("STOPPED", reason="CannotPullContainerError: not found"))
    assert "(exit code None): CannotPullContainerError: not found" in str(caught.value)
