"""A fault-injecting Unix socket proxy in front of the Docker engine's socket.

Tests point ollamatopo at it (`OLLAMATOPO_DOCKER_HOST=unix://<path>`) and tell it which
requests to spoil: the first N requests whose method and path match a rule get a 500,
a reset connection, or are forwarded and then lose their answer. Everything else passes
through untouched. `pause()` freezes every byte in both directions until `resume()`, as
`kill -STOP` of a proxy process would: a stalled engine, seen from the client. Only the
test's own process talks to it; the engine and its other users see nothing.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"
# Faults a rule can inject:
ANSWER_500 = "500"  # an HTTP 500 with a JSON message; the engine never sees the request
RESET = "reset"  # the connection is closed with the request unread: the client reads ECONNRESET
LOSE_ANSWER = "lose-answer"  # the engine does it, then the connection closes without an answer


@dataclass
class Rule:
    method: str
    path: str  # a regular expression matched against the path without the /v1.xx prefix
    fault: str
    times: int  # how many matching requests to spoil; the rest pass
    hits: int = 0


@dataclass
class FaultProxy:
    path: Path
    target: str = ENGINE_SOCKET
    rules: list[Rule] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every request
    _listener: socket.socket | None = None
    _sockets: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flowing: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._flowing.set()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def spoil(self, method: str, path: str, fault: str, times: int = 1) -> Rule:
        rule = Rule(method, path, fault, times)
        self.rules.append(rule)
        return rule

    def count(self, method: str, path: str) -> int:
        """How many requests matching `method` and `path` reached the proxy."""
        with self._lock:
            return sum(1 for m, p in self.seen if m == method and re.fullmatch(path, p))

    def open(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.path.unlink(missing_ok=True)
        listener.bind(str(self.path))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        self._flowing.set()  # a paused proxy's threads wake to find their sockets closed
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> FaultProxy:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the connections ---------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=_pipe, args=(upstream, client, self._flowing),
                             daemon=True).start()
            threading.Thread(target=self._requests, args=(client, upstream),
                             daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Read the client's requests one by one (requests never pipelines) and forward,
        answer or drop each; after an upgrade (exec, attach) the bytes flow raw."""
        buffer = b""
        try:
            while True:
                if not buffer and self._reset_next(client):
                    # Unread bytes in our receive queue make the close a reset for the peer.
                    client.close()
                    return
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, rest = buffer.partition(b"\r\n\r\n")
                method, path, headers = _parse(head)
                with self._lock:
                    self.seen.append((method, path))
                fault = self._fault(method, path, (ANSWER_500, LOSE_ANSWER))
                length = int(headers.get("content-length") or 0)
                while len(rest) < length:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    rest += chunk
                request, buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
                if fault == ANSWER_500:
                    body = b'{"message":"injected fault: the engine had a bad moment"}'
                    client.sendall(b"HTTP/1.1 500 Internal Server Error\r\n"
                                   b"Content-Type: application/json\r\n"
                                   b"Content-Length: " + str(len(body)).encode() +
                                   b"\r\n\r\n" + body)
                    continue
                if fault == LOSE_ANSWER:
                    _forward_and_discard(head, rest[:length], self.target)
                    client.close()
                    return
                self._flowing.wait()
                upstream.sendall(request)
                if "upgrade" in headers or "chunked" in headers.get("transfer-encoding", ""):
                    if buffer:
                        upstream.sendall(buffer)
                    _pipe(client, upstream, self._flowing)
                    return
        except (OSError, ValueError, IndexError):
            return
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_RDWR)

    def _reset_next(self, client: socket.socket) -> bool:
        """Look at the next request without reading it: is it to be reset?"""
        peeked = client.recv(65536, socket.MSG_PEEK)
        if b"\r\n\r\n" not in peeked:
            return False
        method, path, _ = _parse(peeked.partition(b"\r\n\r\n")[0])
        if self._fault(method, path, (RESET,)) is None:
            return False
        with self._lock:
            self.seen.append((method, path))
        return True

    def _fault(self, method: str, path: str, faults: tuple[str, ...]) -> str | None:
        with self._lock:
            for rule in self.rules:
                if rule.fault in faults and rule.method == method \
                        and re.fullmatch(rule.path, path) and rule.hits < rule.times:
                    rule.hits += 1
                    return rule.fault
        return None


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Method, path (without the API version) and headers of a request head."""
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return method, re.sub(r"^/v[0-9.]+", "", target.split("?")[0]), headers


def _forward_and_discard(head: bytes, body: bytes, target: str) -> None:
    """Send one request to the engine on a connection of its own and wait for the whole
    answer (so what it asked for is done), then throw the answer away."""
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    request = b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as side:
        side.connect(target)
        side.sendall(request)
        side.settimeout(30)
        with contextlib.suppress(OSError):
            while side.recv(65536):
                pass


def _pipe(source: socket.socket, sink: socket.socket, flowing: threading.Event) -> None:
    try:
        while chunk := source.recv(65536):
            flowing.wait()
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


class SilentEngine:
    """A Unix socket that accepts connections and never answers: an engine that hangs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.connections: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def __enter__(self) -> SilentEngine:
        self.path.unlink(missing_ok=True)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections.append(connection)  # held open, never read, never answered

    def __exit__(self, *exc: object) -> None:
        self._listener.close()
        for connection in self.connections:
            connection.close()
        self.path.unlink(missing_ok=True)
