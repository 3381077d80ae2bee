"""Loopback ports for the stand-ins that publish one (seed, compose, engine floor), and
the poller's targets there."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from bench._plans import SeedTopology
from bench._poller import Target


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports free right now (bound, read, released together)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def seed_ports(topology: SeedTopology) -> dict[str, int]:
    return dict(zip(topology.names, free_ports(len(topology.names)), strict=True))


def loopback_targets(ports: Mapping[str, int]) -> list[Target]:
    return [Target(name, "127.0.0.1", port) for name, port in ports.items()]
