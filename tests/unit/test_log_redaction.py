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
