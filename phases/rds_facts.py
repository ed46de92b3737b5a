"""Database facts the connection budget is checked against. Plain data, no CDK imports.

RDS and Aurora PostgreSQL default `max_connections` to `LEAST({DBInstanceClassMemory/9531392},
5000)` (RDS user guide, "Maximum number of database connections"). `DBInstanceClassMemory` is
the class's memory less what the OS and RDS's own processes hold; AWS does not publish that
share, so it is estimated here as 300 MiB plus 5% of memory, which lands a little below the
values RDS reports (e.g. about 190 on a 2 GiB class). Under-estimating is the safe side of a
budget; set `database.max_connections` when a parameter group says otherwise.
"""

from __future__ import annotations

import re

MIB = 1024 * 1024
GIB = 1024 * MIB
BYTES_PER_CONNECTION = 9531392
MAX_CONNECTIONS_CAP = 5000

# GiB of memory by size, per family kind: burstable (t*), general purpose (m*), memory (r*, x2g).
_SIZES = ("micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge")
_BURSTABLE = dict(zip(_SIZES, (1, 2, 4, 8, 16, 32), strict=False))
_GENERAL = {"large": 8, "xlarge": 16, "2xlarge": 32, "4xlarge": 64, "8xlarge": 128}
_MEMORY = {"large": 16, "xlarge": 32, "2xlarge": 64, "4xlarge": 128, "8xlarge": 256}
_FAMILIES = {"t": _BURSTABLE, "m": _GENERAL, "r": _MEMORY}


def instance_memory_gib(instance_class: str) -> int | None:
    """Memory of an RDS instance class written without `db.` (`t4g.small` -> 2), if known."""
    match = re.fullmatch(r"([tmr])\d+[a-z]*\.(\w+)", instance_class)
    if match is None:
        return None
    return _FAMILIES[match.group(1)].get(match.group(2))


def default_max_connections(instance_class: str) -> int | None:
    """RDS PostgreSQL's default `max_connections` for the class (estimated), if known."""
    gib = instance_memory_gib(instance_class)
    if gib is None:
        return None
    usable = gib * GIB - 300 * MIB - gib * GIB * 0.05
    return min(int(usable // BYTES_PER_CONNECTION), MAX_CONNECTIONS_CAP)
