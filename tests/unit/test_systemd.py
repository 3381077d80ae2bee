"""sd_notify through a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamatopo import _systemd
from ollamatopo._systemd import SystemdNotifier

ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Receiver:
    """systemd's end: a bound datagram socket that reads what was sent, with the sender's
    credentials (systemd's NotifyAccess=main checks the sender's pid)."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(address)
        self.sock.settimeout(2)
        self.pids: list[int] = []

    def receive(self) -> list[str]:
        data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                self.pids.append(struct.unpack("3i", value[:12])[0])
        return data.decode().split("\n")

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096, socket.MSG_PEEK)
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(2)
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A socket path must fit in 108 bytes: pytest's tmp_path may be longer."""
    with tempfile.TemporaryDirectory(prefix="otsd-") as folder:
        yield Path(folder)


@pytest.fixture
def systemd(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    path = short_dir / "notify"
    receiver = Receiver(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield receiver
    finally:
        receiver.close()


def test_messages_arrive_in_order_one_datagram_each(systemd: Receiver) -> None:
    notifier = SystemdNotifier.from_environment()
    assert notifier.enabled
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.status("phase foundation: 0/3 ready")
    assert notifier.status("phase core: 3/4 ready")
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.ready("reloaded: 10 services ready")
    assert notifier.extend_timeout(90)
    assert notifier.stopping()

    received = [systemd.receive() for _ in range(8)]
    assert not systemd.pending()
    reloading = received[4]
    assert reloading[0] == "RELOADING=1"
    key, _, value = reloading[1].partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert received[:4] + received[5:] == [
        ["STATUS=phase foundation: 0/3 ready"],
        ["STATUS=phase core: 3/4 ready"],
        ["READY=1"],
        ["WATCHDOG=1"],
        ["READY=1", "STATUS=reloaded: 10 services ready"],
        ["EXTEND_TIMEOUT_USEC=90000000"],
        ["STOPPING=1"],
    ]
    assert systemd.pids == [os.getpid()] * 8  # what NotifyAccess=main checks


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ollamatopo-test-{uuid.uuid4().hex}"
    receiver = Receiver("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with SystemdNotifier.from_environment() as notifier:
            assert notifier.enabled
            assert notifier.status("starting")
            assert notifier.ready()
        assert [receiver.receive(), receiver.receive()] == [["STATUS=starting"], ["READY=1"]]
    finally:
        receiver.close()


def test_a_status_is_one_line(systemd: Receiver) -> None:
    notifier = SystemdNotifier.from_environment()
    assert notifier.status("postgres failed:\nexit 137\r\n")
    assert systemd.receive() == ["STATUS=postgres failed: exit 137"]


def test_without_notify_socket_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = SystemdNotifier.from_environment()
    assert not notifier.enabled
    calls = [notifier.ready(), notifier.status("x"), notifier.reloading(), notifier.stopping(),
             notifier.watchdog(), notifier.extend_timeout(1), notifier.notify("READY=1")]
    assert calls == [False] * 7
    assert notifier.watchdog_interval() is None


@pytest.mark.parametrize("value", ["", "relative/path", "vsock:2:1234"])
def test_unsupported_addresses_turn_notification_off(monkeypatch: pytest.MonkeyPatch,
                                                     value: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    notifier = SystemdNotifier.from_environment()
    assert not notifier.enabled
    assert notifier.ready() is False


def test_send_failures_return_false_and_later_sends_recover(short_dir: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    path = short_dir / "notify"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    notifier = SystemdNotifier.from_environment()
    assert notifier.enabled
    assert notifier.ready() is False  # nothing listens yet: no exception either

    receiver = Receiver(str(path))  # systemd (re)started
    try:
        assert notifier.watchdog()
        assert receiver.receive() == ["WATCHDOG=1"]
    finally:
        receiver.close()
    path.unlink()
    assert notifier.stopping() is False  # and went away again

    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / ("x" * 200)))  # too long for AF_UNIX
    assert SystemdNotifier.from_environment().ready() is False
    assert SystemdNotifier("/bad\0path").ready() is False


def test_a_full_queue_fails_the_send_instead_of_blocking(systemd: Receiver,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(_systemd, "SEND_TIMEOUT", 0.05)
    notifier = SystemdNotifier.from_environment()
    sent = 0
    while notifier.watchdog():  # nobody reads: the receiver's queue fills up
        sent += 1
        assert sent < 100_000, "the queue never filled"
    started = time.monotonic()
    assert notifier.stopping() is False
    assert time.monotonic() - started < 1
    assert sent > 0 and systemd.receive() == ["WATCHDOG=1"]


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("30000000", None, 15.0),
    ("30000000", "self", 15.0),
    ("30000000", "other", None),
    ("5000", None, 0.0025),
    ("0", None, None),
    ("-5", None, None),
    ("soon", None, None),
    (None, "self", None),
])
def test_watchdog_interval(systemd: Receiver, monkeypatch: pytest.MonkeyPatch,
                           usec: str | None, pid: str | None, expected: float | None) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() if pid == "self" else os.getpid() + 1))
    assert SystemdNotifier.from_environment().watchdog_interval() == expected


def test_watchdog_interval_needs_a_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier.from_environment().watchdog_interval() is None


def test_an_explicit_environment_and_unsetting_it(systemd: Receiver,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    given = {"NOTIFY_SOCKET": os.environ["NOTIFY_SOCKET"], "WATCHDOG_USEC": "4000000"}
    assert SystemdNotifier.from_environment(given).watchdog_interval() == 2.0

    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = SystemdNotifier.from_environment(unset_environment=True)
    assert not any(name in os.environ for name in ENVIRONMENT)
    assert notifier.enabled and notifier.watchdog_interval() == 2.0
    assert notifier.ready()
    assert systemd.receive() == ["READY=1"]
    assert "notify" in repr(notifier)
