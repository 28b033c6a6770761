"""Secret-looking fields are redacted from logs, but trace and span ids are not."""

from __future__ import annotations

from app.platform.logging import _redact


def test_card_fields_are_redacted_and_trace_ids_kept_when_logged() -> None:
    event = {
        "event": "x",
        "card_pan": "4111111111111111",
        "pan": "4111",
        "client_secret": "s",
        "span_id": "00f067aa0ba902b7",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    }
    redacted = _redact(None, "info", dict(event))
    assert redacted["card_pan"] == "[redacted]"
    assert redacted["pan"] == "[redacted]"
    assert redacted["client_secret"] == "[redacted]"
    assert redacted["span_id"] == event["span_id"]
    assert redacted["trace_id"] == event["trace_id"]


def test_fields_are_redacted_on_every_line_when_their_names_are_logged_again() -> None:
    """A name's verdict is remembered: the second line with it is redacted (or kept) as
    the first was, and so is a secret-looking name met after the memory is full."""
    for _ in range(2):
        redacted = _redact(None, "info", {"event": "x", "db_password": "p", "request_id": "r"})
        assert redacted == {"event": "x", "db_password": "[redacted]", "request_id": "r"}
    for index in range(5000):
        _redact(None, "info", {f"field_{index}": "v"})
    late = _redact(None, "info", {"late_secret_9999": "s", "late_name_9999": "n"})
    assert late == {"late_secret_9999": "[redacted]", "late_name_9999": "n"}
