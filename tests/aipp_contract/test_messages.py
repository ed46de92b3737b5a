"""Which queues each kind of process uses, as the stacks grant it and the runtime enforces it."""

from __future__ import annotations

from aipp_contract.env import Var
from aipp_contract.messages import QUEUE_USE, SEND_TO, Kind, TaskType


def test_every_kind_declares_its_queue_use_and_every_type_its_queue() -> None:
    assert set(QUEUE_USE) == set(Kind)
    assert set(SEND_TO) == set(TaskType)
    named = {*SEND_TO.values(), Var.WORKER_QUEUE_URL, Var.WORKER_DLQ_URL}
    for use in QUEUE_USE.values():
        assert {*use.receives, *use.reads} <= named
    assert QUEUE_USE[Kind.WORKER].receives, "a worker consumes its queue"
    assert not QUEUE_USE[Kind.MIGRATION].sends
