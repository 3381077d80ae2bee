"""Secrets: which environment variables are secret, and keeping their values out of output.

A name is secret when one of its parts (split at anything that is not a letter or digit)
is, or ends in, SECRET, PASSWORD, PASSWD, PASSPHRASE, TOKEN, KEY or CREDENTIAL, alone or
with a plural S: JWT_SECRET, DB_PASSWORD, API_KEY, APIKEY, ACCESS_KEY_ID, GITHUB_TOKENS,
GOOGLE_APPLICATION_CREDENTIALS; or when the part is PASS (DB_PASS). A word inside a part
does not count, so KEYBOARD_LAYOUT and TOKENIZERS_PARALLELISM are not secret (MONKEY is,
a harmless mistake). `X_FILE` names a file that holds X's value: the path is not secret,
what the file holds is. A service lists more names under `secrets:`.

Values are never printed as environment values anywhere. Free text (log lines, errors,
container log tails, probe output, reports) goes through a `Redactor` that replaces
every secret value of the loaded plan with `***`; values shorter than four characters
are not searched for, as they would mask unrelated text. The process has one redactor,
filled when a plan is loaded: `redactor`.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any, TextIO

REDACTED = "***"
MIN_SEARCHED = 4

WORDS = ("SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "TOKEN", "KEY", "CREDENTIAL")
PARTS = ("PASS",)
_SPLIT = re.compile(r"[^A-Z0-9]+")


def is_secret_name(name: str, marked: Collection[str] = ()) -> bool:
    """Whether the environment variable `name` holds a secret (see the module's rules);
    `marked` are the names a service lists under `secrets:`."""
    if name in marked:
        return True
    if name.upper().endswith("_FILE"):
        return False
    for part in _SPLIT.split(name.upper()):
        bare = part[:-1] if part.endswith("S") else part
        if part in PARTS or bare.endswith(WORDS) or part.endswith(WORDS):
            return True
    return False


def loose_permissions(path: Path) -> bool:
    """Whether anyone but the owner may read or write `path` (looser than 0600)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return False
    return bool(mode & 0o177)


class Redactor:
    """Replaces known secret values with `***` in text and in JSON-like trees."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._needles: list[str] = []
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Also hide these values, as written, as JSON and repr escape them, and each line
        of a value that spans lines."""
        needles = set(self._needles)
        for value in values:
            forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1],
                     *value.splitlines()}
            needles.update(form.strip() for form in forms if len(form.strip()) >= MIN_SEARCHED)
        self._needles = sorted(needles, key=len, reverse=True)  # longest first

    def __bool__(self) -> bool:
        return bool(self._needles)

    def text(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    def tree(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted (keys too)."""
        if not self._needles:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.tree(key): self.tree(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.tree(item) for item in value]
        return value


redactor = Redactor()  # the process's secrets, added when a plan is loaded


class RedactingStream:
    """A text stream that redacts what is written to it before passing it on (stdout and
    stderr of the command line: every line printed goes through it)."""

    def __init__(self, stream: TextIO, redact: Redactor = redactor) -> None:
        self._stream, self._redact = stream, redact

    def write(self, text: str) -> int:
        self._stream.write(self._redact.text(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, ...
        return getattr(self._stream, name)
