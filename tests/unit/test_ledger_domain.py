"""Pure ledger rules: currency registry, balancing, balance arithmetic, the journal hash."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import rfc8785

from app.ledger import api
from app.ledger.chain import GENESIS_HASH, canonical_entry, chain_hash
from app.ledger.domain import (
    Expire,
    Post,
    Reverse,
    TransactionFacts,
    TransactionStatus,
    Void,
    check_legs,
    transition,
)
from app.platform.errors import ValidationError


def test_registry_has_every_active_code_with_its_exponent() -> None:
    registry = api.currencies()
    assert len(registry) >= 170
    assert all(len(code) == 3 and code.isupper() for code in registry)
    assert registry["USD"] == 2
    assert registry["EUR"] == 2
    assert registry["JPY"] == 0
    assert registry["KRW"] == 0
    assert registry["BHD"] == 3
    assert registry["KWD"] == 3
    assert registry["CLF"] == 4
    assert registry["UYW"] == 4
    assert registry["XCG"] == 2
    assert registry["ZWG"] == 2
    assert registry["XAU"] is None
    assert "HRK" not in registry  # withdrawn when Croatia adopted the euro


@pytest.mark.parametrize("code", ["ABC", "XXX", "XTS", "usd", "HRK"])
def test_currency_exponent_refuses_unknown_or_non_money_codes(code: str) -> None:
    with pytest.raises(api.UnknownCurrencyError):
        api.currency_exponent(code)


def _leg(account: str, direction: str, amount: int, currency: str = "USD") -> api.Leg:
    return api.Leg(account, direction, amount, currency)  # type: ignore[arg-type]


def test_check_legs_accepts_balanced_legs_per_currency() -> None:
    check_legs(
        [
            _leg("a", "debit", 5),
            _leg("b", "credit", 5),
            _leg("c", "debit", 7, "EUR"),
            _leg("d", "credit", 7, "EUR"),
        ]
    )


def test_check_legs_names_the_unbalanced_currency() -> None:
    with pytest.raises(api.UnbalancedTransactionError) as raised:
        check_legs(
            [
                _leg("a", "debit", 5),
                _leg("b", "credit", 5),
                _leg("c", "debit", 7, "EUR"),
                _leg("d", "credit", 6, "EUR"),
            ]
        )
    assert raised.value.extra["currencies"] == ["EUR"]


@pytest.mark.parametrize("amount", [0, -1, 2**63, True])
def test_check_legs_refuses_amounts_outside_1_to_2_pow_63_minus_1(amount: int) -> None:
    with pytest.raises(ValidationError):
        check_legs([_leg("a", "debit", amount), _leg("b", "credit", amount)])


def test_check_legs_refuses_fewer_than_two_or_more_than_100_postings() -> None:
    with pytest.raises(ValidationError):
        check_legs([_leg("a", "debit", 1)])
    with pytest.raises(ValidationError):
        check_legs([_leg("a", "debit", 1), _leg("b", "credit", 1)] * 51)


def test_chain_hash_is_sha256_of_prev_hash_bytes_and_jcs_of_the_entry() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    canonical = canonical_entry(
        entry_id="jrn_1",
        transaction_id="txn_1",
        kind="create",
        occurred_at=when,
        detail={"status": "posted", "expires_at": None},
        postings=[{"account_id": "acc_1", "amount_minor": 2**63 - 1}],
    )
    expected_document = {
        "id": "jrn_1",
        "transaction_id": "txn_1",
        "kind": "create",
        "occurred_at": "2026-01-02T03:04:05.000006Z",
        "detail": {"status": "posted", "expires_at": None},
        "postings": [{"account_id": "acc_1", "amount_minor": str(2**63 - 1)}],
    }
    assert canonical == rfc8785.dumps(expected_document)
    assert chain_hash(GENESIS_HASH, canonical) == hashlib.sha256(bytes(32) + canonical).hexdigest()


# ---- the lifecycle (domain.transition) ----------------------------------------------------

_NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _pending(expires_in_s: int = 60, **extra: object) -> TransactionFacts:
    fields: dict[str, object] = {
        "id": "txn_1",
        "status": TransactionStatus.PENDING,
        "legs": (_leg("a", "debit", 500), _leg("b", "credit", 500)),
        "expires_at": _NOW + timedelta(seconds=expires_in_s),
        "posted_amount_minor": None,
        "reversed_by": None,
    }
    fields.update(extra)
    return TransactionFacts(**fields)  # type: ignore[arg-type]


def test_post_releases_the_hold_and_posts_in_its_place_when_the_hold_is_open() -> None:
    change = transition(_pending(), Post(), _NOW)
    assert change.status is TransactionStatus.POSTED
    assert [(m.effect, m.amount_minor) for m in change.movements] == [
        ("release", 500),
        ("posted", 500),
        ("release", 500),
        ("posted", 500),
    ]


def test_partial_post_posts_the_amount_on_both_legs_when_two_postings() -> None:
    change = transition(_pending(), Post(200), _NOW)
    assert [leg.amount_minor for leg in change.legs] == [200, 200]
    assert change.posted_amount_minor == 200


def test_post_and_void_are_refused_as_expired_when_expires_at_is_reached() -> None:
    for command in (Post(), Void()):
        with pytest.raises(api.TransactionExpiredError):
            transition(_pending(expires_in_s=0), command, _NOW)


def test_expire_is_refused_when_the_hold_is_not_yet_due() -> None:
    with pytest.raises(api.InvalidStateError):
        transition(_pending(expires_in_s=1), Expire(), _NOW)
    assert transition(_pending(expires_in_s=0), Expire(), _NOW).status is (
        TransactionStatus.EXPIRED
    )


def test_reverse_mirrors_the_posted_amount_when_a_hold_was_posted_in_part() -> None:
    posted = _pending(status=TransactionStatus.POSTED, posted_amount_minor=120)
    mirror = transition(posted, Reverse(), _NOW)
    assert [(leg.direction, leg.amount_minor) for leg in mirror.legs] == [
        ("credit", 120),
        ("debit", 120),
    ]
    with pytest.raises(api.InvalidStateError):
        transition(_pending(status=TransactionStatus.POSTED, reversed_by="txn_2"), Reverse(), _NOW)


def test_a_status_change_is_refused_when_the_transaction_is_no_longer_pending() -> None:
    for status in (TransactionStatus.POSTED, TransactionStatus.VOIDED):
        with pytest.raises(api.InvalidStateError):
            transition(_pending(status=status), Void(), _NOW)
