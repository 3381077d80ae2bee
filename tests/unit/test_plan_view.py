"""What `plan` prints about the critical path and the phases as barriers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ollamatopo.plan._loading import LoadedPlan
from ollamatopo.report._gantt import analyse
from ollamatopo.report._plan_view import describe_plan, format_plan

# One phase; api waits for db to be healthy, web for api: a chain of three.
ONE_PHASE = """
    project: shop
    services:
      db: {image: x}
      cache: {image: x}
      api: {image: x, after: {db: healthy}}
      web: {image: x, after: {api: healthy}}
    phases: [{name: all, services: [db, cache, api, web]}]
"""

# Two phases; within the second, web waits for api, api for db of the first.
TWO_PHASES = """
    project: shop
    services:
      db: {image: x}
      cache: {image: x}
      api: {image: x, after: {db: healthy}}
      web: {image: x, after: {api: healthy}}
    phases: [{name: base, services: [db, cache]}, {name: apps, services: [api, web]}]
"""

DURATIONS = {"db": 1.0, "cache": 4.0, "api": 2.0, "web": 3.0}


def heading(view: dict[str, Any]) -> str:
    lines = format_plan(view).splitlines()
    return next(line for line in lines if line.startswith("critical path"))


def test_before_any_run_the_basis_reads_cleanly(load: Callable[..., LoadedPlan]) -> None:
    view = describe_plan(load(ONE_PHASE), {})
    assert heading(view) == \
        "critical path (by number of services; no successful run recorded yet):"
    assert view["critical_path"]["seconds"] is None
    assert view["critical_path"]["phase_barrier_seconds"] is None


def test_measured_the_heading_gives_the_seconds_and_the_basis(
        load: Callable[..., LoadedPlan]) -> None:
    view = describe_plan(load(ONE_PHASE), DURATIONS)
    assert heading(view) == \
        "critical path 6.00s (by start-to-ready seconds of the last successful run):"
    assert "((" not in format_plan(view) and "))" not in format_plan(view)


def test_partly_measured_says_so(load: Callable[..., LoadedPlan]) -> None:
    view = describe_plan(load(ONE_PHASE), {"db": 1.0})
    assert heading(view) == ("critical path (by number of services; not every service "
                             "measured by a successful run yet):")


def test_one_phase_as_a_barrier_is_the_critical_path(load: Callable[..., LoadedPlan]) -> None:
    path = describe_plan(load(ONE_PHASE), DURATIONS)["critical_path"]
    assert path["services"] == ["db", "api", "web"] and path["seconds"] == 6.0
    # Was 4.0 (the slowest service, cache), below the chain the graph itself imposes.
    assert path["phase_barrier_seconds"] == 6.0
    assert "with phases as barriers it would be 6.00s" in format_plan(
        describe_plan(load(ONE_PHASE), DURATIONS))


def test_barriers_keep_the_dependencies_within_a_phase(load: Callable[..., LoadedPlan]) -> None:
    path = describe_plan(load(TWO_PHASES), DURATIONS)["critical_path"]
    assert path["seconds"] == 6.0  # db, api, web
    # base ends with cache at 4; then api 4..6 and web 6..9. Was 4 + 3 = 7.
    assert path["phase_barrier_seconds"] == 9.0


def test_a_service_waiting_for_a_later_phase_never_passes_the_barriers(
        load: Callable[..., LoadedPlan]) -> None:
    plan = load("""
        project: shop
        services:
          a: {image: x, after: {b: healthy}}
          b: {image: x, after: {}}
        phases: [{name: one, services: [a]}, {name: two, services: [b]}]
    """)
    for durations in ({}, {"a": 1.0, "b": 2.0}):
        view = describe_plan(plan, durations)
        assert view["critical_path"]["phase_barrier_seconds"] is None
        assert view["critical_path"]["phase_barrier_problem"] == \
            "a waits for b, which is in a later phase"
        assert "with phases as barriers it would never end: a waits for b" in format_plan(view)


@pytest.mark.parametrize("text", [ONE_PHASE, TWO_PHASES])
def test_plan_and_report_compute_the_same_bounds(load: Callable[..., LoadedPlan],
                                                 text: str) -> None:
    """One mechanism: a run report with the plan's graph and these durations gives `report`
    the figures `plan` gives."""
    loaded = load(text)
    path = describe_plan(loaded, DURATIONS)["critical_path"]
    report = {
        "services": {name: {"phase": loaded.plan.phase_of(name), "started_s": 1.0,
                            "ready_s": 1.0 + DURATIONS[name], "status": "ready"}
                     for name in loaded.graph.nodes},
        "dependencies": {name: {dep: condition.value for dep, condition in deps.items()}
                         for name, deps in loaded.graph.dependencies.items()},
        "phase_order": [phase.name for phase in loaded.plan.phases],
    }
    timeline = analyse(report)
    assert timeline.graph_bound_s == path["seconds"]
    assert timeline.phase_bound_s == path["phase_barrier_seconds"]
