"""sd_notify: tell systemd how the daemon is doing, with a datagram socket and a few lines.

systemd passes a unit of `Type=notify` the address of its notification socket in
`NOTIFY_SOCKET`: a file system path, or an abstract socket name written with a leading
`@`. A message is one datagram of newline-separated `KEY=VALUE` assignments: `READY=1`,
`STATUS=...`, `RELOADING=1` with `MONOTONIC_USEC=...`, `STOPPING=1`, `WATCHDOG=1`,
`EXTEND_TIMEOUT_USEC=...`. With `WatchdogSec=` set, systemd also passes `WATCHDOG_USEC`
(and `WATCHDOG_PID`, the process meant to ping) and expects `WATCHDOG=1` within that time;
pinging at half of it is the usual margin.

Without `NOTIFY_SOCKET` every method is a no-op that returns False. A failed send (systemd
restarted, socket gone, queue full) returns False too and never raises: a daemon must not
die because its supervisor went away.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SystemdNotifier"]

SEND_TIMEOUT = 0.5  # seconds a send may block on a full queue before it counts as failed
ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def _address(value: str | None) -> str | None:
    """The socket address of a NOTIFY_SOCKET value; None when it is unset or unsupported."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace (Linux)
    if value.startswith("/"):
        return value
    return None  # e.g. a vsock: address, which this module does not speak


def _positive_int(value: str | None) -> int | None:
    try:
        number = int(value) if value else 0
    except ValueError:
        return None
    return number if number > 0 else None


def _one_line(text: str) -> str:
    """Assignments are separated by newlines: a value must not contain one."""
    return " ".join(text.splitlines())


class SystemdNotifier:
    """Send sd_notify messages to systemd, or nothing when not run by systemd.

    Create it with `SystemdNotifier.from_environment()`. Every sending method returns True
    when the datagram was sent, and False when notification is off or the send failed.
    """

    def __init__(self, notify_socket: str | None = None, watchdog_usec: int | None = None,
                 watchdog_pid: int | None = None) -> None:
        self._address = _address(notify_socket)
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._watchdog_pid = watchdog_pid

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *,
                         unset_environment: bool = False) -> SystemdNotifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (from `os.environ` by
        default). With `unset_environment`, remove them from `os.environ` afterwards, so
        that processes started later do not inherit them (sd_notify's `unset_environment`).
        """
        source = os.environ if environ is None else environ
        made = cls(source.get("NOTIFY_SOCKET"), _positive_int(source.get("WATCHDOG_USEC")),
                   _positive_int(source.get("WATCHDOG_PID")))
        if unset_environment:
            for name in ENVIRONMENT:
                os.environ.pop(name, None)
        return made

    @property
    def enabled(self) -> bool:
        """True when NOTIFY_SOCKET named a socket: the messages go somewhere."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` assignments as one datagram, from a socket of its own (as
        sd_notify does: nothing stays open between messages)."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(SEND_TIMEOUT)
                sock.sendto(payload, self._address)
        except (OSError, ValueError):  # ValueError: e.g. a NUL in a path name
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: startup (or a reload) is complete; optionally with a STATUS line."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", f"STATUS={_one_line(status)}")

    def status(self, text: str) -> bool:
        """STATUS=: one line that `systemctl status` shows."""
        return self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        """RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC now, in microseconds), as
        systemd asks for; send `ready()` when the reload is done."""
        now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}")

    def stopping(self) -> bool:
        """STOPPING=1: the daemon is shutting down."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the keep-alive ping; send it every `watchdog_interval()` seconds."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC=: ask for `seconds` more of the start, reload or stop
        timeout (for example while first image pulls go on)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings: half of WATCHDOG_USEC. None when notification
        is off, the watchdog is off, or WATCHDOG_PID names another process."""
        if self._address is None or self._watchdog_usec is None:
            return None
        if self._watchdog_pid is not None and self._watchdog_pid != os.getpid():
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def close(self) -> None:
        """Nothing to release (every message has its own socket); here so callers can
        treat the notifier as a resource."""

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = "off" if self._address is None else repr(self._address.replace("\0", "@", 1))
        return f"SystemdNotifier({where}, watchdog_usec={self._watchdog_usec})"
