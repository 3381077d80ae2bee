"""The run report drawn as time: critical path and bounds, SVG, HTML, the text waterfall."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamatopo.report._gantt import (
    CREATE_TO_START,
    NEVER_READY,
    START_TO_READY,
    analyse,
    render_html,
    render_svg,
    render_waterfall,
    summary,
)

SVG = "{http://www.w3.org/2000/svg}"


def timing(phase: str, created: float | None = None, started: float | None = None,
           ready: float | None = None, status: str | None = None, *, optional: bool = False,
           error: str = "") -> dict[str, Any]:
    return {"phase": phase, "action": "create", "cause": "missing", "created_s": created,
            "started_s": started, "ready_s": ready,
            "status": status or ("ready" if ready is not None else "pending"), "probe": "",
            "probe_attempts": 0, "error": error, "optional": optional}


def report(**overrides: Any) -> dict[str, Any]:
    """Three phases; `worker` waits only for `node` to have started, and is slow."""
    base: dict[str, Any] = {
        "run_id": "0123456789ab",
        "command": "up",
        "project": "shop",
        "plan": "plan.yaml",
        "started_at": "2025-01-01T00:00:00.000+00:00",
        "outcome": "succeeded",
        "total_s": 7.0,
        "services": {
            "db": timing("foundation", 0.1, 0.2, 1.2),
            "cache": timing("foundation", 0.1, 0.2, 0.7),
            "node": timing("core", 0.1, 1.3, 3.3),
            "worker": timing("edge", 0.1, 1.4, 6.4),
            "lb": timing("edge", 0.1, 3.4, 3.9),
        },
        "phases": {"foundation": {"began_s": 0.1, "completed_s": 1.2},
                   "core": {"began_s": 0.1, "completed_s": 3.3},
                   "edge": {"began_s": 0.1, "completed_s": 6.4}},
        "dependencies": {"db": {}, "cache": {},
                         "node": {"db": "healthy", "cache": "healthy"},
                         "worker": {"node": "started"},
                         "lb": {"node": "healthy"}},
        "phase_order": ["foundation", "core", "edge"],
    }
    base.update(overrides)
    return base


def failed_report() -> dict[str, Any]:
    data = report(outcome="failed", total_s=5.0)
    data["services"]["lb"] = timing("edge", 0.1, 3.4, None, "failed",
                                    error="exited with code 1 <oops> & more")
    data["services"]["gateway"] = timing("edge", 0.1, None, None, "failed", optional=True,
                                         error="dependency 'lb' failed")
    data["services"]["idle"] = timing("edge", None, None, None)
    data["services"]["kept"] = timing("core", None, None, 0.4)
    data["dependencies"].update({"gateway": {"lb": "healthy"}, "idle": {}, "kept": {}})
    data["phases"]["edge"]["completed_s"] = None
    return data


# --- analysis -------------------------------------------------------------------------------


def test_a_started_edge_puts_the_slow_dependent_on_the_critical_path() -> None:
    timeline = analyse(report())
    # worker may begin when node begins (1.0 after db's 1.0), then takes 5.0
    assert timeline.critical_path == ("db", "node", "worker")
    assert timeline.graph_bound_s == pytest.approx(1.0 + 5.0)
    assert timeline.first_start_s == pytest.approx(0.2)
    assert timeline.bound_at_s == pytest.approx(6.2)
    # as barriers: foundation 1.0 + core 2.0 + edge 5.0
    assert timeline.phase_bound_s == pytest.approx(8.0)
    assert [s.name for s in timeline.services if s.critical] == ["db", "node", "worker"]


def test_healthy_edges_chain_when_the_dependent_is_short() -> None:
    data = report()
    data["services"]["worker"] = timing("edge", 0.1, 1.4, 1.9)  # 0.5 s
    timeline = analyse(data)
    # lb waits for node to be healthy: db 1.0 + node 2.0 + lb 0.5 beats node-start + worker
    assert timeline.critical_path == ("db", "node", "lb")
    assert timeline.graph_bound_s == pytest.approx(3.5)


def test_the_slower_of_two_healthy_dependencies_is_on_the_path() -> None:
    data = report()
    data["services"]["cache"] = timing("foundation", 0.1, 0.2, 2.2)  # 2.0 s, slower than db
    assert analyse(data).critical_path[:2] == ("cache", "node")  # type: ignore[index]


def test_summary_gives_durations_and_is_plain_json() -> None:
    figures = summary(analyse(failed_report()))
    assert json.loads(json.dumps(figures)) == figures
    assert figures["services"]["db"]["start_to_ready_s"] == pytest.approx(1.0)
    assert figures["services"]["db"]["create_to_start_s"] == pytest.approx(0.1)
    assert figures["services"]["lb"]["start_to_ready_s"] is None
    assert figures["services"]["idle"]["create_to_start_s"] is None
    assert figures["critical_path"] == ["db", "node", "worker"]
    assert figures["outcome"] == "failed"


def test_failed_and_never_started_services_weigh_nothing() -> None:
    timeline = analyse(failed_report())
    assert "lb" not in (timeline.critical_path or ())
    labels = {span.name: span.label for span in timeline.services}
    assert labels["lb"] == "failed"
    assert labels["gateway"] == "failed, not started (optional)"
    assert labels["idle"] == "not started"
    assert labels["kept"] == "ready (kept)"


def test_services_come_in_phase_order() -> None:
    data = report()
    data["services"] = dict(reversed(list(data["services"].items())))
    names = [span.name for span in analyse(data).services]
    assert names == ["cache", "db", "node", "lb", "worker"]


def test_a_report_without_a_graph_has_no_critical_path_but_still_renders() -> None:
    data = report()
    del data["dependencies"], data["phase_order"]
    timeline = analyse(data)
    assert timeline.critical_path is None and timeline.graph_bound_s is None
    assert timeline.bound_at_s is None
    assert [p.name for p in timeline.phases] == ["foundation", "core", "edge"]
    assert timeline.phase_bound_s == pytest.approx(8.0)
    root = ET.fromstring(render_svg(timeline))
    assert root.findall(f".//{SVG}line[@class='bound']") == []
    text = render_waterfall(timeline, 80)
    assert "graph bound unknown" in text
    assert "<svg" in render_html(timeline)


def test_one_phase_as_a_barrier_is_the_graph_bound() -> None:
    """The report's own example, all in one phase: the barrier holds nobody back, and the
    chains within the phase still cost what they cost (it read 2.0, worker alone)."""
    data = report()
    for timing_ in data["services"].values():
        timing_["phase"] = "all"
    data["phase_order"] = ["all"]
    timeline = analyse(data)
    assert timeline.graph_bound_s == pytest.approx(6.0)
    assert timeline.phase_bound_s == pytest.approx(6.0)


def test_barriers_keep_the_dependencies_within_a_phase() -> None:
    data = report()
    data["services"]["node"]["phase"] = "foundation"  # db, then node, in one phase
    timeline = analyse(data)
    # foundation: db 1.0 then node 2.0 (was: node alone, 2.0); edge: worker 5.0
    assert timeline.phase_bound_s == pytest.approx(8.0)
    assert timeline.phase_bound_s >= timeline.graph_bound_s  # type: ignore[operator]


# The demo's services as one run measured them (start, ready), and its graph.
DEMO = {"postgres": (0.742, 3.916), "redis": (0.741, 0.885), "minio": (0.66, 0.727),
        "ollama-node-1": (4.177, 4.374), "prometheus": (1.814, 2.03),
        "ollama-node-2": (5.153, 5.531), "ollama-node-3": (5.102, 5.517),
        "load-balancer": (5.191, 5.315), "grafana": (2.181, 2.193), "jaeger": (1.713, 1.774)}
DEMO_GRAPH = {"postgres": {}, "redis": {}, "minio": {},
              "ollama-node-1": {"postgres": "healthy", "redis": "healthy", "minio": "healthy"},
              "prometheus": {}, "ollama-node-2": {"ollama-node-1": "started"},
              "ollama-node-3": {"ollama-node-1": "started"},
              "load-balancer": {"ollama-node-1": "started"},
              "grafana": {"prometheus": "started"}, "jaeger": {}}
DEMO_PHASES = {"foundation": ["postgres", "redis", "minio"],
               "core": ["ollama-node-1", "prometheus"],
               "workers": ["ollama-node-2", "ollama-node-3"],
               "edge": ["load-balancer", "grafana", "jaeger"]}


def demo_report(phases: dict[str, list[str]]) -> dict[str, Any]:
    phase_of = {name: phase for phase, names in phases.items() for name in names}
    return report(total_s=5.765, dependencies=DEMO_GRAPH, phase_order=list(phases), phases={},
                  services={name: timing(phase_of[name], began - 0.1, began, ready)
                            for name, (began, ready) in DEMO.items()})


def test_the_demo_with_phases_and_in_one_phase() -> None:
    phased = analyse(demo_report(DEMO_PHASES))
    assert phased.critical_path == ("postgres", "ollama-node-1", "ollama-node-3")
    assert phased.graph_bound_s == pytest.approx(3.589)
    # foundation 3.174 (postgres), core 0.216, workers 0.415, edge 0.124
    assert phased.phase_bound_s == pytest.approx(3.929)
    single = analyse(demo_report({"all": list(DEMO)}))
    assert single.graph_bound_s == pytest.approx(3.589)
    assert single.phase_bound_s == pytest.approx(3.589)  # was 3.174: postgres alone


def test_a_service_waiting_for_a_later_phase_never_passes_the_barriers() -> None:
    data = report()
    data["dependencies"]["node"] = {"db": "healthy"}
    data["dependencies"]["cache"] = {"lb": "started"}  # foundation waits for edge
    timeline = analyse(data)
    assert timeline.phase_bound_s is None and timeline.phase_bound_at_s is None
    assert timeline.barrier_problem == "cache waits for lb, which is in a later phase"
    assert summary(timeline)["phase_bound_s"] is None
    assert summary(timeline)["barrier_problem"] == timeline.barrier_problem
    text = " ".join(render_waterfall(timeline, 100).split())
    assert "phases as barriers would never end (cache waits for lb, which is in a later phase)" \
        in text
    root = ET.fromstring(render_svg(timeline))
    assert root.findall(f".//{SVG}line[@class='phase-bound']") == []


@st.composite
def phased_reports(draw: st.DrawFn) -> dict[str, Any]:
    """A run report of a random acyclic graph, phases that respect it, random marks."""
    count = draw(st.integers(1, 8))
    names = [f"s{i}" for i in range(count)]
    graph: dict[str, dict[str, str]] = {}
    rank: dict[str, int] = {}
    for name in names:
        chosen = draw(st.lists(st.sampled_from(sorted(graph)), unique=True)) if graph else []
        graph[name] = {dep: draw(st.sampled_from(["healthy", "started"])) for dep in chosen}
        rank[name] = max([draw(st.integers(0, 3)), *(rank[dep] for dep in chosen)])
    marks = st.one_of(st.none(), st.floats(0, 20, allow_nan=False))
    services = {name: timing(f"p{rank[name]}", None, draw(marks), draw(marks))
                for name in names}
    return report(services=services, dependencies=graph, phases={},
                  phase_order=[f"p{index}" for index in range(max(rank.values()) + 1)])


@given(phased_reports())
@settings(max_examples=200, deadline=None)
def test_phases_as_barriers_never_beat_the_graph_bound(data: dict[str, Any]) -> None:
    timeline = analyse(data)
    assert timeline.graph_bound_s is not None and timeline.phase_bound_s is not None
    assert timeline.phase_bound_s >= timeline.graph_bound_s
    for timing_ in data["services"].values():
        timing_["phase"] = "p0"
    single = analyse(data)
    assert single.phase_bound_s == single.graph_bound_s


@pytest.mark.parametrize(("data", "message"), [
    ([1, 2], "not a JSON object"),
    ({"run_id": "x"}, "no `services`"),
    ({"services": {"a": 3}}, "services.a"),
    ({"services": {"a": {}}, "dependencies": {"a": {"b": "ready"}}}, "'started' or 'healthy'"),
    ({"services": {"a": {}, "b": {}}, "dependencies": {"a": {"b": "healthy"},
                                                       "b": {"a": "started"}}}, "cycle"),
])
def test_what_is_not_a_run_report_is_refused_with_the_reason(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        analyse(data)


def test_odd_values_are_read_as_missing() -> None:
    data = report()
    data["services"]["db"].update(started_s="soon", ready_s=True, created_s=float("nan"))
    data["total_s"] = None
    data["phases"] = "none"
    data["dependencies"]["node"]["ghost"] = "healthy"  # not a service: ignored
    timeline = analyse(data)
    db = next(span for span in timeline.services if span.name == "db")
    assert (db.created_s, db.started_s, db.ready_s) == (None, None, None)
    render_svg(timeline)
    render_waterfall(timeline, 60)


def test_an_empty_run_renders() -> None:
    timeline = analyse({"services": {}, "dependencies": {}})
    assert timeline.critical_path == () and timeline.graph_bound_s == 0.0
    ET.fromstring(render_svg(timeline))
    assert render_waterfall(timeline, 80)


# --- SVG and HTML ---------------------------------------------------------------------------


def _bars(root: ET.Element) -> dict[str, ET.Element]:
    found = {}
    for group in root.iter(f"{SVG}g"):
        if group.get("class") == "service":
            for rect in group.findall(f"{SVG}rect"):
                if "bar" in (rect.get("class") or "").split():
                    found[group.get("data-service", "")] = rect
    return found


def test_svg_has_one_bar_per_started_service_a_bound_line_and_marked_critical_bars() -> None:
    document = render_svg(analyse(failed_report()))
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(document)
    assert root.tag == f"{SVG}svg"
    bars = _bars(root)
    assert set(bars) == {"db", "cache", "node", "worker", "lb"}  # not gateway, idle, kept
    critical = {name for name, rect in bars.items()
                if "critical" in (rect.get("class") or "").split()}
    assert critical == {"db", "node", "worker"}
    assert all(bars[name].get("stroke") != bars["cache"].get("stroke") for name in critical)
    assert "failed" in (bars["lb"].get("class") or "").split()
    assert bars["lb"].get("fill") == "#d93a32"
    bound = root.findall(f".//{SVG}line[@class='bound']")
    assert len(bound) == 1
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "bound-label"]
    assert labels == ["graph bound 6.00s"]
    phases = [r.get("data-phase") for r in root.iter(f"{SVG}rect") if r.get("class") == "phase"]
    assert phases == ["foundation", "core", "edge"]
    title = next(t for t in root.iter(f"{SVG}text") if t.get("class") == "title")
    assert title.text == "shop · run 0123456789ab · failed · total 5.00s"
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks[0] == "0s" and len(ticks) >= 4


def test_svg_bars_are_placed_in_time() -> None:
    root = ET.fromstring(render_svg(analyse(report())))
    bars = _bars(root)
    line = root.findall(f".//{SVG}line[@class='bound']")[0]

    def left(name: str) -> float:
        return float(bars[name].get("x", "0"))

    def right(name: str) -> float:
        return left(name) + float(bars[name].get("width", "0"))

    assert left("db") < left("node") < left("lb")
    assert right("db") == pytest.approx(left("node"), abs=15)
    assert left("worker") > left("node")
    assert float(line.get("x1", "0")) == pytest.approx(right("worker"), abs=20)


def test_text_in_svg_and_html_is_escaped() -> None:
    data = failed_report()
    data["project"] = "a<b>&c"
    timeline = analyse(data)
    root = ET.fromstring(render_svg(timeline))  # parses: nothing unescaped
    title = next(t for t in root.iter(f"{SVG}text") if t.get("class") == "title")
    assert title.text is not None and title.text.startswith("a<b>&c")
    page = render_html(timeline)
    assert "a&lt;b&gt;&amp;c" in page and "<oops>" not in page
    assert "exited with code 1 &lt;oops&gt; &amp; more" in page


def test_html_is_one_self_contained_page_with_the_chart_and_a_table() -> None:
    page = render_html(analyse(failed_report()))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 1 and "<?xml" not in page
    assert page.count("<tr") == 1 + 8  # header and one row per service
    for external in ("<script", "<link", "src=", "@import"):
        assert external not in page
    start = page.index("<svg")
    ET.fromstring(page[start:page.index("</svg>") + len("</svg>")])


# --- the text waterfall ---------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 60, 80, 100, 132, 200])
def test_waterfall_lines_fit_the_width(width: int) -> None:
    text = render_waterfall(analyse(failed_report()), width)
    assert max(len(line) for line in text.splitlines()) <= width


def test_waterfall_long_names_still_fit() -> None:
    data = report()
    data["services"]["a-service-with-a-name-far-too-long-for-columns"] = timing(
        "a-phase-name-that-is-long", 0.1, 0.2, 0.3)
    text = render_waterfall(analyse(data), 70)
    assert max(len(line) for line in text.splitlines()) <= 70


def test_waterfall_has_one_line_per_service_with_bars_marks_and_footer() -> None:
    timeline = analyse(failed_report())
    lines = render_waterfall(timeline, 100).splitlines()
    rows = {line[2:].split()[0]: line for line in lines[2:2 + len(timeline.services)]}
    assert set(rows) == {span.name for span in timeline.services}
    for name in ("db", "node", "worker"):
        assert rows[name].startswith("* ")
    for name in ("cache", "lb", "gateway", "idle", "kept"):
        assert rows[name].startswith("  ")
    assert CREATE_TO_START in rows["db"] and START_TO_READY in rows["db"]
    assert NEVER_READY in rows["lb"] and START_TO_READY not in rows["lb"]
    assert "failed" in rows["lb"]
    assert START_TO_READY not in rows["gateway"] and "not started" in rows["gateway"]
    assert rows["idle"].rstrip().endswith("not started")
    assert "ready (kept)" in rows["kept"]
    assert rows["worker"].split()[-2:] == ["5.00s", "ready"]
    assert lines[0] == "shop · run 0123456789ab · failed · total 5.00s"
    footer = " ".join(" ".join(lines[2 + len(timeline.services):]).split())
    assert "total 5.00s" in footer and "graph bound 6.00s" in footer
    assert "phases as barriers 8.00s" in footer
    assert "critical path: db → node → worker" in footer


def test_waterfall_marks_the_bound_in_one_column() -> None:
    timeline = analyse(report())
    lines = render_waterfall(timeline, 100).splitlines()
    ruler, rows = lines[1], lines[2:2 + len(timeline.services)]
    column = ruler.index("|")
    assert all(row[column] in ("|", START_TO_READY, CREATE_TO_START) for row in rows)
    assert sum(row[column] == "|" for row in rows) >= 3
    # the bound (6.2 s) sits where worker, the end of the critical path, ends (6.4 s)
    worker = next(row for row in rows if row[2:].startswith("worker"))
    assert abs(worker.rindex(START_TO_READY) - column) <= 2


def test_rendering_does_not_change_the_report() -> None:
    data = failed_report()
    before = copy.deepcopy(data)
    timeline = analyse(data)
    render_svg(timeline)
    render_html(timeline)
    render_waterfall(timeline)
    assert data == before
