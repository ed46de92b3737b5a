"""Count the calls a process makes to S3, SQS, the database and Redis (benchmarks and tests).

`CallCounter.install()` wraps, for the whole process, the one place each client library turns a
call into a round trip to its service:
- boto3/botocore: `BaseClient._make_api_call` (one API call; presigning makes none), counted as
  `s3` / `sqs` / ... by the client's service, and by operation;
- asyncpg: every statement a `Connection` sends (`execute`, `fetch*`, `executemany`), the
  statements a transaction and a pool's connection reset send included;
- redis-py (asyncio): every command sent alone (`execute_command`: scripts too) and every
  pipeline sent (`execute`: one round trip however many commands it holds).
Each call's time is added up too, by `service:operation`: from the call to its answer, in the
thread that made it (an awaited call: until the awaiting code resumes).
`uninstall()` puts the originals back. Counting costs two clock readings and two dictionary
updates per call.
"""

from __future__ import annotations

import functools
import json
import runpy
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
from botocore.client import BaseClient
from redis.asyncio.client import Pipeline, Redis

_DB_METHODS = ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany")


class CallCounter:
    """Calls by service (`s3`, `sqs`, `db`, `redis`, ...) and by `service:operation`, and the
    seconds spent in them by `service:operation`."""

    def __init__(self) -> None:
        self.services: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self._lock = threading.Lock()  # boto3 calls run in worker threads
        self._originals: list[tuple[type, str, Any]] = []

    @contextmanager
    def call(self, service: str, operation: str) -> Iterator[None]:
        """Count one call, and add the time the block takes to its seconds."""
        key = f"{service}:{operation}"
        with self._lock:
            self.services[service] += 1
            self.operations[key] += 1
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.seconds[key] += elapsed

    def reset(self) -> None:
        with self._lock:
            self.services.clear()
            self.operations.clear()
            self.seconds.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "services": dict(self.services),
                "operations": dict(self.operations),
                "seconds": dict(self.seconds),
            }

    def write(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.snapshot(), sort_keys=True))

    # --- hooks -----------------------------------------------------------------------------
    def install(self) -> CallCounter:
        if self._originals:
            return self
        counter = self

        def boto_call(original: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(original)
            def call(client: BaseClient, operation: str, params: Any) -> Any:
                with counter.call(client.meta.service_model.service_name, operation):
                    return original(client, operation, params)

            return call

        def db_call(original: Callable[..., Any], method: str) -> Callable[..., Any]:
            @functools.wraps(original)
            async def call(conn: Any, query: str, *args: Any, **kwargs: Any) -> Any:
                with counter.call("db", _statement(query) if method != "executemany" else "MANY"):
                    return await original(conn, query, *args, **kwargs)

            return call

        def redis_command(original: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(original)
            async def call(client: Any, *args: Any, **kwargs: Any) -> Any:
                with counter.call("redis", str(args[0]).upper() if args else "?"):
                    return await original(client, *args, **kwargs)

            return call

        def redis_pipeline(original: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(original)
            async def call(pipe: Any, *args: Any, **kwargs: Any) -> Any:
                if not pipe.command_stack:
                    return await original(pipe, *args, **kwargs)
                with counter.call("redis", "PIPELINE"):
                    return await original(pipe, *args, **kwargs)

            return call

        self._wrap(BaseClient, "_make_api_call", boto_call)
        for method in _DB_METHODS:
            self._wrap(asyncpg.Connection, method, functools.partial(db_call, method=method))
        self._wrap(Redis, "execute_command", redis_command)
        self._wrap(Pipeline, "execute", redis_pipeline)
        return self

    def _wrap(self, owner: type, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        self._originals.append((owner, name, original))
        setattr(owner, name, make(original))

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._originals):
            setattr(owner, name, original)
        self._originals.clear()


def _statement(query: str) -> str:
    """The statement's first word (SELECT, INSERT, UPDATE, BEGIN, ...) as the operation."""
    word = query.lstrip().split(None, 1)
    return word[0].upper() if word else "?"


def main(argv: list[str] | None = None) -> int:
    """`python -m aipp.dev.calls OUT.json MODULE [ARGS...]`: run MODULE as `python -m` would,
    with every call counted, and write the counts to OUT.json when it exits."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m aipp.dev.calls OUT.json MODULE [ARGS...]", file=sys.stderr)
        return 2
    out, module, *rest = args
    counter = CallCounter().install()
    sys.argv = [module, *rest]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    finally:
        counter.write(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
