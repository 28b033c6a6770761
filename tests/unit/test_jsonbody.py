from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.platform.errors import ValidationError
from app.platform.jsonbody import MalformedJsonError, parse_and_validate

SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["amount_minor"],
    "properties": {"amount_minor": {"type": "integer", "minimum": 1}},
}


def test_integer_amount_is_accepted_when_exact() -> None:
    assert parse_and_validate(b'{"amount_minor": 100}', SCHEMA) == {"amount_minor": 100}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount_minor": 1.0}',
        b'{"amount_minor": 1e2}',
        b'{"amount_minor": "100"}',
        b'{"amount_minor": true}',
        b'{"amount_minor": 0}',
        b'{"amount_minor": 1, "x": 1}',
    ],
)
def test_amount_is_refused_when_not_a_positive_exact_integer(raw: bytes) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_and_validate(raw, SCHEMA)
    assert raised.value.code == "validation_error"


@pytest.mark.parametrize(
    "raw", [b"{", b'{"amount_minor": NaN}', b'{"a": 1, "a": 2}', b"\xff", b"[" * 100 + b"]" * 100]
)
def test_body_is_malformed_when_not_strict_json(raw: bytes) -> None:
    with pytest.raises(MalformedJsonError):
        parse_and_validate(raw, SCHEMA)


def test_body_must_be_an_object_when_an_array_is_sent() -> None:
    with pytest.raises(ValidationError, match="JSON object"):
        parse_and_validate(b"[1]", SCHEMA)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"amount_minor": 1, "note": "a\\u0000b"}',
        b'{"amount_minor": 1, "note": "\\ud800"}',
        b'{"amount_minor": 1, "note": ["\\udfff x"]}',
        b'{"amount_minor": 1, "n\\u0000": 1}',
    ],
)
def test_string_is_refused_with_422_when_no_database_text_can_hold_it(raw: bytes) -> None:
    schema = {"type": "object"}
    with pytest.raises(ValidationError) as refused:
        parse_and_validate(raw, schema)
    assert not isinstance(refused.value, MalformedJsonError)
    assert refused.value.status == 422


def test_escaped_backslash_before_u0000_text_is_accepted_when_it_is_plain_text() -> None:
    # `\\u0000` in JSON is a backslash and the five characters u0000: storable text.
    assert parse_and_validate(
        b'{"note": "\\\\u0000", "pair": "\\ud83d\\ude00"}', {"type": "object"}
    ) == {
        "note": "\\u0000",
        "pair": "\U0001f600",
    }


def _nested(levels: int) -> bytes:
    # `levels` arrays around one scalar: a value MAX_JSON_DEPTH counts as levels + 1 deep.
    return b'{"v": ' + b"[" * (levels - 1) + b"1" + b"]" * (levels - 1) + b"}"


@pytest.mark.parametrize(("levels", "refused"), [(31, False), (32, True), (40, True)])
def test_nesting_is_refused_past_the_limit_when_brackets_are_near_it(
    levels: int, refused: bool
) -> None:
    raw = _nested(levels)
    assert raw.count(b"[") + raw.count(b"{") == levels
    if refused:
        with pytest.raises(MalformedJsonError, match="nesting deeper than 32"):
            parse_and_validate(raw, {"type": "object"})
    else:
        assert parse_and_validate(raw, {"type": "object"})["v"] is not None


def test_shallow_body_is_accepted_when_its_strings_hold_many_brackets() -> None:
    raw = b'{"note": "' + b"[{" * 40 + b'"}'
    assert parse_and_validate(raw, {"type": "object"}) == {"note": "[{" * 40}


@pytest.mark.parametrize(
    "raw", [b'{"amount_minor": 100, "note": [{"x": 2.50}]}', b'{"amount_minor": 1E+2}']
)
def test_fraction_anywhere_goes_to_jsonschema_when_the_parser_saw_one(raw: bytes) -> None:
    """jsonschema-rs would take 1E+2 for the integer 100; the parser's Decimal sends the
    body to jsonschema, which refuses it (and any fraction deeper down reaches it too)."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "amount_minor": {"type": "integer"},
            "note": {"type": "array", "items": {"type": "object"}},
        },
    }
    if b"E+2" in raw:
        with pytest.raises(ValidationError, match="amount_minor"):
            parse_and_validate(raw, schema)
    else:
        assert parse_and_validate(raw, schema)["note"][0]["x"] == Decimal("2.50")
