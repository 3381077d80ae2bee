"""Characters that act on a terminal (escape sequences, bidi overrides) are shown escaped in
plan errors and log lines, never printed raw (issue 15)."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from ollamatopo._errors import PlanError, PlanProblem
from ollamatopo._printable import printable
from ollamatopo.cli._logging import configure_logging

Refuse = Callable[..., PlanError]

BIDI = ["\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066",
        "\u2067", "\u2068", "\u2069", "\u061c"]


@pytest.mark.parametrize("character", BIDI)
def test_bidi_controls_are_escaped(character: str) -> None:
    assert printable(f"a{character}b") == f"a\\u{ord(character):04x}b"


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text", "plain text"),
    ("été, 東京, emoji 🙂, no\u00a0break", "été, 東京, emoji 🙂, no\u00a0break"),
    ("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred"),
    ("bell\x07 del\x7f c1\x85\x9b", "bell\\x07 del\\x7f c1\\x85\\x9b"),
    ("carriage\rreturn", "carriage\\rreturn"),
    ("zero\u200bwidth\ufeffbom", "zero\\u200bwidth\\ufeffbom"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
    ("line\u2028separator", "line\\u2028separator"),
    ("lines\nand\ttabs", "lines\nand\ttabs"),
])
def test_what_printable_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(shown) == shown  # escaping twice changes nothing


def test_one_line_escapes_newlines_too() -> None:
    assert printable("a\nb\tc", multiline=False) == "a\\nb\tc"


def test_a_plan_problem_shows_its_path_and_message_escaped() -> None:
    """Found in issue 15: the path came back as `services.a\u202eb`, reordering the line."""
    problem = PlanProblem("services.a\u202eb", "also published by x\u202ey\n  - fake line", 3)
    assert str(problem) == ("services.a\\u202eb (line 3): also published by x\\u202ey\\n  - fake "
                            "line")
    assert problem.path == "services.a\u202eb"  # the data keeps the name as written


def test_a_plan_error_from_a_file_is_shown_escaped(plan_error: Refuse) -> None:
    error = plan_error("""
        project: p
        services:
          "a\\u202eb": {image: x}
        phases: [{name: one, services: ["a\\u202eb", "\\e[2J"]}]
    """)
    assert "services.a\\u202eb" in str(error)
    assert "\u202e" not in str(error) and "\x1b" not in str(error)


def test_the_plan_view_shows_the_plan_file_escaped(write_plan: Callable[..., Path]) -> None:
    from ollamatopo.plan._loading import load_plan
    from ollamatopo.report._plan_view import describe_plan, format_plan

    path = write_plan("project: p\nservices: {a: {image: x}}\nphases: [{name: one, services: "
                      "[a]}]\n", name="plan\x1b[2J\u202e.yaml")
    shown = format_plan(describe_plan(load_plan(path, {}), {}))
    assert "plan\\x1b[2J\\u202e.yaml" in shown.splitlines()[0]


@pytest.fixture
def log_lines() -> Iterator[Callable[[str], list[str]]]:
    """Log one event through the configured processors; the lines written."""

    def lines(log_format: str) -> list[str]:
        stream = io.StringIO()
        configure_logging(log_format, "info", stream=stream)
        structlog.get_logger("t").warning("plan warning \u202e", detail="a\u202eb\x1b[31m",
                                          services=["c\u202ed"])
        return stream.getvalue().splitlines()

    yield lines
    structlog.reset_defaults()


def test_log_lines_on_a_terminal_are_escaped(log_lines: Callable[[str], list[str]]) -> None:
    (line,) = log_lines("console")
    assert "\u202e" not in line and "\x1b" not in line
    assert "plan warning \\u202e" in line
    assert "detail=a\\u202eb\\x1b[31m" in line


def test_json_log_lines_keep_their_text(log_lines: Callable[[str], list[str]]) -> None:
    (line,) = log_lines("json")
    assert "\u202e" not in line
    event = json.loads(line)
    assert event["detail"] == "a\\u202eb\\x1b[31m"
    assert event["services"] == ["c\u202ed"]  # escaped by JSON itself
