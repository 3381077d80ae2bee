"""A run report drawn as time: the critical path and its bounds, a Gantt chart (SVG, or an
HTML page around it) and a text waterfall for terminals.

Pure: the dict `RunRecorder.report()` writes comes in, numbers and text go out. The
critical path weighs each service by its measured start-to-ready seconds on the
dependency graph the report carries; its length, counted from the first start, is the
graph bound: how soon the run could have ended had every service started the moment its
dependencies held. The phase bound is what the same seconds cost with phases as barriers:
each service starting once every service of the earlier phases is ready and its own
dependencies hold, so it is never below the graph bound.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._model import Condition
from ollamatopo.report._recorder import format_seconds, read_seconds, start_to_ready

STATUS_COLOURS = {"ready": "#3f9b63", "kept": "#7fa7c9", "failed": "#d93a32",
                  "pending": "#a0a4a8"}
PHASE_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#edc948",
                 "#9c755f")
CRITICAL_OUTLINE = "#1b1b1b"
BOUND_COLOUR = "#1f4fa0"


@dataclass(frozen=True)
class ServiceSpan:
    """One service's marks in a run, seconds since the run began (None: never reached)."""

    name: str
    phase: str
    status: str  # as recorded: ready, failed, pending, skipped
    optional: bool
    created_s: float | None
    started_s: float | None
    ready_s: float | None
    error: str
    critical: bool

    @property
    def start_to_ready_s(self) -> float | None:
        return start_to_ready(self.started_s, self.ready_s)

    @property
    def create_to_start_s(self) -> float | None:
        if self.created_s is None or self.started_s is None:
            return None
        return max(0.0, self.started_s - self.created_s)

    @property
    def kept(self) -> bool:
        """Ready without being started by this run: its container was already running."""
        return self.started_s is None and self.ready_s is not None

    @property
    def label(self) -> str:
        """What happened to it, in a few words."""
        if self.kept:
            text = "ready (kept)"
        elif self.status in ("ready", "failed", "skipped"):
            text = self.status
            if self.status == "failed" and self.started_s is None:
                text = "failed, not started"
        elif self.started_s is not None:
            text = "not ready"
        else:
            text = "not started"
        return f"{text} (optional)" if self.optional else text

    @property
    def colour_key(self) -> str:
        if self.status == "failed":
            return "failed"
        if self.kept:
            return "kept"
        return "ready" if self.ready_s is not None else "pending"


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    began_s: float | None
    completed_s: float | None


@dataclass(frozen=True)
class Timeline:
    """A run report, checked and analysed."""

    project: str
    run_id: str
    outcome: str
    started_at: str
    total_s: float | None
    services: tuple[ServiceSpan, ...]  # by phase, then as the report lists them
    phases: tuple[PhaseSpan, ...]
    critical_path: tuple[str, ...] | None  # None: the report carries no dependency graph
    graph_bound_s: float | None
    phase_bound_s: float | None  # None: with phases as barriers the run would never end
    first_start_s: float | None
    barrier_problem: str = ""  # why it would never end

    @property
    def bound_at_s(self) -> float | None:
        """Where the graph bound ends on the run's clock: counted from the first start."""
        if self.graph_bound_s is None or self.first_start_s is None:
            return None
        return self.first_start_s + self.graph_bound_s

    @property
    def phase_bound_at_s(self) -> float | None:
        if self.phase_bound_s is None or self.first_start_s is None:
            return None
        return self.first_start_s + self.phase_bound_s

    @property
    def end_s(self) -> float:
        """The right edge of every chart: the latest time anything shows."""
        times = [self.total_s, self.bound_at_s, self.phase_bound_at_s]
        for span in self.services:
            times += [span.created_s, span.started_s, span.ready_s]
        for phase in self.phases:
            times += [phase.began_s, phase.completed_s]
        known = [t for t in times if t is not None]
        return max(known) if known and max(known) > 0 else 1.0

    def run_end_s(self) -> float:
        """Where a span with no recorded end stops: the end of the run."""
        return self.total_s if self.total_s is not None else self.end_s


# --- analysis -------------------------------------------------------------------------------


def analyse(report: Mapping[str, Any]) -> Timeline:
    """Check a run report and compute its critical path and bounds.

    Raises ValueError, saying what is wrong, when `report` is not a run report.
    """
    if not isinstance(report, Mapping):
        raise ValueError("the top level is not a JSON object")
    raw_services = report.get("services")
    if not isinstance(raw_services, Mapping):
        raise ValueError("it has no `services` object")
    given_phases = report.get("phases")
    raw_phases: Mapping[str, Any] = given_phases if isinstance(given_phases, Mapping) else {}
    order = _phase_order(report, raw_phases, raw_services)

    timings: dict[str, Mapping[str, Any]] = {}
    for name, timing in raw_services.items():
        if not isinstance(timing, Mapping):
            raise ValueError(f"services.{name} is not an object")
        timings[str(name)] = timing

    spans = [_span(name, timing) for name, timing in timings.items()]
    graph = _graph(report.get("dependencies"), list(timings))
    critical_path, graph_bound, phase_bound, barrier_problem = _bounds(graph, order, spans)
    critical = set(critical_path or ())
    spans = [replace(span, critical=True) if span.name in critical else span for span in spans]
    rank = {phase: index for index, phase in enumerate(order)}
    spans.sort(key=lambda span: rank.get(span.phase, len(rank)))  # stable: report order kept
    starts = [span.started_s for span in spans if span.started_s is not None]
    phases = []
    for name in order:
        raw = raw_phases.get(name)
        raw = raw if isinstance(raw, Mapping) else {}
        phases.append(PhaseSpan(name, read_seconds(raw.get("began_s")),
                                read_seconds(raw.get("completed_s"))))
    return Timeline(
        project=str(report.get("project", "")),
        run_id=str(report.get("run_id", "")),
        outcome=str(report.get("outcome", "unknown")),
        started_at=str(report.get("started_at", "")),
        total_s=read_seconds(report.get("total_s")),
        services=tuple(spans),
        phases=tuple(phases),
        critical_path=critical_path,
        graph_bound_s=graph_bound,
        phase_bound_s=phase_bound,
        first_start_s=min(starts) if starts else None,
        barrier_problem=barrier_problem,
    )


def _span(name: str, timing: Mapping[str, Any]) -> ServiceSpan:
    return ServiceSpan(
        name=name,
        phase=str(timing.get("phase", "")),
        status=str(timing.get("status", "pending")),
        optional=bool(timing.get("optional", False)),
        created_s=read_seconds(timing.get("created_s")),
        started_s=read_seconds(timing.get("started_s")),
        ready_s=read_seconds(timing.get("ready_s")),
        error=str(timing.get("error") or ""),
        critical=False,
    )


def _bounds(graph: DependencyGraph | None, order: list[str], spans: list[ServiceSpan],
            ) -> tuple[tuple[str, ...] | None, float | None, float | None, str]:
    """The critical path, the graph bound, the phase bound and, when phases as barriers
    would never finish, why. Each service weighs its start-to-ready seconds (0 if it has
    none) in both bounds; the phase bound keeps the graph's own dependencies as well, so it
    is never below the graph bound."""
    durations = {span.name: span.start_to_ready_s or 0.0 for span in spans}
    phases = [[span.name for span in spans if span.phase == phase] for phase in order]
    path: tuple[str, ...] | None = None
    bound: float | None = None
    if graph is not None:
        found, length = graph.critical_path(durations)
        path, bound = tuple(found), round(length, 3)
    try:
        barriers = (graph or DependencyGraph({})).phase_bound(phases, durations)
    except ValueError as error:
        return path, bound, None, str(error)
    return path, bound, round(barriers, 3), ""


def summary(timeline: Timeline) -> dict[str, Any]:
    """The computed figures as plain data (what `report --json` prints)."""
    return {
        "project": timeline.project,
        "run_id": timeline.run_id,
        "outcome": timeline.outcome,
        "started_at": timeline.started_at,
        "total_s": timeline.total_s,
        "critical_path": list(timeline.critical_path)
        if timeline.critical_path is not None else None,
        "graph_bound_s": timeline.graph_bound_s,
        "first_start_s": timeline.first_start_s,
        "bound_at_s": _round(timeline.bound_at_s),
        "phase_bound_s": timeline.phase_bound_s,
        "barrier_problem": timeline.barrier_problem or None,
        "services": {span.name: {
            "phase": span.phase,
            "status": span.status,
            "optional": span.optional,
            "created_s": span.created_s,
            "started_s": span.started_s,
            "ready_s": span.ready_s,
            "create_to_start_s": _round(span.create_to_start_s),
            "start_to_ready_s": _round(span.start_to_ready_s),
            "critical": span.critical,
        } for span in timeline.services},
    }


def _phase_order(report: Mapping[str, Any], phases: Mapping[str, Any],
                 services: Mapping[str, Any]) -> list[str]:
    """`phase_order` if the report has it, else the order of `phases`; then any phase only
    a service names."""
    given = report.get("phase_order")
    order = [str(p) for p in given] if isinstance(given, list) else [str(p) for p in phases]
    for timing in services.values():
        phase = str(timing.get("phase", "")) if isinstance(timing, Mapping) else ""
        if phase and phase not in order:
            order.append(phase)
    return order


def _graph(raw: Any, services: list[str]) -> DependencyGraph | None:
    """The report's dependency graph, restricted to its services; None if it has none."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValueError("`dependencies` is not an object")
    known = set(services)
    edges: dict[str, dict[str, Condition]] = {name: {} for name in services}
    for name, deps in raw.items():
        if name not in known:
            continue
        if not isinstance(deps, Mapping):
            raise ValueError(f"dependencies.{name} is not an object")
        for dependency, condition in deps.items():
            try:
                parsed = Condition(condition)
            except ValueError:
                raise ValueError(f"dependencies.{name}.{dependency}: {condition!r} is not "
                                 "'started' or 'healthy'") from None
            if dependency in known:
                edges[name][dependency] = parsed
    graph = DependencyGraph(edges)
    cycle = graph.find_cycle()
    if cycle:
        raise ValueError(f"`dependencies` has a cycle: {' -> '.join(cycle)}")
    return graph


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _title(timeline: Timeline) -> str:
    return (f"{timeline.project or '(no project)'} · run {timeline.run_id or '?'} · "
            f"{timeline.outcome} · total {format_seconds(timeline.total_s)}")


def _bounds_sentence(timeline: Timeline) -> str:
    if timeline.critical_path is None:
        graph = "no dependency graph in this report (written before ollamatopo recorded it)"
    else:
        graph = (f"graph bound {format_seconds(timeline.graph_bound_s)} from the first start "
                 f"at {format_seconds(timeline.first_start_s)}")
    return f"{graph}; {_barrier_sentence(timeline)}"


def _barrier_sentence(timeline: Timeline) -> str:
    if timeline.phase_bound_s is None:
        return f"phases as barriers would never end ({timeline.barrier_problem})"
    return f"phases as barriers {format_seconds(timeline.phase_bound_s)}"


def _path_sentence(timeline: Timeline) -> str:
    path = timeline.critical_path
    if path is None:
        return "critical path: unknown"
    return "critical path: " + (" → ".join(path) if path else "(empty)")


# --- SVG ------------------------------------------------------------------------------------

_ROW = 22
_BAR = 12
_CHAR = 7.0  # rough width of one character at font-size 12


def render_svg(timeline: Timeline, *, width: int = 960) -> str:
    """A standalone SVG document: one row per service, phases as background bands."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _svg(timeline, width) + "\n"


def _svg(timeline: Timeline, width: int) -> str:
    names = [span.name for span in timeline.services]
    label_width = max(90.0, _CHAR * max((len(n) for n in names), default=4) + 34)
    value_width = min(220.0, max(70.0, 6.5 * max((len(s.label) for s in timeline.services),
                                                 default=0) + 14))
    x0, x1 = label_width, max(label_width + 100.0, width - value_width)
    end = timeline.end_s
    top = 70.0
    layout = _svg_layout(timeline, top)
    rows_bottom = max([top, *(y + _ROW for _, y in layout.rows)])
    axis_y = rows_bottom + 8
    height = axis_y + 96

    def x(seconds: float) -> float:
        return x0 + (x1 - x0) * max(0.0, seconds) / end

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(_title(timeline))}</title>",
        f'<rect width="{width}" height="{height:.0f}" fill="#ffffff"/>',
        f'<text class="title" x="12" y="22" font-size="15" font-weight="bold">'
        f"{escape(_title(timeline))}</text>",
        f'<text class="subtitle" x="12" y="40" fill="#444">'
        f"{escape(_path_sentence(timeline))}</text>",
        f'<text class="subtitle" x="12" y="56" fill="#444">'
        f"{escape(_bounds_sentence(timeline))}</text>",
    ]

    # Phases: a band behind the rows of its services, from its first create to its end.
    for index, phase, band_top, band_bottom in layout.bands:
        colour = PHASE_COLOURS[index % len(PHASE_COLOURS)]
        began = phase.began_s if phase.began_s is not None else 0.0
        left = x(began)
        right = x(phase.completed_s if phase.completed_s is not None else end)
        name = phase.name + ("" if phase.completed_s is not None else " (not completed)")
        if phase.began_s is not None:
            out.append(f'<rect class="phase" data-phase={quoteattr(phase.name)} '
                       f'x="{left:.1f}" y="{band_top:.1f}" width="{max(1.0, right - left):.1f}" '
                       f'height="{band_bottom - band_top:.1f}" fill="{colour}" '
                       f'fill-opacity="0.13" stroke="{colour}" stroke-opacity="0.4"/>')
        else:
            name = phase.name + " (nothing began)"
        out.append(f'<text class="phase-label" x="{left + 4:.1f}" y="{band_top + 12:.1f}" '
                   f'fill="{colour}" font-size="11" font-weight="bold">{escape(name)}</text>')

    step = _tick_step(end, max(2, int((x1 - x0) / 80)))
    ticks = []
    tick = 0.0
    while tick <= end + 1e-9:
        ticks.append(tick)
        tick += step
    for tick in ticks:
        out.append(f'<line class="grid" x1="{x(tick):.1f}" y1="{top:.1f}" '
                   f'x2="{x(tick):.1f}" y2="{axis_y:.1f}" stroke="#000" stroke-opacity="0.08"/>')
        out.append(f'<text class="tick" x="{x(tick):.1f}" y="{axis_y + 16:.1f}" '
                   f'text-anchor="middle" fill="#333">{_tick_label(tick, step)}</text>')
    out.append(f'<line class="axis" x1="{x0:.1f}" y1="{axis_y:.1f}" x2="{x1:.1f}" '
               f'y2="{axis_y:.1f}" stroke="#333"/>')

    run_end = timeline.run_end_s()
    for span, row_top in layout.rows:
        out.append(_svg_row(span, row_top + _ROW / 2, x, x0, run_end, layout.swatches))

    label_y = axis_y + 34
    for css, at, text, colour, dash in (
            ("bound", timeline.bound_at_s, f"graph bound {format_seconds(timeline.graph_bound_s)}",
             BOUND_COLOUR, "6 3"),
            ("phase-bound", timeline.phase_bound_at_s,
             f"phases as barriers {format_seconds(timeline.phase_bound_s)}", "#777777", "2 3")):
        if at is None:
            continue
        anchor = "end" if x(at) > (x0 + x1) / 2 else "start"
        out.append(f'<line class="{css}" x1="{x(at):.1f}" y1="{top:.1f}" x2="{x(at):.1f}" '
                   f'y2="{axis_y:.1f}" stroke="{colour}" stroke-width="1.6" '
                   f'stroke-dasharray="{dash}"/>')
        out.append(f'<text class="{css}-label" x="{x(at):.1f}" y="{label_y:.1f}" '
                   f'text-anchor="{anchor}" fill="{colour}">{escape(text)}</text>')
        label_y += 15

    out.append(_svg_legend(12.0, height - 12))
    out.append("</svg>")
    return "\n".join(out)


_PHASE_HEADER = 17.0


@dataclass(frozen=True)
class _Layout:
    rows: list[tuple[ServiceSpan, float]]  # each service and the top of its row
    bands: list[tuple[int, PhaseSpan, float, float]]  # phase index, phase, top, bottom
    swatches: dict[str, str]  # service -> its phase colour


def _svg_layout(timeline: Timeline, top: float) -> _Layout:
    """Rows grouped by phase, each group under a header line that carries the phase name."""
    rows: list[tuple[ServiceSpan, float]] = []
    bands: list[tuple[int, PhaseSpan, float, float]] = []
    swatches: dict[str, str] = {}
    cursor = top
    placed: set[str] = set()
    for index, phase in enumerate(timeline.phases):
        members = [span for span in timeline.services if span.phase == phase.name]
        if not members:
            continue
        band_top = cursor
        cursor += _PHASE_HEADER
        for span in members:
            rows.append((span, cursor))
            swatches[span.name] = PHASE_COLOURS[index % len(PHASE_COLOURS)]
            placed.add(span.name)
            cursor += _ROW
        bands.append((index, phase, band_top, cursor))
        cursor += 4
    for span in timeline.services:
        if span.name not in placed:
            rows.append((span, cursor))
            cursor += _ROW
    return _Layout(rows, bands, swatches)


def _svg_row(span: ServiceSpan, mid: float, x: Callable[[float], float], x0: float,
             run_end: float, swatches: Mapping[str, str]) -> str:
    colour = STATUS_COLOURS[span.colour_key]
    swatch = swatches.get(span.name, "#cccccc")
    weight = ' font-weight="bold"' if span.critical else ""
    name = ("* " if span.critical else "") + span.name
    tooltip = [f"{span.name} ({span.phase or 'no phase'}): {span.label}",
               f"created {format_seconds(span.created_s)}, "
               f"started {format_seconds(span.started_s)}, ready {format_seconds(span.ready_s)}"]
    if span.start_to_ready_s is not None:
        tooltip.append(f"start to ready {format_seconds(span.start_to_ready_s)}")
    if span.critical:
        tooltip.append("on the critical path")
    if span.error:
        tooltip.append(span.error)
    parts = [f'<g class="service" data-service={quoteattr(span.name)}>',
             f"<title>{escape(chr(10).join(tooltip))}</title>",
             f'<rect x="6" y="{mid - 6:.1f}" width="4" height="12" fill="{swatch}"/>',
             f'<text class="label" x="{x0 - 8:.1f}" y="{mid + 4:.1f}" text-anchor="end"'
             f"{weight}>{escape(name)}</text>"]
    if span.created_s is not None:
        wait_end = span.started_s if span.started_s is not None else run_end
        dash = "" if span.started_s is not None else ' stroke-dasharray="3 3"'
        parts.append(f'<line class="wait" x1="{x(span.created_s):.1f}" y1="{mid:.1f}" '
                     f'x2="{x(wait_end):.1f}" y2="{mid:.1f}" stroke="#8a8a8a" '
                     f'stroke-width="3"{dash}/>')
    after = None
    if span.started_s is not None:
        finished = span.ready_s is not None
        right = x(span.ready_s if span.ready_s is not None else run_end)
        left = x(span.started_s)
        css = " ".join(["bar", span.colour_key, *(["critical"] if span.critical else []),
                        *([] if finished else ["unfinished"])])
        outline = (f' stroke="{CRITICAL_OUTLINE}" stroke-width="2.2"' if span.critical
                   else ' stroke="#00000033" stroke-width="0.8"')
        if not finished:
            outline += ' stroke-dasharray="4 2" fill-opacity="0.45"'
        parts.append(f'<rect class="{css}" x="{left:.1f}" y="{mid - _BAR / 2:.1f}" '
                     f'width="{max(2.0, right - left):.1f}" height="{_BAR}" rx="2" '
                     f'fill="{colour}"{outline}/>')
        after = max(right, left + 2.0)
    elif span.ready_s is not None:  # kept: ready at once, started by an earlier run
        at = x(span.ready_s)
        parts.append(f'<path class="kept" d="M {at:.1f} {mid - 6:.1f} l 6 6 l -6 6 l -6 -6 z" '
                     f'fill="{colour}"/>')
        after = at + 6
    if after is None and span.created_s is not None:
        after = x(run_end)
    text = (format_seconds(span.start_to_ready_s) if span.start_to_ready_s is not None
            else span.label)
    parts.append(f'<text class="value" x="{(after if after is not None else x0) + 5:.1f}" '
                 f'y="{mid + 4:.1f}" fill="{"#b3261e" if span.status == "failed" else "#333"}"'
                 f' font-size="11">{escape(text)}</text>')
    parts.append("</g>")
    return "\n".join(parts)


def _svg_legend(left: float, y: float) -> str:
    box = f'<rect x="{{x}}" y="{y - 9}" width="16" height="9" fill="{{fill}}"{{extra}}/>'
    line = f'<line x1="{{x}}" y1="{y - 4}" x2="{{x2}}" y2="{y - 4}" stroke="{{fill}}"{{extra}}/>'
    items = [
        (box, STATUS_COLOURS["ready"], "", "start → ready"),
        (box, STATUS_COLOURS["failed"], "", "failed"),
        (line, "#8a8a8a", ' stroke-width="3"', "create → start"),
        (box, "#ffffff", f' stroke="{CRITICAL_OUTLINE}" stroke-width="2"', "critical path"),
        (line, BOUND_COLOUR, ' stroke-width="1.6" stroke-dasharray="6 3"', "graph bound"),
        (line, "#777777", ' stroke-width="1.6" stroke-dasharray="2 3"', "phases as barriers"),
    ]
    parts = ['<g class="legend" font-size="11" fill="#333">']
    cursor = left
    for shape, fill, extra, text in items:
        parts.append(shape.format(x=f"{cursor:.1f}", x2=f"{cursor + 16:.1f}", fill=fill,
                                  extra=extra))
        parts.append(f'<text x="{cursor + 21:.1f}" y="{y}">{escape(text)}</text>')
        cursor += 30 + _CHAR * len(text)
    parts.append("</g>")
    return "\n".join(parts)


def _tick_step(span: float, count: int) -> float:
    raw = span / max(1, count)
    base = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 5.0, 10.0):
        if base * multiple >= raw:
            return base * multiple
    return base * 10.0


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{value:.{decimals}f}s"


# --- HTML -----------------------------------------------------------------------------------


def render_html(timeline: Timeline, *, width: int = 960) -> str:
    """One self-contained page: the chart and a table of the figures."""
    rows = []
    for span in timeline.services:
        cells = [span.name, span.phase, span.label, format_seconds(span.created_s),
                 format_seconds(span.started_s), format_seconds(span.ready_s),
                 format_seconds(span.start_to_ready_s), "yes" if span.critical else ""]
        css = f' class="{span.colour_key}{" critical" if span.critical else ""}"'
        rows.append(f"<tr{css}>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells)
                    + "</tr>")
    errors = [f"<li><b>{escape(span.name)}</b>: {escape(span.error)}</li>"
              for span in timeline.services if span.error]
    title = escape(_title(timeline))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{title}</title>",
        "<style>",
        "body { font-family: sans-serif; margin: 1.5em; color: #222; }",
        "table { border-collapse: collapse; margin-top: 1em; }",
        "th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.8em; text-align: left; }",
        "td:nth-child(n+4) { text-align: right; font-variant-numeric: tabular-nums; }",
        "tr.failed td { color: #b3261e; }",
        "tr.critical td:first-child { font-weight: bold; }",
        "</style>",
        "</head>",
        "<body>",
        f"<h1>{title}</h1>",
        f"<p>started at {escape(timeline.started_at or '?')}. "
        f"{escape(_path_sentence(timeline))}. {escape(_bounds_sentence(timeline))}.</p>",
        _svg(timeline, width),
        "<table>",
        "<thead><tr><th>service</th><th>phase</th><th>status</th><th>created</th>"
        "<th>started</th><th>ready</th><th>start → ready</th><th>critical path</th></tr>"
        "</thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        *(["<h2>errors</h2>", "<ul>", *errors, "</ul>"] if errors else []),
        "</body>",
        "</html>",
        "",
    ])


# --- text waterfall -------------------------------------------------------------------------

CREATE_TO_START = "·"
START_TO_READY = "█"
NEVER_READY = "░"
KEPT = "o"
BOUND = "|"


def render_waterfall(timeline: Timeline, width: int = 80) -> str:
    """One line per service, bars scaled to `width` columns (the caller's terminal)."""
    width = max(40, width)
    spans = timeline.services
    value_w = 7
    name_w = min(24, max((len(span.name) for span in spans), default=0))
    phase_w = min(12, max((len(span.phase) for span in spans), default=0))
    label_w = min(30, max((len(span.label) for span in spans), default=0))

    def bar_width(with_phase: bool) -> int:
        fixed = 2 + name_w + 1 + (phase_w + 1 if with_phase else 0) + 1 + value_w + 1 + label_w
        return width - fixed

    with_phase = phase_w > 0 and bar_width(True) >= 24
    while bar_width(with_phase) < 12 and (label_w > 8 or name_w > 8):  # a narrow terminal
        if label_w >= name_w:
            label_w -= 1
        else:
            name_w -= 1
    bar_w = max(10, bar_width(with_phase))
    names = [_clip(span.name, name_w) for span in spans]
    phases = [_clip(span.phase, phase_w) for span in spans]
    labels = [_clip(span.label, label_w) for span in spans]
    end = timeline.end_s

    def column(seconds: float) -> int:
        return min(bar_w - 1, max(0, round(seconds / end * (bar_w - 1))))

    bound = timeline.bound_at_s
    bound_col = column(bound) if bound is not None else None
    run_end = timeline.run_end_s()
    prefix_w = 2 + name_w + 1 + (phase_w + 1 if with_phase else 0)

    lines = [_clip(_title(timeline), width)]
    ruler = [" "] * bar_w
    start_label, end_label = "0s", format_seconds(end)
    ruler[:len(start_label)] = start_label
    ruler[bar_w - len(end_label):] = end_label
    if bound_col is not None and ruler[bound_col] == " ":
        ruler[bound_col] = BOUND
    lines.append((" " * prefix_w + "".join(ruler)).rstrip())

    for span, name, phase, label in zip(spans, names, phases, labels, strict=True):
        cells = [" "] * bar_w
        if span.created_s is not None:
            until = span.started_s if span.started_s is not None else run_end
            first, last = column(span.created_s), column(until)
            if span.started_s is not None:
                last -= 1
            for index in range(first, last + 1):
                cells[index] = CREATE_TO_START
        if span.started_s is not None:
            mark = START_TO_READY if span.ready_s is not None else NEVER_READY
            until = span.ready_s if span.ready_s is not None else run_end
            for index in range(column(span.started_s), column(until) + 1):
                cells[index] = mark
        elif span.ready_s is not None:
            cells[column(span.ready_s)] = KEPT
        if bound_col is not None and cells[bound_col] == " ":
            cells[bound_col] = BOUND
        value = format_seconds(span.start_to_ready_s)
        line = (("* " if span.critical else "  ") + name.ljust(name_w) + " "
                + (phase.ljust(phase_w) + " " if with_phase else "") + "".join(cells) + " "
                + value.rjust(value_w) + " " + label)
        lines.append(line.rstrip())

    if timeline.critical_path is None:
        graph = "graph bound unknown (no dependency graph in this report)"
    elif bound is None:
        graph = f"graph bound {format_seconds(timeline.graph_bound_s)} (nothing was started)"
    else:
        graph = (f"graph bound {format_seconds(timeline.graph_bound_s)} ({BOUND} at "
                 f"{format_seconds(bound)}, from the first start at "
                 f"{format_seconds(timeline.first_start_s)})")
    footer = [
        f"total {format_seconds(timeline.total_s)} · {_barrier_sentence(timeline)}",
        graph,
        _path_sentence(timeline) + (" (marked *)" if timeline.critical_path else ""),
        f"{CREATE_TO_START} create → start   {START_TO_READY} start → ready   "
        f"{NEVER_READY} started, never ready   {KEPT} kept, ready",
    ]
    for sentence in footer:
        lines += textwrap.wrap(sentence, width, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
