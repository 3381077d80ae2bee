"""The events of a run and its timing: structured log lines, the summary table, the JSON report.

`RunRecorder` is the one place events are emitted: each carries the service, its
phase and the seconds since the run began, and the marks it records (created,
started, ready, failed) become the timing table and the report.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog


@dataclass
class ServiceTiming:
    phase: str
    action: str = ""
    cause: str = ""
    created_s: float | None = None
    started_s: float | None = None
    ready_s: float | None = None
    status: str = "pending"  # pending, ready, failed, skipped
    probe: str = ""
    probe_attempts: int = 0
    error: str = ""
    optional: bool = False


# Called with every event and its fields (the daemon's systemd status line, its metrics).
EventListener = Callable[[str, dict[str, Any]], None]


@dataclass
class ImagePull:
    downloaded: int = 0
    total: int = 0
    status: str = "pulling"  # pulling, pulled, failed


@dataclass
class RunRecorder:
    """Emits a run's events and keeps its timeline."""

    run_id: str
    project: str
    plan_path: str
    phases: Mapping[str, str]  # service -> phase
    phase_order: list[str]
    command: str = "up"
    started_monotonic: float = field(default_factory=time.monotonic)
    started_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    services: dict[str, ServiceTiming] = field(default_factory=dict)
    pulls: dict[str, ImagePull] = field(default_factory=dict)
    outcome: str = "running"
    total_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    listeners: list[EventListener] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._log = structlog.get_logger("ollamatopo").bind(run=self.run_id,
                                                             project=self.project)
        for service, phase in self.phases.items():
            self.services.setdefault(service, ServiceTiming(phase=phase))

    def track(self, service: str, phase: str) -> None:
        """A service the run learns of after it began (a swarm's service with no task,
        which one engine's plan leaves out)."""
        self.services.setdefault(service, ServiceTiming(phase=phase))

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started_monotonic, 3)

    def emit(self, event: str, *, service: str | None = None, level: str = "info",
             **fields: Any) -> None:
        if service is not None:
            phase = self.phases.get(service)
            fields = {"service": service, **({"phase": phase} if phase else {}), **fields}
        getattr(self._log, level)(event, elapsed_s=self.elapsed(), **fields)
        for listener in self.listeners:
            listener(event, fields)

    def mark(self, service: str, what: str, *, level: str = "info", **fields: Any) -> float:
        """Record that `service` reached `what` (created, started, ready) now, and log it."""
        at = self.elapsed()
        timing = self.services[service]
        setattr(timing, f"{what}_s", at)
        if what == "ready":
            timing.status = "ready"
        event = {"created": "container created", "started": "container started",
                 "ready": "service healthy"}[what]
        self.emit(event, service=service, level=level, **fields)
        return at

    def fail(self, service: str, error: str, *, optional: bool) -> None:
        timing = self.services[service]
        timing.status, timing.error, timing.optional = "failed", error, optional
        self.emit("service failed", service=service, level="warning" if optional else "error",
                  optional=optional, error=error)

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.total_s = self.elapsed()

    # --- summaries --------------------------------------------------------------------------

    def phase_spans(self) -> dict[str, tuple[float | None, float | None]]:
        spans: dict[str, tuple[float | None, float | None]] = {}
        for phase in self.phase_order:
            members = [t for t in self.services.values() if t.phase == phase]
            begins = [t.created_s if t.created_s is not None else t.started_s for t in members]
            ends = [t.ready_s for t in members]
            known_begins = [b for b in begins if b is not None]
            done = all(end is not None or t.status == "failed"
                       for end, t in zip(ends, members, strict=True))
            spans[phase] = (min(known_begins) if known_begins else None,
                            max((e for e in ends if e is not None), default=None) if done else None)
        return spans

    def report(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "project": self.project,
            "plan": self.plan_path,
            "started_at": self.started_at,
            "phase_order": list(self.phase_order),
            "outcome": self.outcome,
            "total_s": self.total_s,
            "services": {name: asdict(timing) for name, timing in self.services.items()},
            "phases": {name: {"began_s": span[0], "completed_s": span[1]}
                       for name, span in self.phase_spans().items()},
            **self.extra,
        }

    def table(self) -> str:
        rows = [("service", "phase", "action", "created", "started", "ready", "status")]
        for name, t in self.services.items():
            rows.append((name, t.phase, t.action, format_seconds(t.created_s),
                         format_seconds(t.started_s), format_seconds(t.ready_s),
                         t.status + (" (optional)" if t.optional else "")))
        for phase, (began, completed) in self.phase_spans().items():
            rows.append((f"[phase] {phase}", "", "", format_seconds(began), "",
                         format_seconds(completed), ""))
        rows.append(("[total]", "", "", "", "", format_seconds(self.total_s), self.outcome))
        return format_table(rows)


# --- figures every part of report/ shares ---------------------------------------------------


def format_seconds(value: float | None) -> str:
    """Seconds as the tables, the charts and the waterfall print them; `-` for never."""
    return "-" if value is None else f"{value:.2f}s"


def read_seconds(value: Any) -> float | None:
    """A mark or a total as a report holds it: a finite number, else None (missing, or
    not a number: a report is read as found)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def start_to_ready(started_s: float | None, ready_s: float | None) -> float | None:
    """A service's start-to-ready seconds, the one figure the critical path, the bounds and
    the history weigh it by; None unless this run both started it and saw it ready."""
    if started_s is None or ready_s is None:
        return None
    return max(0.0, ready_s - started_s)


def format_table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def write_report(report: Mapping[str, Any], path: Path) -> Path:
    """Write atomically: a reader never sees half a report. Secret values of the loaded
    plan (in errors, log tails, probe output) are written as `***`."""
    from ollamatopo.plan._secrets import redactor

    report = redactor.tree(dict(report))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def runs_dir(state_dir: Path, project: str) -> Path:
    return state_dir / project / "runs"


def store_report(state_dir: Path, recorder: RunRecorder, keep: int) -> Path:
    """Keep a finished run's report in the project's run store, named
    `<UTC start time>-<run id>.json` (so names sort by time), and prune the store to the
    newest `keep`. The store is the history later runs and `report` read."""
    stamp = recorder.started_at.replace(":", "").replace("-", "")[:15]
    path = write_report(recorder.report(),
                        runs_dir(state_dir, recorder.project) / f"{stamp}-{recorder.run_id}.json")
    prune_runs(path.parent, keep)
    return path


def run_id_of(path: Path) -> str:
    """The run id in a stored report's name (see `store_report`)."""
    return path.stem.rsplit("-", 1)[-1]


# The history that orders starts: enough runs to find every service, not the whole past.
HISTORY_REPORTS = 20


def latest_durations(state_dir: Path, project: str,
                     services: Iterable[str] = ()) -> dict[str, float]:
    """Start-to-ready seconds per service, each from the newest successful run that started
    it (a run that kept a running container does not measure it). Reads the newest
    reports only, and stops once every one of `services` has a figure."""
    try:
        reports = sorted(runs_dir(state_dir, project).glob("*.json"), reverse=True)
    except OSError:
        return {}
    wanted = set(services)
    durations: dict[str, float] = {}
    for path in reports[:HISTORY_REPORTS]:
        if wanted and wanted <= durations.keys():
            break
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or data.get("outcome") != "succeeded":
            continue
        for name, timing in (data.get("services") or {}).items():
            took = start_to_ready(read_seconds(timing.get("started_s")),
                                  read_seconds(timing.get("ready_s")))
            if name not in durations and took is not None:
                durations[name] = took
    return durations


def prune_runs(directory: Path, keep: int) -> list[Path]:
    """Remove all but the newest `keep` reports of a runs directory; the ones removed."""
    try:
        reports = sorted(directory.glob("*.json"), reverse=True)
    except OSError:
        return []
    removed = []
    for path in reports[max(0, keep):]:
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed
