"""Strict JSON request bodies: bounded, exact integers, no duplicate keys, schema-checked.

Money must never pass through a float, so JSON numbers with a fraction or exponent are
parsed as `Decimal` and then refused by the schema's `integer` type. Booleans are not
integers either (JSON Schema keeps them apart, unlike Python).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator

from app.platform.errors import ValidationError

MAX_JSON_DEPTH = 32
# Characters valid in a JSON string (escaped) that no PostgreSQL text or jsonb can hold:
# U+0000 and the halves of surrogate pairs standing alone.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class MalformedJsonError(ValidationError):
    status = 400
    title = "Malformed JSON"


class UnsupportedMediaTypeError(ValidationError):
    status = 415
    title = "Unsupported media type"


def _refuse_constant(name: str) -> Any:
    raise MalformedJsonError(f"{name} is not valid JSON")


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise MalformedJsonError(f"duplicate key {key!r} in JSON object")
        result[key] = value
    return result


def _depth(value: Any, limit: int) -> int:
    # Iterative so that a hostile nesting depth cannot exhaust the Python stack.
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node)
    return deepest


def parse_json_bytes(raw: bytes) -> Any:
    """Decode a JSON document strictly. Raises MalformedJsonError (400), or ValidationError
    (422) for a string no database text can hold."""
    return _parsed(raw)[0]


def _parsed(raw: bytes) -> tuple[Any, bool]:
    """`parse_json_bytes`, and whether the value holds a Decimal (a number with a fraction
    or an exponent), as the parser saw it: no walk of the value is needed to know."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedJsonError("body is not UTF-8") from None
    fractions: list[Decimal] = []

    def parse_fraction(number: str) -> Decimal:
        parsed = Decimal(number)
        fractions.append(parsed)
        return parsed

    try:
        value = json.loads(
            text,
            parse_float=parse_fraction,
            parse_constant=_refuse_constant,
            object_pairs_hook=_refuse_duplicate_keys,
        )
    except MalformedJsonError:
        raise
    except (ValueError, RecursionError) as error:
        raise MalformedJsonError(f"body is not valid JSON: {error}") from None
    # Each level of nesting but the innermost (a scalar, or an empty container) opens
    # with a bracket, so a text with fewer brackets (in strings or not) than the limit is
    # not nested deeper than it: most bodies skip the walk.
    if (
        text.count("[") + text.count("{") >= MAX_JSON_DEPTH
        and _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH
    ):
        raise MalformedJsonError(f"JSON nesting deeper than {MAX_JSON_DEPTH}")
    # Only a `\u` escape can put such a character in a string (raw control characters are
    # not JSON, and the body decoded as UTF-8), so most bodies skip the walk.
    if "\\u" in text and _has_unstorable(value):
        raise ValidationError(
            "strings must not contain U+0000 or an unpaired surrogate (\\u0000, \\ud800...)"
        )
    return value, bool(fractions)


def _leaves(value: Any, *, with_keys: bool = False) -> Iterator[Any]:
    """Every scalar of a decoded JSON value (and, `with_keys`, every object key), iteratively
    so that no nesting can exhaust the Python stack."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if with_keys:
                stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        else:
            yield node


def _has_unstorable(value: Any) -> bool:
    return any(
        isinstance(leaf, str) and _UNSTORABLE.search(leaf) is not None
        for leaf in _leaves(value, with_keys=True)
    )


_VALIDATORS: dict[int, tuple[Draft202012Validator, Any]] = {}


def _validators(schema: dict[str, Any]) -> tuple[Draft202012Validator, Any]:
    """jsonschema's validator of `schema`, and jsonschema-rs's for the same draft."""
    key = id(schema)
    validators = _VALIDATORS.get(key)
    if validators is None:
        Draft202012Validator.check_schema(schema)
        validators = (Draft202012Validator(schema), jsonschema_rs.Draft202012Validator(schema))
        _VALIDATORS[key] = validators
    return validators


def _has_decimal(value: Any) -> bool:
    return any(isinstance(leaf, Decimal) for leaf in _leaves(value))


def validate(value: Any, schema: dict[str, Any], *, holds_decimal: bool | None = None) -> None:
    """Check `value` against a JSON Schema. Raises ValidationError listing every problem.

    `holds_decimal`: whether `value` holds a Decimal, if the caller knows (the parser
    does); None walks the value to find out.

    jsonschema-rs answers the common case, a valid body, in about a microsecond (issue
    16: jsonschema took 80 µs per transfer). A body it refuses, or cannot take, is
    checked again by jsonschema, which decides and words the errors, so a refusal reads
    exactly as before. A body with a fraction or exponent (a Decimal) always goes to
    jsonschema: jsonschema-rs would take 1.0 for an integer, and money is never a float.
    """
    reference, fast = _validators(schema)
    if holds_decimal is None:
        holds_decimal = _has_decimal(value)
    if not holds_decimal:
        try:
            if fast.is_valid(value):
                return
        except (ValueError, TypeError, OverflowError):
            pass  # a value jsonschema-rs cannot represent: jsonschema decides
    errors = sorted(reference.iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    listed = [
        {
            "field": "/" + "/".join(str(part) for part in error.absolute_path),
            "message": error.message if len(error.message) <= 200 else error.message[:200] + "…",
        }
        for error in errors[:20]
    ]
    first = listed[0]
    raise ValidationError(f"{first['field']}: {first['message']}", errors=listed)


def parse_and_validate(raw: bytes, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse a body that must be a JSON object and validate it. An empty body is `{}`."""
    value, holds_decimal = ({}, False) if raw.strip() == b"" else _parsed(raw)
    if not isinstance(value, dict):
        raise ValidationError("body must be a JSON object")
    validate(value, schema, holds_decimal=holds_decimal)
    return value
