"""The daemon's metrics: events in, Prometheus text out."""

from __future__ import annotations

from ollamatopo.daemon._metrics import DaemonMetrics


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
    assert 'ollamatopo_service_ready{project="shop\\"1",service="api"} 0' in text
    assert 'ollamatopo_service_ready{project="shop\\"1",service="db"} 1' in text
    assert 'ollamatopo_service_restarts_total{project="shop\\"1",service="api"} 1' in text
    assert 'ollamatopo_service_restarts_total{project="shop\\"1",service="db"} 0' in text
    assert 'ollamatopo_service_startup_seconds{project="shop\\"1",service="db"} 1.25' in text
    assert 'ollamatopo_service_check_latency_seconds{project="shop\\"1",service="db"} 0.004' \
        in text
    assert 'ollamatopo_phase_startup_seconds{project="shop\\"1",phase="base"} 2.0' in text
    assert 'ollamatopo_engine_up{project="shop\\"1"} 0' in text
    assert text.count("# TYPE ollamatopo_service_ready gauge") == 1


def test_a_removed_service_leaves_the_metrics() -> None:
    metrics = DaemonMetrics("shop")
    metrics.on_event("service healthy", {"service": "api-3"})
    metrics.on_event("container removed", {"service": "api-3"})
    assert "api-3" not in metrics.render()
