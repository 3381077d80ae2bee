"""Variable interpolation in plan values, with docker compose's syntax.

`${VAR}` and `$VAR` (empty when unset, with a warning), `${VAR:-default}` (default
when unset or empty), `${VAR-default}` (default when unset), `${VAR:?message}`
(required, non-empty), `${VAR?message}` (required), `${VAR:+replacement}` (the
replacement when set and not empty, else empty), `${VAR+replacement}` (the replacement
when set), and `$$` for a literal `$`.
Pure: takes a parsed YAML tree and a mapping, returns a new tree and what was missing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_PATTERN = re.compile(
    r"""
    \$(?:
        (?P<escaped>\$)
      | (?P<bare>[A-Za-z_][A-Za-z0-9_]*)
      | \{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)
          (?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}
      | (?P<invalid>)
    )
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class MissingVariable:
    name: str
    path: str
    message: str


@dataclass
class Interpolation:
    """The outcome of interpolating one tree."""

    value: Any
    missing: list[MissingVariable] = field(default_factory=list)
    unset: list[tuple[str, str]] = field(default_factory=list)  # (name, path) substituted empty
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (path, text)
    used: set[str] = field(default_factory=set)
    too_large: str | None = None  # where the substituted text went past `max_chars`
    budget: int | None = field(default=None, repr=False)


class _TooLarge(Exception):
    pass


def interpolate(tree: Any, env: Mapping[str, str],
                max_chars: int | None = None) -> Interpolation:
    """Substitute variables in every string value of `tree` (mapping keys are left alone).

    With `max_chars`, the text produced by substitutions is bounded: a long variable
    repeated through YAML aliases stops at `too_large` (its path) with `value` None,
    instead of filling memory."""
    result = Interpolation(value=None, budget=max_chars)
    try:
        result.value = _walk(tree, env, "", result)
    except _TooLarge:
        result.value = None
    return result


def _walk(node: Any, env: Mapping[str, str], path: str, out: Interpolation) -> Any:
    if isinstance(node, str):
        return _substitute(node, env, path, out)
    if isinstance(node, dict):
        return {
            key: _walk(value, env, _join(path, str(key)), out) for key, value in node.items()
        }
    if isinstance(node, list):
        return [_walk(item, env, f"{path}[{index}]", out) for index, item in enumerate(node)]
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _substitute(text: str, env: Mapping[str, str], path: str, out: Interpolation) -> str:
    if "$" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None:
            out.invalid.append((path, text))
            return match.group(0)
        name = match.group("bare") or match.group("braced")
        out.used.add(name)
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        empty_counts = op is not None and op.startswith(":")
        absent = value is None or (empty_counts and value == "")
        if op in (":-", "-"):
            return arg if absent else str(value)
        if op in (":+", "+"):
            return "" if absent else arg
        if op in (":?", "?"):
            if absent:
                out.missing.append(MissingVariable(name, path, arg or f"{name} is required"))
                return ""
            return str(value)
        if value is None:
            out.unset.append((name, path))
            return ""
        return value

    substituted = _PATTERN.sub(replace, text)
    if out.budget is not None:
        out.budget -= len(substituted)
        if out.budget < 0:
            out.too_large = path
            raise _TooLarge
    return substituted


ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def parse_dotenv(text: str, key: str = ENV_NAME) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Parse a `.env` file: `KEY=value` lines, `export` prefixes, quotes, comments. `key`:
    the pattern of a key (a label file's keys have dots).

    Returns the variables and the (line number, text) of lines that are not assignments.
    """
    values: dict[str, str] = {}
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(key, name):
            bad.append((number, raw))
            continue
        values[name] = _unquote(value.strip())
    return values, bad


def _unquote(value: str) -> str:
    """A quoted value (optionally followed by a comment) or a bare one up to ` #`."""
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        while quote == '"' and end > 0 and value[end - 1] == "\\":
            end = value.find(quote, end + 1)
        rest = value[end + 1:].strip() if end > 0 else "x"
        if end > 0 and (not rest or rest.startswith("#")):
            inner = value[1:end]
            return inner.replace('\\"', '"').replace("\\n", "\n") if quote == '"' else inner
    comment = value.find(" #")
    return value[:comment].rstrip() if comment >= 0 else value


def escaped(tree: Any) -> Any:
    """Every `$` of the text values written `$$`: what is read again with interpolation (a
    file `config` prints, an extended or included file's values already resolved) gives
    the same text back."""
    if isinstance(tree, str):
        return tree.replace("$", "$$")
    if isinstance(tree, dict):
        return {key: escaped(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [escaped(item) for item in tree]
    return tree
