"""``python -m capacity serve``: the planner page, answered by the same Python model.

GET /                       the page (two sliders, the answers, the chart)
GET /api/plan?tasks_per_month=N&avg_audio_minutes=M
                            the Plan as JSON plus the cost series the chart is drawn from
GET /api/chart.png?tasks_per_month=N&avg_audio_minutes=M
                            the crossover chart as a PNG (drawn by capacity.chart)
Errors are JSON: {"error": {"code": ..., "message": ...}}.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from capacity.assumptions import AssumptionError, Assumptions
from capacity.chart import draw
from capacity.model import cost_series, plan

PAGE = Path(__file__).with_name("static") / "index.html"
_DRAW_LOCK = threading.Lock()  # matplotlib is not thread-safe across figures being drawn


def _workload(query: str) -> tuple[int, float]:
    params = parse_qs(query)

    def number(name: str, default: float) -> float:
        raw = params.get(name, [str(default)])[0]
        try:
            return float(raw)
        except ValueError:
            raise AssumptionError(f"invalid {name}: not a number ({raw!r})") from None

    return round(number("tasks_per_month", 50_000)), number("avg_audio_minutes", 3.0)


def make_handler(a: Assumptions) -> type[BaseHTTPRequestHandler]:
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
            self._send(status, json.dumps(payload).encode(), "application/json")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            try:
                if url.path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, PAGE.read_bytes(), "text/html; charset=utf-8")
                elif url.path == "/api/plan":
                    tasks, minutes = _workload(url.query)
                    answer = plan(tasks, minutes, a)
                    series = cost_series(minutes, a)
                    self._json(
                        HTTPStatus.OK,
                        {
                            "plan": answer.model_dump(mode="json"),
                            "series": series.model_dump(mode="json"),
                        },
                    )
                elif url.path == "/api/chart.png":
                    tasks, minutes = _workload(url.query)
                    plan(tasks, minutes, a, with_sensitivity=False)  # validates the inputs
                    series = cost_series(minutes, a)
                    with _DRAW_LOCK:
                        png = draw(series, marker_tasks=tasks)
                    self._send(HTTPStatus.OK, png, "image/png")
                else:
                    self._json(
                        HTTPStatus.NOT_FOUND, {"error": {"code": "not_found", "message": url.path}}
                    )
            except AssumptionError as exc:
                self._json(
                    HTTPStatus.BAD_REQUEST,
                    {"error": {"code": "invalid_input", "message": str(exc)}},
                )

    return Handler


def serve(a: Assumptions, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve until interrupted; prints the address (port 0 picks a free one) as its first line."""
    httpd = ThreadingHTTPServer((host, port), make_handler(a))
    bound_host, bound_port = httpd.server_address[:2]
    print(f"serving the capacity planner on http://{bound_host!s}:{bound_port}/", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
