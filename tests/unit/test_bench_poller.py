"""The benchmark's poller against a small HTTP server on loopback (no Docker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench._poller import ReadinessPoller, Target


class _Health(BaseHTTPRequestHandler):
    ready = threading.Event()

    def do_GET(self) -> None:
        self.send_response(200 if self.ready.is_set() and self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, threading.Event]]:
    ready = threading.Event()
    handler = type("Health", (_Health,), {"ready": ready})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], ready
    httpd.shutdown()
    httpd.server_close()


def test_first_200_is_recorded_within_a_few_intervals(server: tuple[int,
                                                                    threading.Event]) -> None:
    port, ready = server
    with ReadinessPoller([Target("svc", "127.0.0.1", port)]) as poller:
        time.sleep(0.2)
        assert poller.first_ready()["svc"] is None
        became_ready = time.time()
        ready.set()
        assert poller.wait(5)
    first = poller.first_ready()["svc"]
    assert first is not None and 0 <= first - became_ready < 0.2
    assert poller.probes()["svc"] >= 5


def test_a_gated_target_is_not_polled_until_its_gate_opens(
        server: tuple[int, threading.Event]) -> None:
    port, ready = server
    ready.set()
    with ReadinessPoller([Target("svc", "127.0.0.1", port)], gated=True) as poller:
        time.sleep(0.1)
        assert poller.probes()["svc"] == 0
        poller.open_gate("svc")
        poller.open_gate("unknown")
        assert poller.wait(5)
    assert poller.probes()["svc"] == 1


def test_a_closed_port_never_answers() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with ReadinessPoller([Target("none", "127.0.0.1", port)]) as poller:
        assert not poller.wait(0.1)
    assert poller.first_ready() == {"none": None}
