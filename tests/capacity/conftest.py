"""Shared fixtures of the capacity planner tests."""

from __future__ import annotations

import pytest

from capacity import Assumptions, default_assumptions


@pytest.fixture(scope="session")
def defaults() -> Assumptions:
    return default_assumptions()
