"""Parsing of the plan's quantities: durations, byte sizes, CPU counts, port mappings.

Pure functions: they take text and return numbers, or raise ValueError with a
message that says what form is expected (pydantic puts the plan path in front).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", re.ASCII)
_DURATION_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$", re.IGNORECASE | re.ASCII)
_BYTE_FACTORS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

MAX_DURATION_S = 7 * 24 * 3600.0
MAX_BYTES = 1024**5


def parse_duration(value: object) -> float:
    """Seconds from `90`, `1.5`, `"60s"`, `"1m30s"`, `"500ms"` (compose's forms)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    if isinstance(value, int | float):
        seconds = _finite(value)
    elif isinstance(value, str):
        seconds = _parse_duration_text(value.strip())
    else:
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    if not 0 <= seconds <= MAX_DURATION_S:
        raise ValueError(f"duration must be between 0 and {MAX_DURATION_S:.0f}s")
    return seconds


def _finite(value: int | float) -> float:
    """A float of `value`; a number too large for one becomes infinity (refused by the range
    checks), not an OverflowError."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _parse_duration_text(text: str) -> float:
    if text.isascii():
        try:
            return float(text)
        except ValueError:
            pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"{text!r} is not a duration: use forms such as 30s, 1m30s, 500ms")
    return sum(float(number) * _DURATION_SECONDS[unit] for number, unit in parts)


def parse_bytes(value: object) -> int:
    """Bytes from `1073741824`, `"1G"`, `"512M"`, `"512mb"`, `"1.5GiB"` (binary units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512M or 1G")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = _BYTES.match(value.strip())
        if not match:
            raise ValueError(f"{value!r} is not a size: use forms such as 512M, 1G, 256k")
        number, unit, _ = match.groups()
        scaled = float(number) * _BYTE_FACTORS[unit.lower()]
        size = int(scaled) if math.isfinite(scaled) else MAX_BYTES + 1
    else:
        raise ValueError("expected a size such as 512M or 1G")
    if not 0 < size <= MAX_BYTES:
        raise ValueError("size must be positive and at most 1P")
    return size


def parse_cpus(value: object) -> float:
    """CPU count from `3`, `"0.5"`, `0.25`."""
    if isinstance(value, bool):
        raise ValueError("expected a CPU count such as 0.5 or 2")
    if isinstance(value, str) and not value.isascii():
        value = "?"  # float() reads any script's digits; a plan's numbers are ASCII
    try:
        cpus = _finite(value) if isinstance(value, int | float) else (
            float(value) if isinstance(value, str) else math.nan)
    except ValueError:
        raise ValueError(f"{value!r} is not a CPU count: use a number such as 0.5 or 2") from None
    if not 0 < cpus <= 4096:
        raise ValueError("CPU count must be a number above 0 and at most 4096")
    return cpus


def format_bytes(size: int) -> str:
    """A short binary form: 1G, 512M, 1.5G, 22.75G, 100k, 1000 (bytes)."""
    for unit in ("T", "G", "M", "k"):
        factor = _BYTE_FACTORS[unit.lower()]
        if size >= factor:
            value = size / factor
            return f"{value:g}{unit}" if value == round(value, 2) else f"{value:.2f}{unit}"
    return str(size)


PublishMode = Literal["ingress", "host"]


@dataclass(frozen=True)
class PortBinding:
    """One published port: `[ip:][host:]container[/proto]`, or compose's long form."""

    container_port: int
    protocol: str = "tcp"
    host_port: int | None = None  # None: an ephemeral port chosen by the engine
    host_ip: str = ""  # "": all addresses
    # compose's `mode`: on a swarm, "ingress" publishes the port once for the service (the
    # routing mesh), "host" on the node of each task; one engine publishes either as usual.
    mode: PublishMode = "ingress"
    # A range of host ports for this one container port (`"7000-7002:7000"`), host_port
    # its first: the engine binds the first free one of them when the container starts.
    host_port_last: int | None = None

    @property
    def container_key(self) -> str:
        return f"{self.container_port}/{self.protocol}"

    @property
    def published(self) -> str:
        """The host port as compose writes it: `"8080"`, a range `"7000-7002"`, or ""."""
        if self.host_port is None:
            return ""
        last = f"-{self.host_port_last}" if self.host_port_last is not None else ""
        return f"{self.host_port}{last}"

    @property
    def fixed_host_port(self) -> int | None:
        """The one host port it binds, if the file chose it (not the engine)."""
        return self.host_port if self.host_port_last is None else None

    @property
    def host_port_count(self) -> int:
        """How many host ports it may bind (0: any the engine gives)."""
        if self.host_port is None:
            return 0
        return (self.host_port_last or self.host_port) - self.host_port + 1

    def __str__(self) -> str:
        """The short form (which has no mode: `long_form` keeps it)."""
        ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        host = f"{ip}:" if ip else ""
        published = f"{host}{self.published}:" if self.host_port or self.host_ip else ""
        return f"{published}{self.container_port}/{self.protocol}"

    def long_form(self) -> dict[str, object]:
        """compose's long form, as `docker compose config` writes it (`published` a string)."""
        written: dict[str, object] = {"mode": self.mode, "target": self.container_port}
        if self.host_ip:
            written["host_ip"] = self.host_ip
        if self.host_port is not None:
            written["published"] = self.published
        return {**written, "protocol": self.protocol}


def parse_port(value: object) -> PortBinding:
    """A compose port: the short form `8080`, `"80:80"`, `"127.0.0.1:5432:5432"`,
    `"6831:6831/udp"`, or the long form's mapping (`target`, `published`, `host_ip`,
    `protocol`, `mode`)."""
    if isinstance(value, Mapping):
        return _parse_long_port(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError('expected a port such as "8080", "80:80" or "127.0.0.1:5432:5432"')
    text = str(value).strip()
    protocol = "tcp"
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
        _protocol(protocol)
    host_ip = ""
    if text.startswith("["):  # [::1]:8080:80
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ValueError(f"{value!r} is not a port mapping: use [ipv6]:host:container")
        host_ip, text = text[1:end], text[end + 2 :]
    elif text.count(":") == 2:
        host_ip, text = text.split(":", 1)
    _address(host_ip)
    pieces = text.split(":")
    if len(pieces) > 2:
        raise ValueError(f"{value!r} is not a port mapping: use [ip:]host:container[/proto]")
    first, last = _host_ports(pieces[0]) if len(pieces) == 2 and pieces[0] else (None, None)
    container = _port_number(pieces[-1])
    return PortBinding(container, protocol, first, host_ip, host_port_last=last)


LONG_PORT_KEYS = ("target", "published", "host_ip", "protocol", "mode")


def _parse_long_port(value: Mapping[object, object]) -> PortBinding:
    unknown = [str(key) for key in value if key not in LONG_PORT_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in a port: use "
                         f"{', '.join(LONG_PORT_KEYS)}")
    if "target" not in value:
        raise ValueError("a port's long form needs `target` (the container's port)")
    published = value.get("published")
    mode = value.get("mode", "ingress")
    if mode not in ("ingress", "host"):
        raise ValueError(f"unknown port mode {mode!r}: use ingress or host")
    first, last = (None, None) if published in (None, "") else _host_ports(_text(published))
    return PortBinding(_port_number(_text(value["target"])),
                       _protocol(_text(value.get("protocol", "tcp"))), first,
                       _address(_text(value.get("host_ip", ""))),
                       "host" if mode == "host" else "ingress", last)


def _host_ports(text: str) -> tuple[int, int | None]:
    """A host port, or a range of them for one container port (`7000-7002`: the engine
    picks a free one); a range of one port is that port, as compose reads it."""
    first, dash, last = text.partition("-")
    if not dash:
        return _port_number(text), None
    try:
        low, high = _port_number(first), _port_number(last)
    except ValueError:
        raise ValueError(f"{text!r} is not a range of host ports: use 7000-7002") from None
    if high < low:
        raise ValueError(f"{text!r} is not a range of host ports: its first port is above "
                         "its last")
    return low, (high if high > low else None)


def _text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a port, address or protocol")
    return str(value).strip()


def _protocol(text: str) -> str:
    if text not in ("tcp", "udp", "sctp"):
        raise ValueError(f"unknown protocol {text!r}: use tcp, udp or sctp")
    return text


def _address(text: str) -> str:
    """`text` if it is an IP address ("" for all addresses)."""
    if text:
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address") from None
    return text


def _port_number(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port number (1-65535)")
    return int(text)
