"""Times read from ollamatopo's JSON lines and the engine's timestamped logs (no Docker)."""

from __future__ import annotations

import json

import pytest

from bench._logs import event_times, first_time, json_events, parse_timestamp, ready_time

EPOCH_2026 = 1767225600.0  # 2026-01-01T00:00:00Z


def test_parse_timestamp_keeps_nanoseconds_and_zones() -> None:
    assert parse_timestamp("2026-01-01T00:00:00Z") == EPOCH_2026
    assert parse_timestamp("2026-01-01T00:00:01.123456789Z") == pytest.approx(
        EPOCH_2026 + 1.123456789, abs=1e-6)
    assert parse_timestamp("2026-01-01T01:00:00.5+01:00") == pytest.approx(EPOCH_2026 + 0.5)
    assert parse_timestamp("2026-01-01T00:00:00.25") == pytest.approx(EPOCH_2026 + 0.25)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_timestamp("yesterday")


def test_service_healthy_times_from_json_lines() -> None:
    lines = [
        "not json",
        json.dumps({"event": "container started", "service": "db",
                    "timestamp": "2026-01-01T00:00:01Z"}),
        json.dumps({"event": "service healthy", "service": "db",
                    "timestamp": "2026-01-01T00:00:02.5Z"}),
        json.dumps({"event": "service healthy", "service": "db",
                    "timestamp": "2026-01-01T00:00:09Z"}),
        "[1, 2]",
    ]
    events = json_events(lines)
    assert len(events) == 3
    assert event_times(events, "service healthy") == {"db": EPOCH_2026 + 2.5}
    assert first_time(events, "container started") == EPOCH_2026 + 1
    assert first_time(events, "run started") is None


def test_ready_time_from_docker_logs_with_timestamps() -> None:
    output = ("2026-01-01T00:00:00.100000000Z standin starting: mode=ready delay=3s port=8080\n"
              "2026-01-01T00:00:03.104000000Z standin ready\n")
    assert ready_time(output) == pytest.approx(EPOCH_2026 + 3.104)
    assert ready_time("2026-01-01T00:00:00Z standin starting\n") is None
