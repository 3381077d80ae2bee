"""`scale SERVICE=N`: replica counts that outlive the command.

Like `kubectl scale`, the count is kept: in `<state dir>/<project>/replicas.json`,
which every later `up`, `status` and `plan` of the project applies over the plan's
`replicas:`. A running daemon is asked to apply it through its control socket; without
one, `scale` brings the change up itself (`app._up.scale`). The file is written only
once the plan with the new counts has been validated. Standard library only: the thin
client parses the requests with it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ollamatopo._errors import UsageError

SCALE_RE = re.compile(r"^(?P<service>[^=\s]+)=(?P<count>[0-9]+)$")


def parse_requests(arguments: Sequence[str]) -> dict[str, int]:
    requests: dict[str, int] = {}
    for argument in arguments:
        match = SCALE_RE.match(argument)
        if not match or not 0 <= int(match["count"]) <= 500:
            raise UsageError(f"scale: {argument!r} is not SERVICE=N with N from 0 to 500, "
                             "for example ollama-node-2=4 (0 removes its containers)")
        requests[match["service"]] = int(match["count"])
    return requests


def overrides_path(state_dir: Path, project: str) -> Path:
    return state_dir / project / "replicas.json"


def read_overrides(state_dir: Path, project: str) -> dict[str, int]:
    path = overrides_path(state_dir, project)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read the replica counts in {path}: {error}; fix or delete "
                         "the file (the plan's own counts then apply)") from None
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and 0 <= v <= 500 for k, v in data.items()):
        raise UsageError(f"{path} is not a map of service to replica count; fix or delete it")
    return data


def write_overrides(state_dir: Path, project: str, overrides: Mapping[str, int]) -> Path:
    path = overrides_path(state_dir, project)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(dict(sorted(overrides.items())), indent=2) + "\n",
                         encoding="utf-8")
    temporary.replace(path)
    return path


def scaling_summary(report: Mapping[str, Any], services: Sequence[str]) -> list[dict[str, Any]]:
    """Per replica created by the run: seconds from create to ready (the scaling time)."""
    rows = []
    for name in services:
        timing = (report.get("services") or {}).get(name) or {}
        if timing.get("action") != "create":
            continue
        created, ready = timing.get("created_s"), timing.get("ready_s")
        rows.append({"service": name, "status": timing.get("status"),
                     "create_to_ready_s": round(ready - created, 3)
                     if isinstance(created, int | float) and isinstance(ready, int | float)
                     else None})
    return rows


def scale_summary(requests: Mapping[str, int], before: Sequence[str], after: Sequence[str],
                  report: Mapping[str, Any]) -> dict[str, Any]:
    """What a scale did: the counts asked for, each replica added with its create-to-ready
    seconds, the replicas removed, and the run's outcome."""
    added = [name for name in after if name not in before]
    return {"scaled": dict(requests), "added": scaling_summary(report, added),
            "removed": [name for name in before if name not in after],
            "outcome": report.get("outcome")}
