"""Run reports as history: which ones are read, and how many are kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ollamatopo.report._recorder import HISTORY_REPORTS, latest_durations, prune_runs, runs_dir


def write_run(state: Path, stamp: str, services: dict[str, tuple[float, float]],
              outcome: str = "succeeded") -> Path:
    path = runs_dir(state, "shop") / f"{stamp}-run.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"outcome": outcome, "services": {
        name: {"started_s": began, "ready_s": ready} for name, (began, ready) in
        services.items()}}), encoding="utf-8")
    return path


def test_each_service_takes_its_newest_successful_measure(tmp_path: Path) -> None:
    write_run(tmp_path, "20260101T000001", {"db": (0.0, 5.0), "api": (1.0, 2.0)})
    write_run(tmp_path, "20260101T000002", {"db": (0.5, 3.5)})
    write_run(tmp_path, "20260101T000003", {"db": (0.0, 9.0)}, outcome="failed")
    assert latest_durations(tmp_path, "shop") == {"db": 3.0, "api": 1.0}


def test_reading_stops_once_every_service_has_a_figure(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(5):
        write_run(tmp_path, f"20260101T00000{index}", {"db": (0.0, 2.0), "api": (0.0, 1.0)})
    read: list[str] = []
    original = Path.read_text

    def counting(path: Path, *args: Any, **kwargs: Any) -> str:
        read.append(path.name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    assert latest_durations(tmp_path, "shop", ["db", "api"]) == {"db": 2.0, "api": 1.0}
    assert read == ["20260101T000004-run.json"]


def test_only_the_newest_reports_are_read(tmp_path: Path) -> None:
    write_run(tmp_path, "20250101T000000", {"ghost": (0.0, 1.0)})
    for index in range(HISTORY_REPORTS):
        write_run(tmp_path, f"20260101T{index:06d}", {"db": (0.0, 1.0)})
    assert "ghost" not in latest_durations(tmp_path, "shop", ["db", "ghost"])


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    paths = [write_run(tmp_path, f"20260101T{index:06d}", {}) for index in range(5)]
    removed = prune_runs(paths[0].parent, keep=2)
    assert sorted(removed) == paths[:3]
    assert sorted(paths[0].parent.glob("*.json")) == paths[3:]
