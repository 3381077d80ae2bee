"""Durations, byte sizes, CPU counts and port mappings as written in a plan."""

from __future__ import annotations

import pytest

from ollamatopo.plan._quantities import (
    PortBinding,
    format_bytes,
    parse_bytes,
    parse_cpus,
    parse_duration,
    parse_port,
)

# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("60s", 60.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("250us", 0.00025),
        (" 2m ", 120.0),
        ("1.5", 1.5),
        (90, 90.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["", "abc", "10x", "1m30", "s", "1 m", "-5s", -1, "nan", "inf", True, None, [10],
     "8d", 8 * 24 * 3600],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


def test_parse_duration_message_names_the_forms() -> None:
    with pytest.raises(ValueError, match="30s, 1m30s"):
        parse_duration("soon")


# --- byte sizes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1G", 1024**3),
        ("512M", 512 * 1024**2),
        ("512mb", 512 * 1024**2),
        ("256k", 256 * 1024),
        ("1.5GiB", 1536 * 1024**2),
        ("2t", 2 * 1024**4),
        ("1000", 1000),
        (" 64 M ", 64 * 1024**2),
        (1073741824, 1024**3),
    ],
)
def test_parse_bytes(value: object, size: int) -> None:
    assert parse_bytes(value) == size


@pytest.mark.parametrize(
    "value", ["", "big", "1X", "M", "-1G", "1.2.3M", 0, "0M", -5, True, 1.5, None, 2 * 1024**5]
)
def test_parse_bytes_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (1024**3, "1G"),
        (512 * 1024**2, "512M"),
        (1536 * 1024**2, "1.5G"),
        (23296 * 1024**2, "22.75G"),
        (100 * 1024, "100k"),
        (1000, "1000"),
        (3 * 1024**4, "3T"),
        (1024**2 + 1, "1.00M"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


@pytest.mark.parametrize("text", ["1G", "512M", "1.5G", "100k", "7T"])
def test_format_bytes_round_trips_through_parse_bytes(text: str) -> None:
    assert format_bytes(parse_bytes(text)) == text


# --- CPU counts -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "cpus"), [(3, 3.0), ("0.5", 0.5), (0.25, 0.25), ("2", 2.0)])
def test_parse_cpus(value: object, cpus: float) -> None:
    assert parse_cpus(value) == cpus


@pytest.mark.parametrize("value", [0, "0", -1, "many", "nan", 5000, True, None, [1]])
def test_parse_cpus_refuses(value: object) -> None:
    with pytest.raises(ValueError):
        parse_cpus(value)


# --- ports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "binding"),
    [
        ("8080", PortBinding(8080)),
        (8080, PortBinding(8080)),
        ("80:80", PortBinding(80, "tcp", 80)),
        ("8080:80", PortBinding(80, "tcp", 8080)),
        ("127.0.0.1:5432:5432", PortBinding(5432, "tcp", 5432, "127.0.0.1")),
        ("6831:6831/udp", PortBinding(6831, "udp", 6831)),
        ("9000/sctp", PortBinding(9000, "sctp")),
        ("[::1]:80:80", PortBinding(80, "tcp", 80, "::1")),
        ("127.0.0.1::8080", PortBinding(8080, "tcp", None, "127.0.0.1")),
        (" 443:443 ", PortBinding(443, "tcp", 443)),
    ],
)
def test_parse_port(value: object, binding: PortBinding) -> None:
    assert parse_port(value) == binding


def test_ephemeral_host_port_is_none_and_keeps_the_address() -> None:
    binding = parse_port("127.0.0.1::8080")
    assert binding.host_port is None
    assert binding.host_ip == "127.0.0.1"
    assert binding.container_key == "8080/tcp"
    assert str(binding) == "127.0.0.1::8080/tcp"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "not a port number"),
        ("65536", "not a port number"),
        ("http", "not a port number"),
        ("", "not a port number"),
        ("80:80/icmp", "unknown protocol"),
        ("localhost:80:80", "not an IP address"),
        ("999.1.1.1:80:80", "not an IP address"),
        ("1:2:3:4", "not a port mapping"),
        ("8000-8010:8000-8010", "not a port number"),  # compose's expansion writes them out
        ("7002-7000:80", "its first port is above its last"),
        ("-7000:80", "not a range of host ports"),
        (True, "expected a port"),
        (80.5, "expected a port"),
        (None, "expected a port"),
    ],
)
def test_parse_port_refuses(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(value)


def test_bracketed_address_must_be_followed_by_a_colon() -> None:
    # `[ip]:host:container` is the form; a stray character after `]` is not a mapping.
    with pytest.raises(ValueError):
        parse_port("[::1]x80:80")


def test_port_binding_text() -> None:
    assert str(PortBinding(80)) == "80/tcp"
    assert str(PortBinding(80, "tcp", 8080)) == "8080:80/tcp"
    assert str(PortBinding(53, "udp", 53, "10.0.0.1")) == "10.0.0.1:53:53/udp"


@pytest.mark.parametrize(
    ("value", "binding"),
    [
        ({"target": 80, "published": "8080", "mode": "host"},
         PortBinding(80, "tcp", 8080, mode="host")),
        ({"target": "53", "published": 53, "protocol": "udp", "host_ip": "10.0.0.1",
          "mode": "host"}, PortBinding(53, "udp", 53, "10.0.0.1", "host")),
        ({"target": 9000, "mode": "host"}, PortBinding(9000, mode="host")),
        ({"target": 9000, "published": ""}, PortBinding(9000)),
        ({"target": 443, "published": 443, "mode": "ingress"}, PortBinding(443, "tcp", 443)),
    ],
)
def test_parse_port_takes_composes_long_form_with_its_mode(value: object,
                                                         binding: PortBinding) -> None:
    assert parse_port(value) == binding


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"published": 80, "mode": "host"}, "needs `target`"),
        ({"target": 80, "mode": "bridge"}, "unknown port mode 'bridge'"),
        ({"target": 80, "name": "web"}, "unknown key 'name'"),
        ({"target": 80, "published": "8010-8000"}, "its first port is above its last"),
        ({"target": 80, "published": "8000-"}, "not a range of host ports: use 7000-7002"),
        ({"target": 80, "protocol": "icmp"}, "unknown protocol"),
        ({"target": 80, "host_ip": "localhost"}, "not an IP address"),
        ({"target": True}, "not a port"),
    ],
)
def test_parse_port_refuses_a_long_form(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_port(value)


@pytest.mark.parametrize(
    ("value", "published", "fixed", "count"),
    [
        ("7000-7002:7000", "7000-7002", None, 3),
        ("127.0.0.1:7100-7101:71/udp", "7100-7101", None, 2),
        ({"target": 80, "published": "8000-8002", "mode": "host"}, "8000-8002", None, 3),
        ("7000-7000:80", "7000", 7000, 1),  # a range of one port is that port, as compose
        ("8080:80", "8080", 8080, 1),
        ("80", "", None, 0),
    ],
)
def test_a_range_of_host_ports_for_one_container_port(value: object, published: str,
                                                      fixed: int | None, count: int) -> None:
    """The engine binds a free one of the range (`HostPort: "7000-7002"`); compose's
    config writes the range as `published`, and it reads back from both forms."""
    binding = parse_port(value)
    assert (binding.published, binding.fixed_host_port, binding.host_port_count) == (
        published, fixed, count)
    assert parse_port(binding.long_form()) == binding
    if binding.mode == "ingress":
        assert parse_port(str(binding)) == binding
    assert str(parse_port("[::1]:7000-7001:80")) == "[::1]:7000-7001:80/tcp"


def test_a_host_mode_port_reads_back_from_its_long_form() -> None:
    binding = PortBinding(53, "udp", 5353, "127.0.0.1", "host")
    assert binding.long_form() == {"mode": "host", "target": 53, "host_ip": "127.0.0.1",
                                   "published": "5353", "protocol": "udp"}
    assert parse_port(binding.long_form()) == binding
    assert parse_port(PortBinding(80, mode="host").long_form()) == PortBinding(80, mode="host")


# --- hostile quantities (found by test_hostile_plans) ---------------------------------------

HUGE = 10**400  # no float holds it


@pytest.mark.parametrize(("parse", "value"), [
    (parse_duration, HUGE), (parse_duration, "9" * 400 + "s"), (parse_duration, float("inf")),
    (parse_duration, "nan"), (parse_bytes, "9" * 400 + "G"), (parse_bytes, HUGE),
    (parse_cpus, HUGE), (parse_cpus, "1e999"), (parse_cpus, -HUGE),
])
def test_numbers_too_large_for_a_float_are_refused_with_a_value_error(parse: object,
                                                                      value: object) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match=r"must be|is not"):
        parse(value)


@pytest.mark.parametrize(("parse", "value"), [
    (parse_duration, "٣٠s"), (parse_duration, "٣٠"), (parse_bytes, "١G"), (parse_cpus, "٢"),
    (parse_port, "٨٠٨٠"), (parse_port, "80:٨٠"), (parse_port, "²"),
])
def test_digits_of_other_scripts_are_not_numbers(parse: object, value: str) -> None:
    assert callable(parse)
    with pytest.raises(ValueError, match="is not"):
        parse(value)
