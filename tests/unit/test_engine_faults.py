"""The engine facade's retry policy and error wording, without an engine."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import docker.errors
import pytest
import requests

from ollamatopo._errors import EngineError, EngineUnreachable
from ollamatopo.engine import _docker as _engine
from ollamatopo.engine._docker import Engine, _plain, _timestamp, _transient


def api_error(status: int, message: str) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    cls = docker.errors.NotFound if status == 404 else docker.errors.APIError
    return cls(message, response=response, explanation=message)


@pytest.mark.parametrize(("error", "transient"), [
    (api_error(500, "injected fault"), True),
    (api_error(503, "engine busy"), True),
    (api_error(500, "driver failed programming external connectivity on endpoint x (ab): "
                    "Error starting userland proxy: listen tcp4 127.0.0.1:80: bind: address "
                    "already in use"), False),
    (api_error(500, "Pool overlaps with other one on this address space"), False),
    (api_error(404, "No such container: x"), False),
    (api_error(409, "Conflict. The container name is already in use"), False),
    (requests.exceptions.ConnectionError("Connection aborted."), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (requests.exceptions.ReadTimeout("read timed out"), False),
])
def test_which_errors_are_transient(error: BaseException, transient: bool) -> None:
    assert _transient(error) is transient


def test_a_taken_port_is_said_plainly() -> None:
    said = _plain("driver failed programming external connectivity on endpoint p-web (1f): "
                  "Error starting userland proxy: listen tcp4 127.0.0.1:34533: bind: address "
                  "already in use")
    assert said.startswith("host port 127.0.0.1:34533 is already in use by another process")
    said = _plain("driver failed programming external connectivity on endpoint p-web (1f): "
                  "Bind for 0.0.0.0:8080 failed: port is already allocated")
    assert said.startswith("host port 0.0.0.0:8080 is already in use")
    assert _plain("something else") == "something else"


def test_engine_timestamps() -> None:
    assert _timestamp("0001-01-01T00:00:00Z") is None
    assert _timestamp("") is None
    assert _timestamp("garbage") is None
    assert _timestamp("2026-11-23T11:17:06.5Z") == pytest.approx(1795432626.5)
    assert _timestamp("2026-11-23T11:17:06.917994123Z") == pytest.approx(1795432626.917994)


class FakeClient:
    base_url = "unix://fake"


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setattr(_engine, "RETRY_INITIAL_S", 0.001)
    monkeypatch.setattr(_engine, "RETRY_MAX_S", 0.002)
    return Engine(FakeClient(), concurrency=2)  # type: ignore[arg-type]


def failing(*errors: BaseException, result: Any = "done") -> tuple[Any, list[int]]:
    calls: list[int] = []

    def call() -> Any:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return call, calls


def test_an_idempotent_call_is_repeated_after_transient_errors(engine: Engine) -> None:
    call, calls = failing(api_error(500, "x"), requests.exceptions.ConnectionError("reset"))
    assert anyio.run(lambda: engine._call("inspect", call, retry=True)) == "done"
    assert len(calls) == 3


def test_a_call_that_makes_something_is_not_repeated_blindly(engine: Engine) -> None:
    call, calls = failing(api_error(500, "x"))
    with pytest.raises(EngineError, match=r"create: x$"):
        anyio.run(lambda: engine._call("create", call))
    assert len(calls) == 1


def test_settle_finds_what_the_lost_attempt_made(engine: Engine) -> None:
    call, calls = failing(requests.exceptions.ConnectionError("lost answer"))
    asked: list[int] = []

    async def settle() -> tuple[str] | None:
        asked.append(1)
        return ("made by the first attempt",)

    result = anyio.run(lambda: engine._call("create", call, settle=settle))
    assert result == "made by the first attempt"
    assert len(calls) == 1 and len(asked) == 1


def test_settle_lets_the_call_repeat_when_nothing_was_made(engine: Engine) -> None:
    call, calls = failing(api_error(500, "x"))

    async def settle() -> tuple[str] | None:
        return None

    assert anyio.run(lambda: engine._call("create", call, settle=settle)) == "done"
    assert len(calls) == 2


def test_lasting_errors_are_not_repeated_and_persistent_ones_say_how_often(
        engine: Engine) -> None:
    call, calls = failing(api_error(500, "Pool overlaps with other one"))
    with pytest.raises(EngineError, match=r"Pool overlaps with other one$"):
        anyio.run(lambda: engine._call("create network", call, retry=True))
    assert len(calls) == 1

    call, calls = failing(*[api_error(500, "bad moment")] * 10)
    with pytest.raises(EngineError, match=r"bad moment \(tried 4 times\)$"):
        anyio.run(lambda: engine._call("start", call, retry=True))
    assert len(calls) == 4

    call, calls = failing(*[requests.exceptions.ConnectionError("refused")] * 10)
    with pytest.raises(EngineUnreachable, match=r"refused \(tried 4 times\)"):
        anyio.run(lambda: engine._call("list", call, retry=True))


# --- calls the engine does not answer (issue 15) ---------------------------------------------


def hanging(release: threading.Event) -> Any:
    def call() -> str:
        release.wait(10)  # the thread ends once the test is over, answered or not
        return "late"

    return call


def test_a_cancelled_caller_does_not_wait_for_an_unanswered_call(engine: Engine) -> None:
    release = threading.Event()

    async def main() -> float:
        began = time.monotonic()
        with anyio.move_on_after(0.2):
            await engine._call("inspect container x", hanging(release), retry=True)
        return time.monotonic() - began

    try:
        assert anyio.run(main) < 1.0
        assert engine.unanswered() == ["inspect container x"]
    finally:
        release.set()


def test_a_deadline_makes_an_unanswered_call_unreachable(engine: Engine) -> None:
    release = threading.Event()
    try:
        with pytest.raises(EngineUnreachable, match=r"ping the engine: .* did not answer in "
                                                     r"0\.2s"):
            anyio.run(lambda: engine._call("ping the engine", hanging(release),
                                           deadline_s=0.2))
    finally:
        release.set()


def test_a_cleanup_ends_when_the_engine_stalls_not_before(engine: Engine) -> None:
    release = threading.Event()

    async def main() -> tuple[list[str], float]:
        done: list[str] = []
        # A healthy engine: answers keep coming, however long the cleanup takes.
        async with engine.abandon_if_stalled("answered cleanup", limit_s=0.3):
            for _ in range(6):
                await engine._call("remove", lambda: time.sleep(0.1))
            done.append("answered")
        began = time.monotonic()
        async with engine.abandon_if_stalled("stalled cleanup", limit_s=0.3):
            await engine._call("update", hanging(release))
            done.append("stalled")  # never reached
        return done, time.monotonic() - began

    try:
        done, took = anyio.run(main)
    finally:
        release.set()
    assert done == ["answered"]
    assert 0.3 <= took < 1.0


def test_a_call_abandoned_before_the_cleanup_does_not_end_it(engine: Engine) -> None:
    """A probe's exec may hang in its container for ever; the engine is not stalled."""
    release = threading.Event()

    async def main() -> list[str]:
        with anyio.move_on_after(0.05):
            await engine._call("exec probe", hanging(release))
        await anyio.sleep(0.4)  # the exec is overdue by now
        done = []
        async with engine.abandon_if_stalled("cleanup", limit_s=0.3):
            await anyio.sleep(0.5)  # no call answered meanwhile, none made
            await engine._call("update", lambda: "ok")
            done.append("finished")
        return done

    try:
        assert anyio.run(main) == ["finished"]
    finally:
        release.set()


def test_quiesce_waits_for_abandoned_creates_only(engine: Engine) -> None:
    release = threading.Event()
    create_done = threading.Event()

    def create() -> str:
        time.sleep(0.3)
        create_done.set()
        return "id"

    async def settle() -> tuple[str] | None:
        return None

    async def main() -> bool:
        with anyio.move_on_after(0.05):
            await engine._call("exec probe", hanging(release))
        with anyio.move_on_after(0.05):
            await engine._call("create container a", create, settle=settle)
        await engine.quiesce()  # the hanging exec makes nothing: not waited for
        return create_done.is_set()

    try:
        assert anyio.run(main) is True
    finally:
        release.set()
