"""compose's lifecycle hooks: the order they run in, and what a failure says (the exec
itself is the engine's: tests/test_compose_up.py runs them on the real engine)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from ollamatopo._errors import HookFailed
from ollamatopo.plan._model import ServiceHook
from ollamatopo.run._hooks import run_hooks


class Execs:
    """An engine whose execs answer from a script: (exit code, output) per call."""

    def __init__(self, *answers: tuple[int, str]) -> None:
        self.answers, self.calls = list(answers), []  # type: ignore[var-annotated]

    async def exec(self, container_id: str, argv: list[str], **options: Any) -> tuple[int, str]:
        self.calls.append((argv, options))
        return self.answers.pop(0)


def run(engine: Execs, *hooks: ServiceHook) -> None:
    anyio.run(lambda: run_hooks(engine, "c1", hooks, "post_start"))  # type: ignore[arg-type]


def test_hooks_run_in_order_with_their_options_until_one_fails() -> None:
    engine = Execs((0, ""), (2, "one\n" + "".join(f"line {n}\n" for n in range(12))), (0, ""))
    hooks = [ServiceHook(command="chown -R 1000 /data", user="0"),
             ServiceHook(command=["sh", "-c", "exit 2"], environment=["A=1", "B"],
                         working_dir="/tmp", privileged=True),
             ServiceHook(command="never")]
    with pytest.raises(HookFailed) as caught:
        run(engine, *hooks)
    assert [argv for argv, _ in engine.calls] == [["chown", "-R", "1000", "/data"],
                                                   ["sh", "-c", "exit 2"]]
    assert engine.calls[1][1] == {"user": None, "privileged": True, "workdir": "/tmp",
                                  "environment": {"A": "1"}}  # B has no value: left out
    message = str(caught.value)
    assert message.startswith("its post_start hook [1] exited with status 2: line 2\n")
    assert message.endswith("line 11") and "one" not in message  # its last 10 lines


@pytest.mark.parametrize(("code", "words"), [
    (126, "its user is not in the image's /etc/passwd"), (127, "no such command"),
    (1, "exited with status 1")])
def test_a_hook_that_says_nothing_gets_the_reason_its_code_means(code: int, words: str) -> None:
    with pytest.raises(HookFailed) as caught:
        run(Execs((code, "")), ServiceHook(command="x"))
    assert words in str(caught.value)


def test_a_hook_needs_a_command() -> None:
    with pytest.raises(ValueError, match="command"):
        ServiceHook(command=[])


def test_a_hook_may_carry_extensions_as_compose_allows() -> None:
    hook = ServiceHook.model_validate({"command": "true", "x-note": "for humans"})
    assert hook.command == ["true"]
