"""The demo model node of ollamatopo-node:demo: a small HTTP service (python3, stdlib only).

    GET /health   200 once postgres and redis answer, else 503 with the reason (JSON);
                  the dependencies are checked at most once a second
    GET /metrics  Prometheus text format
    GET /<other>  200 {"node_id": ..., "role": ..., "path": ...}

Environment: NODE_ID (default: the hostname), NODE_ROLE (default worker), NODE_PORT (8080),
POSTGRES_HOST (postgres), POSTGRES_PORT (5432), REDIS_HOST (redis), REDIS_PORT (6379).
Postgres counts as up when a TCP connection opens; redis when it answers PING with +PONG.
SIGTERM and SIGINT stop it at once (exit 0).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NODE_ID = os.environ.get("NODE_ID") or socket.gethostname()
NODE_ROLE = os.environ.get("NODE_ROLE") or "worker"
PORT = int(os.environ.get("NODE_PORT") or 8080)
POSTGRES = (os.environ.get("POSTGRES_HOST") or "postgres",
            int(os.environ.get("POSTGRES_PORT") or 5432))
REDIS = (os.environ.get("REDIS_HOST") or "redis", int(os.environ.get("REDIS_PORT") or 6379))
CHECK_EVERY = 1.0  # seconds: the dependencies are checked at most this often
CONNECT_TIMEOUT = 0.5
STARTED = time.time()


def log(message: str) -> None:
    print(f"node {NODE_ID}: {message}", file=sys.stderr, flush=True)


def check_postgres() -> str | None:
    """None when postgres accepts a TCP connection, else why not."""
    try:
        with socket.create_connection(POSTGRES, timeout=CONNECT_TIMEOUT):
            return None
    except OSError as error:
        return f"postgres {POSTGRES[0]}:{POSTGRES[1]} unreachable: {error}"


def check_redis() -> str | None:
    """None when redis answers PING with +PONG, else why not."""
    try:
        with socket.create_connection(REDIS, timeout=CONNECT_TIMEOUT) as connection:
            connection.sendall(b"PING\r\n")
            answer = b""
            while not answer.endswith(b"\r\n") and len(answer) < 512:
                chunk = connection.recv(512)
                if not chunk:
                    break
                answer += chunk
    except OSError as error:
        return f"redis {REDIS[0]}:{REDIS[1]} unreachable: {error}"
    if not answer.startswith(b"+PONG"):
        reply = answer.decode(errors="replace").strip()
        return f"redis {REDIS[0]}:{REDIS[1]} answered {reply!r} to PING"
    return None


class State:
    """The dependency check, cached for CHECK_EVERY seconds, and the request counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # guards the fields
        self.checking = threading.Lock()  # one dependency check at a time
        self.checked_at = float("-inf")
        self.problems: dict[str, str] = {}
        self.requests: dict[tuple[str, int], int] = {}

    def health(self) -> dict[str, str]:
        """The dependencies that are not up, with the reason (empty: healthy)."""
        with self.checking:
            if time.monotonic() - self.checked_at >= CHECK_EVERY:
                problems = {name: reason for name, reason in
                            (("postgres", check_postgres()), ("redis", check_redis()))
                            if reason}
                if problems != self.problems or self.checked_at == float("-inf"):
                    log(f"not healthy: {'; '.join(problems.values())}" if problems
                        else "healthy: postgres and redis are up")
                with self.lock:
                    self.problems = problems
                    self.checked_at = time.monotonic()
            with self.lock:
                return dict(self.problems)

    def count(self, path: str, status: int) -> None:
        with self.lock:
            key = (path, status)
            self.requests[key] = self.requests.get(key, 0) + 1

    def metrics(self) -> str:
        with self.lock:
            problems, requests = dict(self.problems), dict(self.requests)
            checked = self.checked_at != float("-inf")
        lines = [
            "# HELP ollama_node_up Whether the node process is up.",
            "# TYPE ollama_node_up gauge",
            "ollama_node_up 1",
            "# HELP ollama_node_info The node's identity.",
            "# TYPE ollama_node_info gauge",
            f'ollama_node_info{{node_id="{_label(NODE_ID)}",role="{_label(NODE_ROLE)}"}} 1',
            "# HELP ollama_node_dependency_up Whether a dependency answered its last check.",
            "# TYPE ollama_node_dependency_up gauge",
        ]
        for name in ("postgres", "redis"):
            lines.append(f'ollama_node_dependency_up{{dependency="{name}"}} '
                         f"{int(checked and name not in problems)}")
        lines += ["# HELP ollama_node_requests_total HTTP requests served.",
                  "# TYPE ollama_node_requests_total counter"]
        for (path, status), total in sorted(requests.items()):
            lines.append(f'ollama_node_requests_total{{path="{_label(path)}",'
                         f'code="{status}"}} {total}')
        lines += ["# HELP process_start_time_seconds Start time of the process (Unix time).",
                  "# TYPE process_start_time_seconds gauge",
                  f"process_start_time_seconds {STARTED:.3f}"]
        return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = "ollamatopo-node/1"

    def do_GET(self) -> None:
        self.answer(head=False)

    def do_HEAD(self) -> None:
        self.answer(head=True)

    def answer(self, head: bool) -> None:
        path = self.path.split("?", 1)[0]
        body: Any
        if path == "/health":
            problems = STATE.health()
            status = 503 if problems else 200
            body = ({"status": "unavailable", "node_id": NODE_ID, "reason": problems}
                    if problems else {"status": "ok", "node_id": NODE_ID})
        elif path == "/metrics":
            status = 200
            # counted before it is rendered, so a scrape sees itself
            STATE.count(path, status)
            self.send(status, STATE.metrics().encode(),
                      "text/plain; version=0.0.4; charset=utf-8", head)
            return
        else:
            status, body = 200, {"node_id": NODE_ID, "role": NODE_ROLE, "path": path}
        STATE.count("/health" if path == "/health" else "other", status)
        self.send(status, (json.dumps(body) + "\n").encode(), "application/json", head)

    def send(self, status: int, payload: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: probes would flood it


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True  # open keep-alive connections do not hold up the exit
    stopping = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        log(f"{signal.Signals(signum).name}: stopping")
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                               daemon=True)
    serving.start()
    log(f"role={NODE_ROLE} listening on :{PORT}; postgres={POSTGRES[0]}:{POSTGRES[1]} "
        f"redis={REDIS[0]}:{REDIS[1]}")
    while not stopping.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    log("stopped")


if __name__ == "__main__":
    main()
