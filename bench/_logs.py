"""Reading times out of logs: ollamatopo's JSON lines and the engine's timestamped output.

The stand-in prints "standin ready" the moment it publishes /health and starts its
server; the engine stamps every line it receives (`docker logs --timestamps`, in
nanoseconds), so the stand-in's actual readiness needs nothing from inside the image
(busybox `date` has no sub-second format). Pure functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

READY_LINE = "standin ready"
_ISO = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<zone>Z|[+-]\d{2}:?\d{2})?$")


def parse_timestamp(text: str) -> float:
    """An ISO 8601 time (any number of fractional digits; no zone means UTC) as epoch seconds."""
    match = _ISO.match(text.strip())
    if match is None:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}")
    zone = match["zone"] or "Z"
    zone = "+00:00" if zone == "Z" else zone
    base = datetime.fromisoformat(match["base"] + zone).astimezone(UTC)
    fraction = match["fraction"] or "0"
    return base.timestamp() + int(fraction) / float(10 ** len(fraction))


def json_events(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The JSON objects among the lines (anything else is skipped)."""
    events = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def event_times(events: Iterable[dict[str, Any]], name: str) -> dict[str, float]:
    """Per service, the timestamp of its first event called `name`."""
    times: dict[str, float] = {}
    for event in events:
        service, stamp = event.get("service"), event.get("timestamp")
        if event.get("event") == name and isinstance(service, str) and isinstance(stamp, str) \
                and service not in times:
            times[service] = parse_timestamp(stamp)
    return times


def first_time(events: Iterable[dict[str, Any]], name: str) -> float | None:
    """The timestamp of the first event called `name`, whatever its service."""
    for event in events:
        stamp = event.get("timestamp")
        if event.get("event") == name and isinstance(stamp, str):
            return parse_timestamp(stamp)
    return None


def ready_time(timestamped_output: str, line: str = READY_LINE) -> float | None:
    """When the engine received the first line containing `line` (from `logs -t` output)."""
    for entry in timestamped_output.splitlines():
        stamp, _, text = entry.partition(" ")
        if line in text:
            try:
                return parse_timestamp(stamp)
            except ValueError:
                continue
    return None
