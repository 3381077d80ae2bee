"""The daemon's Prometheus endpoint (`up --supervise --metrics-port N`).

`DaemonMetrics` listens to the run's events (it is a `RunRecorder` listener) and keeps
per service its readiness, restarts, last start-to-ready seconds and last check
latency, per phase its last duration, and whether the engine answers. It is also a
collector of the Prometheus project's own library (`prometheus-client`), which writes
the exposition format and serves it (`serve_metrics`: its WSGI server, in a thread of
its own): neither the text format nor HTTP is written by hand here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass(eq=False)  # a collector is registered by identity
class DaemonMetrics:
    project: str
    ready: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    startup_s: dict[str, float] = field(default_factory=dict)
    check_latency_s: dict[str, float] = field(default_factory=dict)
    phase_s: dict[str, float] = field(default_factory=dict)
    engine_up: int = 1
    last_run_s: float | None = None

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        service = fields.get("service")
        if event == "service healthy" and service:
            self.ready[service] = 1
            if "start_to_ready_s" in fields:
                self.startup_s[service] = float(fields["start_to_ready_s"])
        elif event in ("service unhealthy", "service failed", "service not restarted") \
                and service:
            self.ready[service] = 0
        elif event == "service restarting" and service:
            self.restarts[service] = self.restarts.get(service, 0) + 1
        elif event == "liveness check passed" and service:
            self.check_latency_s[service] = float(fields["latency_s"])
        elif event == "phase completed" and fields.get("phase"):
            self.phase_s[str(fields["phase"])] = float(fields["duration_s"])
        elif event == "run completed":
            self.last_run_s = fields.get("total_s")
        elif event == "engine lost":
            self.engine_up = 0
        elif event == "engine back":
            self.engine_up = 1
        elif event == "container removed" and service:
            for table in (self.ready, self.restarts, self.startup_s, self.check_latency_s):
                table.pop(service, None)

    def collect(self) -> Iterator[Metric]:
        """The metric families, as the registry asks for them at each scrape."""

        def family(kind: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str,
                   help_text: str, label: str, values: dict[str, Any]) -> Metric:
            metric = kind(name, help_text, labels=["project", label])
            for key, value in sorted(values.items()):
                metric.add_metric([self.project, key], float(value))
            return metric

        yield family(GaugeMetricFamily, "ollamatopo_service_ready",
                     "1 if the service passed its last check", "service", self.ready)
        yield family(CounterMetricFamily, "ollamatopo_service_restarts",
                     "restarts made by the supervisor", "service",
                     {name: self.restarts.get(name, 0) for name in self.ready})
        yield family(GaugeMetricFamily, "ollamatopo_service_startup_seconds",
                     "seconds from container start to ready, last time it started", "service",
                     self.startup_s)
        yield family(GaugeMetricFamily, "ollamatopo_service_check_latency_seconds",
                     "duration of the last passing liveness check", "service",
                     self.check_latency_s)
        yield family(GaugeMetricFamily, "ollamatopo_phase_startup_seconds",
                     "seconds from a phase's first create to its last ready, last up",
                     "phase", self.phase_s)
        engine = GaugeMetricFamily("ollamatopo_engine_up", "1 if the Docker engine answers",
                                   labels=["project"])
        engine.add_metric([self.project], self.engine_up)
        yield engine
        if self.last_run_s is not None:
            last = GaugeMetricFamily("ollamatopo_up_seconds",
                                     "seconds the last up or reload took", labels=["project"])
            last.add_metric([self.project], float(self.last_run_s))
            yield last

    def registry(self) -> CollectorRegistry:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def render(self) -> str:
        return generate_latest(self.registry()).decode()


async def serve_metrics(metrics: DaemonMetrics, host: str, port: int,
                        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
                        ) -> None:
    """Serve the metrics until cancelled; reports the bound port once listening."""
    server, _ = start_http_server(port, addr=host, registry=metrics.registry())
    try:
        task_status.started(int(server.server_port))
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):  # its loop polls every 0.5 s
            await anyio.to_thread.run_sync(server.shutdown)
        server.server_close()
