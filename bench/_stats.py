"""The arithmetic of the benchmark: medians, the critical-path and phase bounds, latencies.

Pure functions; the graph work is ollamatopo's own `DependencyGraph`, so the bound is
computed exactly as `ollamatopo plan` computes its critical path.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ollamatopo.plan._graph import DependencyGraph
from ollamatopo.plan._model import Condition


def median(values: Iterable[float]) -> float | None:
    items = list(values)
    return statistics.median(items) if items else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


@dataclass(frozen=True)
class Bound:
    """What the plan's graph allows, given each service's start-to-ready duration."""

    latency_s: float  # one container's create + start + ready, measured alone
    durations: Mapping[str, float]  # latency + the stand-in's delay, per service
    critical_path: tuple[str, ...]
    critical_s: float
    phase_s: float  # the same durations with every phase a barrier

    @property
    def saved_s(self) -> float:
        return self.phase_s - self.critical_s


def _graph(dependencies: Mapping[str, Mapping[str, str]]) -> DependencyGraph:
    return DependencyGraph({
        name: {dependency: Condition(condition) for dependency, condition in deps.items()}
        for name, deps in dependencies.items()})


def critical_path(dependencies: Mapping[str, Mapping[str, str]],
                  durations: Mapping[str, float]) -> tuple[tuple[str, ...], float]:
    """The graph's longest chain over per-service durations measured each on its own
    (a `started` edge costs the dependent nothing of its dependency's readiness)."""
    path, length = _graph(dependencies).critical_path(durations)
    return tuple(path), length


def compute_bound(dependencies: Mapping[str, Mapping[str, str]],
                  phases: Sequence[Sequence[str]], delays: Mapping[str, float],
                  latency_s: float) -> Bound:
    graph = _graph(dependencies)
    durations = {name: latency_s + delays.get(name, 0.0) for name in dependencies}
    path, length = graph.critical_path(durations)
    return Bound(latency_s=latency_s, durations=durations, critical_path=tuple(path),
                 critical_s=length, phase_s=graph.phase_bound(phases, durations))


@dataclass(frozen=True)
class Spread:
    """Median and worst of per-item figures, and which item was worst."""

    median: float | None
    worst: float | None
    worst_item: str | None
    count: int


def spread(values: Mapping[str, float | None]) -> Spread:
    known = {name: value for name, value in values.items() if value is not None}
    if not known:
        return Spread(None, None, None, 0)
    worst_item = max(known, key=lambda name: known[name])
    return Spread(median(known.values()), known[worst_item], worst_item, len(known))


def differences(later: Mapping[str, float], earlier: Mapping[str, float]
                ) -> dict[str, float | None]:
    """Per name present in `earlier`: later - earlier (None when `later` lacks it)."""
    return {name: (later[name] - at if name in later else None) for name, at in earlier.items()}


def all_ready(first_ready: Mapping[str, float | None], launched_at: float) -> float | None:
    """Seconds from launch to the last target's first answer; None if one never answered."""
    times = list(first_ready.values())
    if not times or any(at is None for at in times):
        return None
    return max(at for at in times if at is not None) - launched_at


@dataclass(frozen=True)
class LinearFit:
    """y = intercept + slope * x by least squares; `worst_residual` says how far from a line."""

    intercept: float
    slope: float
    worst_residual: float


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> LinearFit | None:
    """The least-squares line through the points; None with fewer than two distinct x."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
             / sum((x - mean_x) ** 2 for x in xs))
    intercept = mean_y - slope * mean_x
    worst = max(abs(y - (intercept + slope * x)) for x, y in zip(xs, ys, strict=True))
    return LinearFit(intercept, slope, worst)
