"""The control socket's contract, shared by the daemon (which listens) and the command line
(which asks): where the socket is, what can be asked, and how a message is framed.

Standard library only: the command line's thin client imports this and nothing heavy, so
`status` against a running daemon answers in tens of milliseconds.

Framing: JSON lines over a Unix stream socket. One request line from the client; the
daemon answers with lines `{"event": {...}}` while the request runs (the events of its
run, as the log shows them) and ends with one `{"done": {...}}` or `{"error": {...}}`
line; an `events` request gets event lines until the client hangs up. JSON lines rather
than HTTP: the standard library parses and writes them (`json`), a stream of events
needs no chunked encoding, and no HTTP parser has to be written or imported on either
side.
"""

from __future__ import annotations

import hashlib
import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

SOCKET_NAME = "control.sock"
DEFAULT_PLAN = Path("config/topology.yaml")
MAX_LINE = 1 << 20  # a request is a few hundred bytes; a status of 1000 services under 1 MiB


class Op(StrEnum):
    STATUS = "status"  # the daemon's live view, no new probes
    EVENTS = "events"  # every event, as it happens, until the client hangs up
    RECONCILE = "reconcile"  # the plan read again and brought up (what SIGHUP does)
    SCALE = "scale"  # {"replicas": {service: n}} kept, then a reconcile
    UP = "up"  # bring the plan up (again, after a `down`)
    DOWN = "down"  # {"volumes": bool}: stop and remove; the daemon stays, idle
    STOP = "stop"  # end the daemon (as SIGTERM does)


# Compose's own names, looked for in the working directory when no plan is named.
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def default_plan_files(folder: Path) -> list[Path]:
    """The plan when none is named: the first compose file of the folder with its override
    (`compose.override.yaml` beside `compose.yaml`, as compose picks them), else the
    project's own `config/topology.yaml`."""
    for name in COMPOSE_FILES:
        base = folder / name
        if base.is_file():
            stem = name.rsplit(".", 1)[0]
            overrides = [folder / f"{stem}.override.{suffix}" for suffix in ("yaml", "yml")]
            return [base, *[path for path in overrides if path.is_file()][:1]]
    return [DEFAULT_PLAN]


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                            "state")
    return Path(base) / "ollamatopo"


def socket_path(state_dir: Path, project: str) -> Path:
    """The daemon's socket, in the project's state directory."""
    return state_dir / project / SOCKET_NAME


def plan_link(state_dir: Path, plan: Path) -> Path:
    """A link to the socket of the daemon that runs `plan`, so a client that knows the plan
    file but not its project finds the daemon without reading the plan."""
    digest = hashlib.sha256(str(plan.resolve()).encode()).hexdigest()[:16]
    return state_dir / "plans" / f"{digest}.sock"


def encode(message: dict[str, Any]) -> bytes:
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode()


def decode(line: bytes) -> dict[str, Any]:
    """One message; ValueError when the line is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message is a JSON object")
    return message
