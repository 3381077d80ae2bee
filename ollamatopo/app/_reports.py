"""The run store, as `report` reads it: which report a run id (or a unique prefix of one,
or a file) names, and the report itself; every way it can fail says which file and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ollamatopo._errors import ReportNotFound, ReportUnreadable
from ollamatopo.app._settings import Settings
from ollamatopo.app._up import load
from ollamatopo.plan._loading import read_project_name
from ollamatopo.report._recorder import run_id_of, runs_dir


def find_report(run: str | None, settings: Settings) -> Path:
    """The report file RUN names: a path, or a run id (or unique prefix) of the project."""
    if run is not None and (run.endswith(".json") or "/" in run or Path(run).is_file()):
        path = Path(run)
        if not path.is_file():
            raise ReportNotFound(f"no report file {path}: pass an existing JSON report, or a "
                                 "run id of the plan's project")
        return path
    project = _report_project(settings)
    folder = runs_dir(settings.state_dir, project)
    try:
        reports = sorted(folder.glob("*.json"), key=lambda p: (p.name[:15], p.stat().st_mtime))
    except OSError:
        reports = []
    if not reports:
        raise ReportNotFound(f"no run reports for project {project!r} in {folder}: bring it up "
                             "with `ollamatopo up` first, or pass a report file "
                             "(check --plan, --project and OLLAMATOPO_STATE_DIR)")
    if run is None:
        return reports[-1]
    exact = [p for p in reports if run_id_of(p) == run]
    matches = exact or [p for p in reports if run_id_of(p).startswith(run)
                        or p.stem.startswith(run)]
    if not matches:
        newest = ", ".join(run_id_of(p) for p in reversed(reports[-3:]))
        raise ReportNotFound(f"no run of project {project!r} matches {run!r} in {folder} "
                             f"({len(reports)} report{'s' if len(reports) != 1 else ''}, newest: "
                             f"{newest}): pass a run id, a unique prefix of one, or a report "
                             "file")
    if len(matches) > 1:
        listed = ", ".join(run_id_of(p) for p in matches[:6]) + (", ..." if len(matches) > 6
                                                                 else "")
        raise ReportNotFound(f"{run!r} matches {len(matches)} runs of project {project!r} in "
                             f"{folder} ({listed}): give more characters of the run id")
    return matches[0]


def _report_project(settings: Settings) -> str:
    """The project whose runs to look at: --project, else the plan's (read as `down` does,
    and loaded in full only when its name needs variables)."""
    return settings.project or read_project_name(settings.plan) or load(settings).plan.project


def read_report(path: Path) -> Any:
    """One report file as JSON; every way it can fail says which file and why."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise ReportUnreadable(f"cannot read the run report {path}: {reason}") from None
    try:
        return json.loads(text)
    except ValueError as error:
        raise ReportUnreadable(f"the run report {path} is not valid JSON ({error}): pass "
                               "another run, or remove the file") from None
