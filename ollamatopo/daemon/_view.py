"""The daemon's live view of its project, kept from the events of its runs and its guards
(a `RunRecorder` listener): what `status` through the control socket answers, with no new
probe. `EventHub` hands the same events to the control socket's subscribers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

# A subscriber that cannot keep up loses events rather than slowing the daemon down.
SUBSCRIBER_BUFFER = 1000


@dataclass
class ServiceView:
    phase: str | None
    ready: bool = False
    state: str = "unknown"
    restarts: int = 0
    since: float = field(default_factory=time.time)
    detail: str = ""


class LiveView:
    """Per service: ready or not, since when, restarts, and why it last went down."""

    def __init__(self) -> None:
        self.services: dict[str, ServiceView] = {}
        self.state = "starting"  # starting, supervising, reconciling, idle, stopping
        # What the last run found out once, without probes: ports, URLs, containers.
        self.containers: dict[str, dict[str, Any]] = {}

    def follow(self, phases: dict[str, str | None]) -> None:
        """The services of the plan now supervised (after a start or a reload)."""
        self.services = {name: self.services.get(name) or ServiceView(phase)
                         for name, phase in phases.items()}

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        view = self.services.get(str(fields.get("service")))
        if view is None:
            return
        if event == "service healthy":
            view.ready, view.state, view.detail = True, "running", ""
            view.restarts = int(fields.get("restarts") or view.restarts)
        elif event in ("service unhealthy", "service failed", "service not restarted"):
            view.ready = False
            view.detail = str(fields.get("reason") or fields.get("error") or event)
            if fields.get("exit_code") is not None:
                view.state, view.detail = "exited", f"{view.detail} (exit code " \
                                                    f"{fields['exit_code']})"
        elif event == "service restarting":
            view.state, view.restarts = "restarting", int(fields.get("restarts") or 0)
        elif event == "container removed":
            view.ready, view.state, view.detail = False, "missing", "removed"
        elif event == "container stopped":
            view.ready, view.state, view.detail = False, "exited", "stopped"
        else:
            return
        view.since = time.time()

    def rows(self) -> list[dict[str, Any]]:
        """Rows in the shape of `collect_status`, readiness from the events."""
        rows = []
        for name, view in self.services.items():
            known = self.containers.get(name, {})
            detail = view.detail or (f"ready for {_age(view.since)}" if view.ready else "")
            if view.restarts:
                detail = f"{detail}; restarts {view.restarts}".lstrip("; ")
            rows.append({"service": name, "phase": view.phase,
                         "container": known.get("container"), "state": view.state,
                         "ready": view.ready, "detail": detail,
                         "ports": known.get("ports", []), "urls": known.get("urls", []),
                         "up_to_date": True, "restarts": view.restarts})
        return rows


def _age(since: float) -> str:
    seconds = max(0, int(time.time() - since))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 \
        else f"{seconds // 60}m{seconds % 60:02d}s"


class EventHub:
    """Every event of the daemon, handed to whoever subscribed (a control connection), as
    protocol messages (`{"event": {...}}`), in the order they happened."""

    def __init__(self) -> None:
        self._subscribers: set[MemoryObjectSendStream[dict[str, Any]]] = set()

    def on_event(self, event: str, fields: dict[str, Any]) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        message = {"event": {"event": event, **fields, "timestamp": stamp}}
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(message)
            except anyio.WouldBlock:
                continue  # it lags: this event is lost to it, not to the others
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(subscriber)

    def subscribe(self) -> tuple[MemoryObjectSendStream[dict[str, Any]],
                                 MemoryObjectReceiveStream[dict[str, Any]]]:
        """A channel the hub writes events into; its send side can carry more messages
        (an answer) after them, in order."""
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](SUBSCRIBER_BUFFER)
        self._subscribers.add(send)
        return send.clone(), receive
