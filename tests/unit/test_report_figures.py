"""The figures every part of report/ shares: start-to-ready seconds and how seconds print,
each computed in one place."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ollamatopo.report import _gantt, _recorder
from ollamatopo.report._gantt import analyse
from ollamatopo.report._recorder import (
    format_seconds,
    latest_durations,
    read_seconds,
    runs_dir,
    start_to_ready,
)

REPORT = Path(_recorder.__file__).parent


def test_seconds_print_with_two_decimals_and_never_as_a_dash() -> None:
    assert format_seconds(None) == "-"
    assert format_seconds(1.234) == "1.23s"
    assert format_seconds(0.0) == "0.00s"


def test_start_to_ready_needs_both_marks_and_is_never_negative() -> None:
    assert start_to_ready(None, 1.0) is None and start_to_ready(1.0, None) is None
    assert start_to_ready(1.0, 3.5) == 2.5
    assert start_to_ready(2.0, 1.0) == 0.0  # a clock that went back counts as nothing


@pytest.mark.parametrize("value", [True, "1.0", float("nan"), float("inf"), None, [1]])
def test_odd_marks_read_as_missing(value: object) -> None:
    assert read_seconds(value) is None


def test_history_and_the_report_command_weigh_a_service_alike(tmp_path: Path) -> None:
    services = {"db": {"phase": "one", "started_s": 0.5, "ready_s": 2.0},
                "odd": {"phase": "one", "started_s": True, "ready_s": 3.0},  # not a number
                "late": {"phase": "one", "started_s": 4.0, "ready_s": 3.0}}
    data = {"outcome": "succeeded", "services": services, "dependencies": {}}
    path = runs_dir(tmp_path, "shop") / "20260101T000000-run.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    history = latest_durations(tmp_path, "shop")
    measured = {span.name: span.start_to_ready_s for span in analyse(data).services}
    assert history == {"db": 1.5, "late": 0.0}  # `True` no longer reads as 1 s
    assert measured == {"db": 1.5, "odd": None, "late": 0.0}


def test_the_gantt_uses_the_recorders_figures() -> None:
    assert _gantt.format_seconds is _recorder.format_seconds
    assert _gantt.start_to_ready is _recorder.start_to_ready


def test_each_figure_is_computed_once_within_report() -> None:
    sources = {path.name: path.read_text(encoding="utf-8") for path in REPORT.glob("*.py")}
    subtractions = {name: len(re.findall(r"ready(_s)?\s*-\s*(self\.)?(started|began)", text))
                    for name, text in sources.items()}
    assert {name: count for name, count in subtractions.items() if count} == {"_recorder.py": 1}
    formats = {name: text.count(':.2f}s"') for name, text in sources.items()}
    assert {name: count for name, count in formats.items() if count} == {"_recorder.py": 1}
