"""The benchmark's arithmetic: bounds, medians, spreads, ratios, line fits (no Docker)."""

from __future__ import annotations

import pytest

from bench._plans import SEED_DELAYS
from bench._stats import (
    all_ready,
    compute_bound,
    differences,
    linear_fit,
    median,
    ratio,
    spread,
)

# The seed's graph: node-1 waits for the foundation to be healthy; workers and the load
# balancer for node-1 to have started; grafana for prometheus to have started.
SEED_GRAPH = {
    "postgres": {}, "redis": {}, "minio": {},
    "ollama-node-1": {"postgres": "healthy", "redis": "healthy", "minio": "healthy"},
    "prometheus": {},
    "ollama-node-2": {"ollama-node-1": "started"}, "ollama-node-3": {"ollama-node-1": "started"},
    "load-balancer": {"ollama-node-1": "started"}, "grafana": {"prometheus": "started"},
    "jaeger": {},
}
SEED_PHASES = [["postgres", "redis", "minio"], ["ollama-node-1", "prometheus"],
               ["ollama-node-2", "ollama-node-3"], ["load-balancer", "grafana", "jaeger"]]


def test_the_seed_bound_is_postgres_then_node_1() -> None:
    bound = compute_bound(SEED_GRAPH, SEED_PHASES, SEED_DELAYS, latency_s=0.5)
    assert bound.critical_path == ("postgres", "ollama-node-1")
    assert bound.critical_s == pytest.approx(3.5 + 4.5)
    # barriers: max per phase of (0.5 + delay): 3.5 + 4.5 + 3.5 + 2.5
    assert bound.phase_s == pytest.approx(14.0)
    assert bound.saved_s == pytest.approx(6.0)
    assert bound.durations["jaeger"] == pytest.approx(1.5)


def test_a_started_edge_costs_only_the_dependencys_start() -> None:
    graph = {"a": {}, "b": {"a": "started"}}
    bound = compute_bound(graph, [["a"], ["b"]], {"a": 5.0, "b": 1.0}, latency_s=0.0)
    assert bound.critical_s == pytest.approx(5.0)
    assert bound.phase_s == pytest.approx(6.0)


def test_median_and_ratio_handle_nothing() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([]) is None
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None


def test_spread_names_the_worst() -> None:
    result = spread({"a": 0.05, "b": 0.2, "c": None, "d": 0.1})
    assert (result.median, result.worst, result.worst_item, result.count) == (0.1, 0.2, "b", 3)
    assert spread({}).median is None


def test_differences_per_name_of_the_earlier() -> None:
    assert differences({"a": 5.0, "b": 7.0}, {"a": 4.5, "c": 1.0}) == {"a": 0.5, "c": None}


def test_all_ready_needs_every_target() -> None:
    assert all_ready({"a": 101.0, "b": 103.5}, launched_at=100.0) == 3.5
    assert all_ready({"a": 101.0, "b": None}, launched_at=100.0) is None
    assert all_ready({}, launched_at=100.0) is None


def test_linear_fit_of_a_line_and_of_a_curve() -> None:
    line = linear_fit([10, 50, 100, 200], [1.1, 3.1, 5.6, 10.6])
    assert line is not None
    assert line.slope == pytest.approx(0.05) and line.intercept == pytest.approx(0.6)
    assert line.worst_residual == pytest.approx(0.0, abs=1e-9)
    curve = linear_fit([10, 50, 100, 200], [0.1, 2.5, 10.0, 40.0])
    assert curve is not None and curve.worst_residual > 1.0
    assert linear_fit([10], [1.0]) is None
