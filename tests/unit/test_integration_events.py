"""Every domain's integration events share app.platform.events.Event; its payload is its fields."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from app.ledger import events as ledger_events
from app.payments import events as payment_events
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
