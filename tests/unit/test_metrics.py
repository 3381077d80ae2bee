"""The daemon's metrics: events in, the Prometheus exposition format out (written by
prometheus-client, read back here by its parser)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ollamatopo.daemon._metrics import DaemonMetrics


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_events_become_metrics_in_the_prometheus_text_format() -> None:
    metrics = DaemonMetrics('shop"1')
    metrics.on_event("service healthy", {"service": "db", "start_to_ready_s": 1.25})
    metrics.on_event("service healthy", {"service": "api", "start_to_ready_s": 0.5})
    metrics.on_event("phase completed", {"phase": "base", "duration_s": 2.0})
    metrics.on_event("service unhealthy", {"service": "api"})
    metrics.on_event("service restarting", {"service": "api"})
    metrics.on_event("liveness check passed", {"service": "db", "latency_s": 0.004})
    metrics.on_event("engine lost", {})
    text = metrics.render()
    found = samples(text)
    project = ("project", 'shop"1')

    def of(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted([project, *labels.items()])))]

    assert of("ollamatopo_service_ready", service="api") == 0
    assert of("ollamatopo_service_ready", service="db") == 1
    assert of("ollamatopo_service_restarts_total", service="api") == 1
    assert of("ollamatopo_service_restarts_total", service="db") == 0
    assert of("ollamatopo_service_startup_seconds", service="db") == 1.25
    assert of("ollamatopo_service_check_latency_seconds", service="db") == 0.004
    assert of("ollamatopo_phase_startup_seconds", phase="base") == 2.0
    assert of("ollamatopo_engine_up") == 0
    assert text.count("# TYPE ollamatopo_service_ready gauge") == 1
    assert "# TYPE ollamatopo_service_restarts_total counter" in text


def test_a_removed_service_leaves_the_metrics() -> None:
    metrics = DaemonMetrics("shop")
    metrics.on_event("service healthy", {"service": "api-3"})
    metrics.on_event("container removed", {"service": "api-3"})
    assert "api-3" not in metrics.render()
