"""Compose-style variable interpolation in plan values, and `.env` parsing."""

from __future__ import annotations

import pytest

from ollamatopo.plan._interpolate import MissingVariable, interpolate, parse_dotenv


def one(text: str, env: dict[str, str]) -> str:
    """Interpolate a single string value."""
    return str(interpolate(text, env).value)


# --- substitution forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${TAG}", {"TAG": "16"}, "16"),
        ("postgres:${TAG}", {"TAG": "16"}, "postgres:16"),
        ("$TAG", {"TAG": "16"}, "16"),
        ("$TAG-alpine", {"TAG": "16"}, "16-alpine"),
        ("${A}${B}", {"A": "x", "B": "y"}, "xy"),
        ("${TAG:-latest}", {}, "latest"),
        ("${TAG:-latest}", {"TAG": ""}, "latest"),
        ("${TAG:-latest}", {"TAG": "16"}, "16"),
        ("${TAG-latest}", {}, "latest"),
        ("${TAG-latest}", {"TAG": ""}, ""),
        ("${TAG-latest}", {"TAG": "16"}, "16"),
        ("${TAG:-}", {}, ""),
        ("${URL:-http://x:80/a}", {}, "http://x:80/a"),
        ("${TAG:?set TAG}", {"TAG": "16"}, "16"),
        ("${TAG?set TAG}", {"TAG": ""}, ""),
        ("no variables here", {}, "no variables here"),
    ],
)
def test_substitution(text: str, env: dict[str, str], expected: str) -> None:
    assert one(text, env) == expected


def test_dollar_dollar_is_a_literal_dollar() -> None:
    assert one("price $$5 and $${HOME}", {"HOME": "/root"}) == "price $5 and ${HOME}"


def test_unset_variable_becomes_empty_and_is_recorded() -> None:
    result = interpolate({"services": {"a": {"image": "img:${TAG}"}}}, {})
    assert result.value == {"services": {"a": {"image": "img:"}}}
    assert result.unset == [("TAG", "services.a.image")]
    assert result.missing == []


def test_lone_dollar_is_left_and_recorded_as_invalid() -> None:
    result = interpolate({"cmd": "cost: 5$"}, {})
    assert result.value == {"cmd": "cost: 5$"}
    assert result.invalid == [("cmd", "cost: 5$")]


def test_used_names_are_collected() -> None:
    result = interpolate(["$A", "${B:-x}", "$$C"], {"A": "1"})
    assert result.used == {"A", "B"}


# --- required variables --------------------------------------------------------------------


def test_required_missing_is_collected_with_its_path() -> None:
    tree = {"services": {"a": {"environment": {"X": "${X:?X is needed}"}}}}
    result = interpolate(tree, {})
    assert result.missing == [MissingVariable("X", "services.a.environment.X", "X is needed")]
    assert result.value == {"services": {"a": {"environment": {"X": ""}}}}


def test_required_with_colon_refuses_empty_and_without_colon_accepts_it() -> None:
    assert [m.name for m in interpolate("${X:?}", {"X": ""}).missing] == ["X"]
    assert interpolate("${X?}", {"X": ""}).missing == []
    assert [m.name for m in interpolate("${X?}", {}).missing] == ["X"]


def test_required_without_message_gets_a_default_message() -> None:
    (missing,) = interpolate({"k": "${PASSWORD:?}"}, {}).missing
    assert missing.message == "PASSWORD is required"


def test_every_missing_variable_is_reported() -> None:
    tree = {
        "services": {
            "a": {"image": "${IMAGE:?}", "command": ["run", "${ARG:?need ARG}"]},
            "b": {"environment": {"P": "${P:?}", "Q": "${Q:?}"}},
        }
    }
    result = interpolate(tree, {"Q": "set"})
    assert [(m.name, m.path) for m in result.missing] == [
        ("IMAGE", "services.a.image"),
        ("ARG", "services.a.command[1]"),
        ("P", "services.b.environment.P"),
    ]


# --- what is left alone ---------------------------------------------------------------------


def test_mapping_keys_are_not_interpolated() -> None:
    result = interpolate({"$KEY": "$VALUE", "${OTHER}": 1}, {"KEY": "k", "VALUE": "v"})
    assert result.value == {"$KEY": "v", "${OTHER}": 1}


def test_non_string_scalars_are_unchanged() -> None:
    tree = {"a": 1, "b": 2.5, "c": True, "d": None, "e": [3, "$X"]}
    assert interpolate(tree, {"X": "x"}).value == {"a": 1, "b": 2.5, "c": True, "d": None,
                                                   "e": [3, "x"]}


def test_input_tree_is_not_modified() -> None:
    tree = {"a": ["$X"]}
    interpolate(tree, {"X": "x"})
    assert tree == {"a": ["$X"]}


# --- .env files -----------------------------------------------------------------------------


def test_parse_dotenv_forms() -> None:
    text = "\n".join([
        "# a comment",
        "",
        "PLAIN=value",
        "SPACED = padded  ",
        'DOUBLE="two words"',
        "SINGLE='$HOME\\n stays'",
        'ESCAPES="say \\"hi\\"\\nbye"',
        "export EXPORTED=1",
        "EMPTY=",
        "TRAILING=value # a comment",
        "HASH=a#b",
        "EQUALS=a=b",
    ])
    values, bad = parse_dotenv(text)
    assert bad == []
    assert values == {
        "PLAIN": "value",
        "SPACED": "padded",
        "DOUBLE": "two words",
        "SINGLE": "$HOME\\n stays",
        "ESCAPES": 'say "hi"\nbye',
        "EXPORTED": "1",
        "EMPTY": "",
        "TRAILING": "value",
        "HASH": "a#b",
        "EQUALS": "a=b",
    }


def test_parse_dotenv_quoted_value_with_a_trailing_comment() -> None:
    values, bad = parse_dotenv("A=\"two words\" # note\nB='x' # note")
    assert bad == []
    assert values == {"A": "two words", "B": "x"}


def test_parse_dotenv_reports_bad_lines_with_their_numbers() -> None:
    values, bad = parse_dotenv("GOOD=1\njust text\n1BAD=2\n  = nothing\nexport\nALSO=ok")
    assert values == {"GOOD": "1", "ALSO": "ok"}
    assert bad == [(2, "just text"), (3, "1BAD=2"), (4, "  = nothing"), (5, "export")]


def test_parse_dotenv_later_lines_win() -> None:
    values, _ = parse_dotenv("A=1\nA=2")
    assert values == {"A": "2"}


def test_substituted_text_is_bounded() -> None:
    """Found by test_hostile_plans: one long variable repeated through aliases (the same
    string object many times) made a new long string at every place."""
    value = "${BIG}"
    result = interpolate({"a": {"b": [value] * 1000}}, {"BIG": "x" * 10_000}, max_chars=100_000)
    assert result.value is None
    assert result.too_large == "a.b[10]"  # ten fit exactly
    within = interpolate({"a": [value] * 9}, {"BIG": "x" * 10_000}, max_chars=100_000)
    assert within.too_large is None
    assert within.value == {"a": ["x" * 10_000] * 9}
