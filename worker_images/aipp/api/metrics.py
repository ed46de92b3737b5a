"""Prometheus metrics, one registry per app."""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aipp_http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aipp_http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.tasks_created = Counter(
            "aipp_tasks_created_total",
            "Tasks created, by the state they were created in",
            ["state"],
            registry=self.registry,
        )

        self.rate_limit_fallback = Counter(
            "aipp_rate_limit_fallback_total",
            "Requests rate-limited in process memory because Redis was unreachable",
            registry=self.registry,
        )
        self.auth_failures_limited = Counter(
            "aipp_auth_failures_limited_total",
            "Requests with an unknown API key refused with 429 (too many from one address)",
            registry=self.registry,
        )
        self.quota_refused = Counter(
            "aipp_quota_refused_total",
            "Task creations refused by a tenant quota, by quota",
            ["quota"],
            registry=self.registry,
        )

        self._per_route: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency. The labelled series are looked up once per
        (method, route, status) and kept: `labels()` takes a lock and builds a key each call."""
        key = (method, route, status)
        series = self._per_route.get(key)
        if series is None:
            series = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._per_route[key] = series
        series[0].inc()
        series[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
