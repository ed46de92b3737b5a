"""The runtime tests' real services (PostgreSQL, Redis, moto's server), for the tools that talk
to a running platform (tools/smoke.py); the run's shared assemblies, for `make synth`."""

from tests.infra.conftest import (  # noqa: F401 - fixtures, found by name
    assemble,
    shared_synth_one,
)
from tests.runtime.conftest import (  # noqa: F401 - fixtures, found by name
    aws,
    database_url,
    empty_database,
    moto_endpoint,
    settings,
)
