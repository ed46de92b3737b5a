"""The task API's server (`python -m aipp.api`): uvicorn, one worker process per available core.

WEB_CONCURRENCY (uvicorn's own variable) sets the number of processes; by default it is the
number of cores this process may use: the container's CPU quota (cgroup v2 `cpu.max`, as ECS
and Kubernetes set it) where there is one, else the cores the scheduler gives it. Host and port
come from UVICORN_HOST / UVICORN_PORT, as with the plain `uvicorn` command.

With more than one process, each binds its own listening socket with SO_REUSEPORT and the
kernel spreads new connections across them. (Sharing one socket, as uvicorn's own `--workers`
does, lets whichever process wakes first accept every connection waiting: a burst of new
keep-alive connections, such as a load balancer opening its pool, lands on one process while
the others idle.) This process supervises them: it checks the configuration before starting
any, replaces a worker that dies, and on SIGTERM or SIGINT lets every worker finish its
requests (uvicorn's graceful shutdown) before it exits.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import uvicorn

from aipp.core.config import SettingsError, read_environment
from aipp.core.logging import configure_logging

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
# A worker that dies more often than this is not going to start: stop instead of looping.
MAX_RESTARTS, RESTART_WINDOW_SECONDS = 5, 60.0
# How long a worker may take to finish its requests after SIGTERM before it is killed.
GRACEFUL_SECONDS = 25.0

log = logging.getLogger("aipp.api.supervisor")


def available_cores(cpu_max: Path = CPU_MAX) -> int:
    """Cores this process may use: min(scheduler affinity, cgroup quota rounded up), at least 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota: the scheduler's answer stands
    return max(1, cores)


def worker_count(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    raw = environ.get("WEB_CONCURRENCY", "").strip()
    if not raw:
        return available_cores()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"WEB_CONCURRENCY must be a whole number of processes >= 1, not {raw!r}")
    return int(raw)


def server_options(environ: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, Any]:
    port = environ.get("UVICORN_PORT", "8000").strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"UVICORN_PORT must be a port number (1-65535), not {port!r}")
    return {
        "app": "aipp.api.main:app",
        "host": environ.get("UVICORN_HOST", "127.0.0.1"),
        "port": int(port),
        "proxy_headers": True,
        "forwarded_allow_ips": environ.get("FORWARDED_ALLOW_IPS", "*"),
        "access_log": False,
        "timeout_graceful_shutdown": int(GRACEFUL_SECONDS) - 5,
    }


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port with SO_REUSEPORT (one per worker process)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def serve(options: dict[str, Any]) -> None:
    """One worker process: uvicorn on its own SO_REUSEPORT socket."""
    sock = reuse_port_socket(options["host"], options["port"])
    sock.listen(2048)
    uvicorn.Server(uvicorn.Config(**options)).run(sockets=[sock])


class Supervisor:
    def __init__(self, workers: int, options: dict[str, Any]) -> None:
        self.workers = workers
        self.options = options
        self.context = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.restarts: deque[float] = deque(maxlen=MAX_RESTARTS)

    def start(self) -> multiprocessing.process.BaseProcess:
        process = self.context.Process(target=serve, args=(self.options,), daemon=False)
        process.start()
        return process

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        processes = [self.start() for _ in range(self.workers)]
        log.info("started %d worker processes on port %s", self.workers, self.options["port"])
        code = 0
        while not self.stopping.wait(0.5):
            for i, process in enumerate(processes):
                if process.is_alive():
                    continue
                now = time.monotonic()
                if (
                    len(self.restarts) == MAX_RESTARTS
                    and now - self.restarts[0] < RESTART_WINDOW_SECONDS
                ):
                    log.error("workers keep exiting (%d within a minute): stopping", MAX_RESTARTS)
                    code = 1
                    self.stopping.set()
                    break
                self.restarts.append(now)
                log.warning(
                    "worker %s exited (%s): starting another", process.pid, process.exitcode
                )
                processes[i] = self.start()
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + GRACEFUL_SECONDS
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()
        return code


def main() -> int:
    try:
        workers = worker_count()
        read_environment()  # a bad setting stops here, once, rather than in every worker
        options = server_options()
        if workers > 1:
            reuse_port_socket(options["host"], options["port"]).close()  # the port is free
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"error: cannot listen on {options['host']}:{options['port']}: {exc}", file=sys.stderr
        )
        return 1
    if workers == 1:
        uvicorn.run(**options)
        return 0
    configure_logging("INFO")  # the workers' format: one JSON object per line
    return Supervisor(workers, options).run()
