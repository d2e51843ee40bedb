"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

Requests are labelled by route *template* (``/v1/needs/{need_id}/matches``), never by the
raw path, so that ids cannot blow up the number of series.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; dense around the 30 ms / 100 ms latency targets.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
UNMATCHED = "<unmatched>"


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Request counters and latency histograms by (method, route), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], _Histogram] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.setdefault((method, route), _Histogram()).observe(seconds)

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The exposition text; ``gauges`` maps a metric name to (help, value)."""
        lines = [
            "# HELP techmatch_http_requests_total HTTP requests by method, route and status.",
            "# TYPE techmatch_http_requests_total counter",
        ]
        with self._lock:
            requests = sorted(self._requests.items())
            latency = sorted((k, _Histogram(list(h.counts), h.total, h.n))
                             for k, h in self._latency.items())
        for (method, route, status), count in requests:
            lines.append(
                f'techmatch_http_requests_total{{method="{method}",route="{_escape(route)}",'
                f'status="{status}"}} {count}'
            )
        lines += [
            "# HELP techmatch_http_request_duration_seconds Request latency by method and route.",
            "# TYPE techmatch_http_request_duration_seconds histogram",
        ]
        for (method, route), hist in latency:
            labels = f'method="{method}",route="{_escape(route)}"'
            cumulative = 0
            for bound, count in zip((*BUCKETS, float("inf")), hist.counts):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(
                    f'techmatch_http_request_duration_seconds_bucket{{{labels},le="{le}"}} {cumulative}'
                )
            lines.append(f"techmatch_http_request_duration_seconds_sum{{{labels}}} {hist.total:.6f}")
            lines.append(f"techmatch_http_request_duration_seconds_count{{{labels}}} {hist.n}")
        for name, (about, value) in gauges.items():
            lines += [f"# HELP {name} {about}", f"# TYPE {name} gauge", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request and records it under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics, clock: Callable[[], float] = time.perf_counter) -> None:
        self.app = app
        self.metrics = metrics
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.clock()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The router stores the matched route in the (shared) scope dict.
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(scope["method"], route, status, self.clock() - started)
