"""sd_notify through a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamatopo.daemon import _systemd
from ollamatopo.daemon._systemd import SystemdNotifier

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


# --- config/ollamatopo.service -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "ollamatopo.service"
STATE_DIR = "/var/lib/ollamatopo"


def unit_entries(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value), ...]}, keys repeated as written:
    comments (#, ;), continuation lines (a trailing backslash) and blank lines as systemd
    reads them."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, equals, value = line.partition("=")
        assert equals and current is not None, f"line {number}: not a KEY=value: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


class Unit:
    def __init__(self, text: str) -> None:
        self.sections = unit_entries(text)

    def all(self, section: str, key: str) -> list[str]:
        return [value for name, value in self.sections.get(section, []) if name == key]

    def one(self, section: str, key: str) -> str:
        values = self.all(section, key)
        assert len(values) == 1, f"[{section}] {key}= is set {len(values)} times: {values}"
        return values[0]

    def words(self, section: str, key: str) -> list[str]:
        return [word for value in self.all(section, key) for word in value.split()]


def seconds(span: str) -> float:
    """A systemd time span such as 15min, 2min 30s, 5s or 30 (seconds)."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", span):
        total += float(number) * units[unit or "s"]
    return total


@pytest.fixture(scope="module")
def unit() -> Unit:
    return Unit(UNIT.read_text(encoding="utf-8"))


def test_the_unit_is_a_notify_service_running_the_supervisor(unit: Unit) -> None:
    assert unit.one("Service", "Type") == "notify"
    assert unit.one("Service", "NotifyAccess") == "main"
    command = shlex.split(unit.one("Service", "ExecStart"))
    assert command[0].startswith("/") and command[0].endswith("/python")
    assert command[1:4] == ["-m", "ollamatopo", "up"]
    assert "--supervise" in command
    assert command[command.index("--plan") + 1] == "/etc/ollamatopo/config/topology.yaml"
    # the flags are the command line's own
    from ollamatopo.cli._main import build_parser

    parsed = build_parser().parse_args(command[3:])
    assert parsed.supervise is True and [str(p) for p in parsed.plan] == [
        "/etc/ollamatopo/config/topology.yaml"]
    # the install location is the container image's
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"', (ROOT / "Dockerfile").read_text(
        encoding="utf-8"), re.MULTILINE)
    assert entrypoint and entrypoint.group(1) == command[0]
    assert unit.one("Service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_the_unit_environment_and_state(unit: Unit) -> None:
    # no leading '-': a missing secrets file fails the start instead of starting without
    assert unit.one("Service", "EnvironmentFile") == "/etc/ollamatopo/secrets.env"
    environment = dict(word.split("=", 1) for word in unit.words("Service", "Environment"))
    assert environment["OLLAMATOPO_STATE_DIR"] == STATE_DIR
    assert unit.one("Service", "StateDirectory") == "ollamatopo"
    assert STATE_DIR in unit.words("Service", "ReadWritePaths")


def test_the_unit_restarts_watchdog_and_timeouts(unit: Unit) -> None:
    assert unit.one("Service", "Restart") == "on-failure"
    assert seconds(unit.one("Service", "RestartSec")) >= 1
    assert seconds(unit.one("Service", "WatchdogSec")) == 30
    assert seconds(unit.one("Service", "TimeoutStartSec")) >= 10 * 60  # first image pulls
    assert seconds(unit.one("Service", "TimeoutStopSec")) >= 30
    assert unit.one("Service", "KillMode") == "mixed"
    assert "docker.service" in unit.words("Unit", "Requires")
    assert "docker.service" in unit.words("Unit", "After")
    assert unit.one("Install", "WantedBy") == "multi-user.target"


def test_the_unit_is_hardened_but_reaches_the_docker_socket(unit: Unit) -> None:
    expected = {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                "NoNewPrivileges": "yes"}
    assert {key: unit.one("Service", key) for key in expected} == expected
    assert "docker" in unit.words("Service", "SupplementaryGroups")
    families = unit.words("Service", "RestrictAddressFamilies")
    assert not families[0].startswith("~")  # an allow list ...
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)  # ... with the socket's family
    # the probes reach published ports on the host's network
    assert unit.all("Service", "PrivateNetwork") in ([], ["no"])
    assert unit.all("Service", "IPAddressDeny") == []
    # /run (the socket) is neither made inaccessible nor read-only
    for key in ("InaccessiblePaths", "ReadOnlyPaths", "TemporaryFileSystem"):
        assert not any(path.lstrip("-+") in ("/run", "/var/run", "/run/docker.sock")
                       for path in unit.words("Service", key))


def test_the_unit_parser_sees_continuations_and_repeats() -> None:
    parsed = Unit("# c\n[Unit]\nAfter=a \\\n  b\n; c\n[Service]\nEnvironment=A=1\n"
                  "Environment=B=2\n")
    assert parsed.words("Unit", "After") == ["a", "b"]
    assert parsed.words("Service", "Environment") == ["A=1", "B=2"]
    assert seconds("2min 30s") == 150 and seconds("15min") == 900 and seconds("30") == 30


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def verify(unit_text: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` on a copy of the unit whose ExecStart interpreter is a stub
    (the install location need not exist here), beside a stub docker.service (so the host
    needs no Docker unit). An unknown key is only a warning there: the output must be empty.
    """
    assert SYSTEMD_ANALYZE is not None
    stub = folder / "python"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    command = shlex.split(Unit(unit_text).one("Service", "ExecStart"))[0]
    (folder / "ollamatopo.service").write_text(unit_text.replace(command, str(stub)),
                                               encoding="utf-8")
    (folder / "docker.service").write_text(
        "[Unit]\nDescription=stub\n[Service]\nExecStart=/bin/true\n", encoding="utf-8")
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no",
                           str(folder / "ollamatopo.service")],
                          capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed "
                    "(Debian's systemd package): the unit was not verified by systemd")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    text = UNIT.read_text(encoding="utf-8")
    done = verify(text, tmp_path)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")

    # and the check does catch a mistake
    broken = tmp_path / "broken"
    broken.mkdir()
    done = verify(text.replace("WatchdogSec=", "WatchdogSecs="), broken)
    assert "Unknown key 'WatchdogSecs'" in done.stdout + done.stderr


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed "
                    "(Debian's systemd package): the unit's exposure was not measured")
def test_systemd_analyze_rates_the_unit_exposure_low() -> None:
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager",
                           str(UNIT)], capture_output=True, text=True, timeout=60,
                          check=False, stdin=subprocess.DEVNULL)
    found = re.search(r"Overall exposure level for ollamatopo\.service: ([\d.]+)",
                      done.stdout + done.stderr)
    assert found, done.stdout[-2000:] + done.stderr[-2000:]
    assert float(found.group(1)) <= 3.0  # systemd rates 0-10; the unit scores about 2
