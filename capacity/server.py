"""``python -m capacity serve``: the planner page, answered by the same Python model.

GET /                       the page (two sliders, the answers, the chart)
GET /api/plan?tasks_per_month=N&avg_audio_minutes=M[&from_usage=DAYS]
                            the Plan as JSON plus the cost series the chart is drawn from;
                            with from_usage, the platform's last DAYS days of tasks (read from
                            DATABASE_URL) give the hourly profile and the audio-length spread,
                            and the volume and mean length when N / M are left out
GET /api/chart.png?tasks_per_month=N&avg_audio_minutes=M[&from_usage=DAYS]
                            the crossover chart as a PNG (drawn by capacity.chart)
Errors are JSON: {"error": {"code": ..., "message": ...}}: 400 for any bad input (non-numbers,
inf, NaN and numbers out of range included), 422 when the usage window holds nothing to plan
from, 503 when the database cannot be read, 500 for anything else. Answers carry ``warnings``
for inputs outside the brief's ranges.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

from capacity.assumptions import AssumptionError, Assumptions
from capacity.chart import draw
from capacity.model import DEFAULT_MINUTES, DEFAULT_TASKS, Plan, Series, cost_series, plan
from capacity.usage import Usage, UsageError, check_days, read_usage, usage_inputs

PAGE = Path(__file__).with_name("static") / "index.html"
_DRAW_LOCK = threading.Lock()  # matplotlib is not thread-safe across figures being drawn
USAGE_TTL_SECONDS = 60.0
"""A page refresh asks for the plan and the chart: both use one read of the task table."""
UNPROCESSABLE = 422  # the window holds nothing to plan from

log = logging.getLogger("capacity.server")


def _number(params: dict[str, list[str]], name: str) -> float | None:
    raw = params.get(name, [""])[0].strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise AssumptionError(f"invalid {name}: not a number ({raw!r})") from None
    if not math.isfinite(value):
        raise AssumptionError(f"invalid {name}: must be a finite number (got {raw!r})")
    return value


def _tasks(value: float) -> int:
    if not 1 <= value <= 1e9:
        raise AssumptionError(
            f"invalid tasks_per_month: must be between 1 and 1,000,000,000 (got {value:g})"
        )
    return round(value)


class Workload(NamedTuple):
    tasks_per_month: int
    avg_audio_minutes: float
    audio_quantiles: tuple[float, ...] | None
    assumptions: Assumptions
    usage: Usage | None


class UsageCache:
    """The last usage read per window length, kept for ``USAGE_TTL_SECONDS``."""

    def __init__(self, database_url: str | None, hours_per_month: float) -> None:
        self.database_url = database_url
        self.hours_per_month = hours_per_month
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[float, Usage]] = {}

    def get(self, days: int) -> Usage:
        with self._lock:
            kept = self._kept.get(days)
            if kept is not None and time.monotonic() - kept[0] < USAGE_TTL_SECONDS:
                return kept[1]
            usage = read_usage(self.database_url, days, hours_per_month=self.hours_per_month)
            self._kept[days] = (time.monotonic(), usage)
            return usage


def workload(query: str, a: Assumptions, usage: UsageCache) -> Workload:
    """The workload a query asks for, every number checked before anything is computed."""
    params = parse_qs(query)
    tasks = _number(params, "tasks_per_month")
    minutes = _number(params, "avg_audio_minutes")
    days_raw = params.get("from_usage", [""])[0].strip()
    if not days_raw:
        t = _tasks(DEFAULT_TASKS if tasks is None else tasks)
        m = DEFAULT_MINUTES if minutes is None else minutes
        return Workload(t, m, None, a, None)
    measured = usage.get(check_days(days_raw))
    x = usage_inputs(
        measured,
        a,
        tasks_per_month=None if tasks is None else _tasks(tasks),
        avg_audio_minutes=minutes,
    )
    return Workload(
        x.tasks_per_month, x.avg_audio_minutes, x.audio_quantiles, x.assumptions, measured
    )


def _plan_and_series(w: Workload, *, with_sensitivity: bool = True) -> tuple[Plan, Series]:
    answer = plan(
        w.tasks_per_month,
        w.avg_audio_minutes,
        w.assumptions,
        with_sensitivity=with_sensitivity,
        audio_quantiles=w.audio_quantiles,
    )
    series = cost_series(w.avg_audio_minutes, w.assumptions, audio_quantiles=w.audio_quantiles)
    return answer, series


def make_handler(a: Assumptions, database_url: str | None = None) -> type[BaseHTTPRequestHandler]:
    usage = UsageCache(database_url, a.load.hours_per_month)

    class Handler(BaseHTTPRequestHandler):
        server_version = "capacity-planner"

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the CLI prints the address once

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload: object) -> None:
            self._send(status, json.dumps(payload, allow_nan=False).encode(), "application/json")

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(status, {"error": {"code": code, "message": message}})

        def _route(self, path: str, query: str) -> None:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
            elif path == "/api/plan":
                w = workload(query, a, usage)
                answer, series = _plan_and_series(w)
                measured = w.usage
                warnings: Sequence[str] = (measured.warnings if measured else ()) + answer.warnings
                payload: dict[str, Any] = {
                    "plan": answer.model_dump(mode="json"),
                    "series": series.model_dump(mode="json"),
                    "warnings": list(warnings),
                }
                if measured is not None:
                    payload["usage"] = measured.model_dump(mode="json")
                self._json(HTTPStatus.OK, payload)
            elif path == "/api/chart.png":
                w = workload(query, a, usage)
                answer, series = _plan_and_series(w, with_sensitivity=False)
                with _DRAW_LOCK:
                    png = draw(series, marker_tasks=answer.tasks_per_month)
                self._send(HTTPStatus.OK, png, "image/png")
            else:
                self._error(HTTPStatus.NOT_FOUND, "not_found", path)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                self._route(url.path, url.query)
            except AssumptionError as exc:
                self._error(HTTPStatus.BAD_REQUEST, "invalid_input", str(exc))
            except UsageError as exc:
                status = HTTPStatus.SERVICE_UNAVAILABLE if exc.unavailable else UNPROCESSABLE
                code = "usage_unavailable" if exc.unavailable else "no_usage"
                self._error(status, code, str(exc))
            except Exception:  # an answer, never a dropped connection
                log.exception("capacity planner request failed: %s", url.path)
                self._error(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "the planner failed; see its log"
                )

    return Handler


def serve(
    a: Assumptions, host: str = "127.0.0.1", port: int = 0, database_url: str | None = None
) -> None:
    """Serve until interrupted; prints the address (port 0 picks a free one) as its first line."""
    httpd = ThreadingHTTPServer((host, port), make_handler(a, database_url))
    bound_host, bound_port = httpd.server_address[:2]
    print(f"serving the capacity planner on http://{bound_host!s}:{bound_port}/", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
