"""The live progress board: what it says per service, and how it shares the terminal."""

from __future__ import annotations

import io

from ollamatopo.cli._progress import LiveBoard, render_board
from ollamatopo.plan._model import Condition
from ollamatopo.report._recorder import ImagePull, RunRecorder

DEPENDENCIES = {
    "db": {},
    "cache": {},
    "api": {"db": Condition.HEALTHY, "cache": Condition.HEALTHY},
    "worker": {"api": Condition.STARTED},
    "lb": {"api": Condition.HEALTHY},
}
PHASES = {"db": "base", "cache": "base", "api": "core", "worker": "core", "lb": "edge"}


def recorder() -> RunRecorder:
    return RunRecorder(run_id="r1", project="shop", plan_path="plan.yaml", phases=PHASES,
                       phase_order=["base", "core", "edge"])


def board_at(run: RunRecorder, now: float, width: int = 100) -> dict[str, str]:
    lines = render_board(run, DEPENDENCIES, {"api": "api:1"}, now, width)
    return {line.split()[1]: line for line in lines if line.startswith("  ")}


def test_each_service_says_what_it_waits_for_and_how_long_it_has_probed() -> None:
    run = recorder()
    run.services["db"].created_s, run.services["db"].started_s = 0.1, 0.3
    run.services["db"].probe_attempts = 4
    run.services["cache"].created_s, run.services["cache"].started_s = 0.1, 0.2
    run.services["cache"].ready_s, run.services["cache"].status = 0.9, "ready"
    run.services["api"].created_s = 0.5
    run.pulls["api:1"] = ImagePull(downloaded=1_500_000, total=3_000_000)
    rows = board_at(run, now=2.0)
    assert "probing   1.7s, 4 checks" in rows["db"]
    assert "ready  at 0.90s" in rows["cache"] and "✔" in rows["cache"]
    assert "created, waiting for db" in rows["api"]
    assert "waiting for api" in rows["worker"] and "waiting for api" in rows["lb"]


def test_a_started_dependency_releases_its_started_dependents_only() -> None:
    run = recorder()
    for name in ("db", "cache"):
        run.services[name].status, run.services[name].ready_s = "ready", 1.0
    run.services["api"].created_s, run.services["api"].started_s = 1.1, 1.2
    rows = board_at(run, now=1.5)
    assert "waiting" not in rows["worker"]
    assert "waiting for api" in rows["lb"]


def test_failures_show_their_first_line_and_the_header_counts() -> None:
    run = recorder()
    run.fail("db", "container exited with code 3\n    | boom", optional=False)
    run.services["cache"].status = "ready"
    lines = render_board(run, DEPENDENCIES, {}, 3.0)
    assert lines[0].startswith("up shop") and "1/5 ready, 1 failed" in lines[0]
    row = next(line for line in lines if " db " in line)
    assert "✘" in row and row.endswith("failed  container exited with code 3")


def test_pulls_in_flight_are_listed_with_their_bytes() -> None:
    run = recorder()
    run.pulls["api:1"] = ImagePull(downloaded=1_500_000_000, total=3_000_000_000)
    run.pulls["done:1"] = ImagePull(status="pulled")
    lines = render_board(run, DEPENDENCIES, {"api": "api:1"}, 1.0)
    pulling = [line for line in lines if "pulling" in line]
    assert len(pulling) == 1 and "api:1" in pulling[0] and "/" in pulling[0]
    assert "waiting for its image" in board_at(run, 1.0)["api"]


def test_no_line_is_wider_than_the_terminal() -> None:
    run = recorder()
    run.fail("db", "x" * 300, optional=True)
    assert all(len(line) <= 40 for line in render_board(run, DEPENDENCIES, {}, 1.0, 40))


def test_log_lines_are_written_above_the_board_which_is_redrawn_below() -> None:
    screen = io.StringIO()
    board = LiveBoard(screen, lambda: 80)
    frames = iter(["frame 1", "frame 2", "frame 3"])
    board.show(lambda width: ["header", next(frames)])
    board.write("a warning")      # a partial line is held back
    assert "a warning" not in screen.getvalue()
    board.write("\n")
    board.finish()
    out = screen.getvalue()
    assert out.index("frame 1") < out.index("a warning") < out.index("frame 2")
    assert "\x1b[2F\x1b[J" in out  # the old frame is erased before the line is written
    board.write("after\n")           # once finished, lines go below the last frame
    assert screen.getvalue().endswith("frame 3\nafter\n")
