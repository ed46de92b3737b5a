"""The runtime tests' real services (PostgreSQL, Redis, moto's server), for the tools that talk
to a running platform (tools/smoke.py)."""

from tests.runtime.conftest import (  # noqa: F401 - fixtures, found by name
    aws,
    database_url,
    empty_database,
    moto_endpoint,
    settings,
)
