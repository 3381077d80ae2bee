"""The daemon's Prometheus endpoint (`up --supervise --metrics-port N`).

`DaemonMetrics` listens to the run's events (it is a `RunRecorder` listener) and keeps
per service its readiness, restarts, last start-to-ready seconds and last check
latency, per phase its last duration, and whether the engine answers. `render` gives
the Prometheus text format; `serve_metrics` answers `GET /metrics` on a TCP port.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST = 8192


@dataclass
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

    def render(self) -> str:
        lines: list[str] = []
        project = _escape(self.project)

        def family(name: str, kind: str, help_text: str, label: str,
                   values: dict[str, Any]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for key, value in sorted(values.items()):
                lines.append(f'{name}{{project="{project}",{label}="{_escape(key)}"}} {value}')

        family("ollamatopo_service_ready", "gauge", "1 if the service passed its last check",
               "service", self.ready)
        family("ollamatopo_service_restarts_total", "counter",
               "restarts made by the supervisor", "service",
               {name: self.restarts.get(name, 0) for name in self.ready})
        family("ollamatopo_service_startup_seconds", "gauge",
               "seconds from container start to ready, last time it started", "service",
               self.startup_s)
        family("ollamatopo_service_check_latency_seconds", "gauge",
               "duration of the last passing liveness check", "service", self.check_latency_s)
        family("ollamatopo_phase_startup_seconds", "gauge",
               "seconds from a phase's first create to its last ready, last up", "phase",
               self.phase_s)
        lines.append("# HELP ollamatopo_engine_up 1 if the Docker engine answers")
        lines.append("# TYPE ollamatopo_engine_up gauge")
        lines.append(f'ollamatopo_engine_up{{project="{project}"}} {self.engine_up}')
        if self.last_run_s is not None:
            lines.append("# HELP ollamatopo_up_seconds seconds the last up or reload took")
            lines.append("# TYPE ollamatopo_up_seconds gauge")
            lines.append(f'ollamatopo_up_seconds{{project="{project}"}} {self.last_run_s}')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


async def serve_metrics(metrics: DaemonMetrics, host: str, port: int,
                        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
                        ) -> None:
    """Answer GET /metrics until cancelled; reports the bound port once listening."""
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port,
                                               reuse_port=False)
    bound = listener.extra(anyio.abc.SocketAttribute.local_port)
    task_status.started(bound)

    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                with anyio.fail_after(5):
                    request = await _read_head(stream)
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
                return
            method, _, rest = request.partition(" ")
            path = rest.split(" ", 1)[0]
            if method != "GET":
                await _respond(stream, "405 Method Not Allowed", "only GET\n")
            elif path.split("?", 1)[0] != "/metrics":
                await _respond(stream, "404 Not Found", "see /metrics\n")
            else:
                await _respond(stream, "200 OK", metrics.render(), CONTENT_TYPE)

    await listener.serve(answer)


async def _read_head(stream: anyio.abc.SocketStream) -> str:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) < MAX_REQUEST:
        data += await stream.receive(4096)
    return data.decode("latin-1").split("\n", 1)[0].strip()


async def _respond(stream: anyio.abc.SocketStream, status: str, body: str,
                   content_type: str = "text/plain; charset=utf-8") -> None:
    payload = body.encode()
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    try:
        await stream.send(head + payload)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        return
