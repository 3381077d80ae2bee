"""Text as a terminal should show it: characters that would act on the terminal escaped.

A name in a plan, an engine error or a log line can hold control characters and
Unicode format characters. Printed raw, an escape sequence recolours or clears the
screen and a bidi override (U+202E) reorders what follows, so `services.a\u202eb`
would read as something else. They are shown as Python escapes instead: `\x1b`,
`\u202e`, `\U000e0001`.
"""

from __future__ import annotations

import re
import unicodedata

# Controls (C0, DEL, C1), format characters (bidi marks and overrides, zero widths, tags),
# lone surrogates (no terminal encoding takes them), and the line and paragraph separators
# that some terminals break lines at.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Only characters outside printable ASCII need their category looked up.
_SUSPECTS = {True: re.compile(r"[^\t\n\x20-\x7e]"), False: re.compile(r"[^\t\x20-\x7e]")}


def printable(text: str, *, multiline: bool = True) -> str:
    """`text` with every control and format character escaped, except tab and, when
    `multiline`, newline."""
    if text.isprintable():  # the common case, decided at C speed
        return text
    return _SUSPECTS[multiline].sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    character = match[0]
    if unicodedata.category(character) not in _ESCAPED_CATEGORIES:
        return character
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
