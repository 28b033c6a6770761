"""Every domain's integration events share app.platform.events.Event; its payload is its fields."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.ledger import events as ledger_events
from app.payments import events as payment_events
from app.platform import outbox
from app.platform.events import Event
from app.risk import events as risk_events

EVENTS = [
    cls
    for module in (payment_events, ledger_events, risk_events)
    for name, cls in vars(module).items()
    if isinstance(cls, type) and issubclass(cls, Event) and cls is not Event and name[0] != "_"
]


def _instance(cls: type[Event]) -> Any:
    values = {field.name: f"v_{field.name}" for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**values)


def test_event_types_are_unique_when_every_event_is_listed() -> None:
    assert len(EVENTS) == 15
    assert len({cls.EVENT_TYPE for cls in EVENTS}) == len(EVENTS)


@pytest.mark.parametrize("cls", EVENTS, ids=lambda cls: cls.__name__)
def test_event_payload_is_its_fields_only_when_written_to_the_outbox(cls: type[Event]) -> None:
    event = _instance(cls)
    assert cls.EVENT_VERSION == 1
    assert list(dataclasses.asdict(event)) == [field.name for field in dataclasses.fields(event)]
    assert event.aggregate_id.startswith("v_")
    assert not hasattr(event, "__dict__")  # slotted all the way down, base included
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(event, dataclasses.fields(event)[0].name, "changed")


def test_merchant_event_list_holds_every_payment_event_when_endpoints_subscribe() -> None:
    payment_classes = [cls for cls in EVENTS if cls.__module__ == payment_events.__name__]
    assert set(payment_events.MERCHANT_EVENTS) == set(payment_classes)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
@pytest.mark.parametrize("cls", EVENTS, ids=lambda cls: cls.__name__)
def test_outbox_payload_equals_asdict_when_an_event_has_any_field_values(
    cls: type[Event], data: st.DataObject
) -> None:
    """The outbox's payload (field names read once per class) is `dataclasses.asdict`,
    types included (a tuple of posting lines stays a tuple of dicts)."""
    event = data.draw(st.builds(cls))
    written = outbox.payload(event)
    expected = dataclasses.asdict(event)
    assert written == expected
    assert [type(value) for value in written.values()] == [
        type(value) for value in expected.values()
    ]


@dataclasses.dataclass(frozen=True)
class _Unusual:
    when: datetime
    tags: dict[str, list[str]]
    lines: list[ledger_events.PostingLine]
    status: StrEnum


class _Status(StrEnum):
    POSTED = "posted"


def test_outbox_payload_equals_asdict_when_values_are_not_plain() -> None:
    """Dates, dicts, enums: left to `dataclasses.asdict`, which copies them."""
    tags = {"k": ["a"]}
    event = _Unusual(
        datetime(2026, 12, 2, tzinfo=UTC),
        tags,
        [ledger_events.PostingLine("acc_1", "debit", 5, "USD")],
        _Status.POSTED,
    )
    written = outbox.payload(event)
    assert written == dataclasses.asdict(event)
    assert written["tags"] is not tags
    assert written["tags"]["k"] is not tags["k"]
    assert written["lines"] == [
        {"account_id": "acc_1", "direction": "debit", "amount_minor": 5, "currency": "USD"}
    ]
