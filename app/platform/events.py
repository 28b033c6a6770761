"""The base of every domain's integration events (the frozen dataclasses in its `events.py`).

The outbox writes an event's dataclass fields as its payload (`dataclasses.asdict`); what
the base holds are class constants, so it adds nothing to any payload.
"""

from __future__ import annotations

from typing import ClassVar


class Event:
    """An integration event: its wire `EVENT_TYPE` and `EVENT_VERSION`, besides its fields.

    A subclass names its `EVENT_TYPE` and an `aggregate_id` property (the key the outbox
    orders one aggregate's events by). `EVENT_VERSION` stays 1 until an event's payload
    changes in a way a consumer must tell apart; that event then raises its own.
    """

    __slots__ = ()  # a slotted dataclass below stays without a per-instance __dict__

    EVENT_TYPE: ClassVar[str]
    EVENT_VERSION: ClassVar[int] = 1
