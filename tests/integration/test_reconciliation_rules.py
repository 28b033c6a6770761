"""The matching rules (`matching`'s SQL, on the real PostgreSQL): every planted
discrepancy gets its class, a clean file none. The lines go through acme's adapter, the
records into a table of payments' `settled_money` shape; nothing is kept (rolled back)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.platform.errors import ValidationError
from app.reconciliation.domain import Tolerances
from tests.support.staged import Database, Line, Record, Report

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 30)
EXACT = Tolerances(amount_minor=0, days=1)
_database: Database | None = None


@pytest.fixture(scope="module", autouse=True)
def database(staged_database: Database) -> Iterator[Database]:
    global _database
    _database = staged_database
    try:
        yield _database
    finally:
        _database = None


def reconcile(
    lines: list[Line], records: list[Record], *, settlement_date: date, tolerances: Tolerances
) -> Report:
    assert _database is not None
    return _database.reconcile(
        lines, records, settlement_date=settlement_date, tolerances=tolerances
    )


def record(
    reference: str, amount: int, currency: str = "EUR", kind: str = "capture", days_ago: int = 0
) -> Record:
    return Record(reference, kind, amount, currency, DAY - timedelta(days=days_ago))


def line(
    number: int,
    references: tuple[str, ...],
    gross: int,
    currency: str = "EUR",
    kind: str = "capture",
    fee: int = 0,
    operation: str | None = None,
) -> Line:
    return Line(number, kind, references, operation, gross, fee, currency)


def classes(report: object) -> list[tuple[str, tuple[str, ...]]]:
    return sorted((r.line_class, r.references) for r in report.results)  # type: ignore[attr-defined]


def test_clean_file_gives_zero_exceptions_when_every_line_matches_one_to_one() -> None:
    records = [record("ch_1", 1000), record("ch_2", 250, "USD"), record("re_1", 100, kind="refund")]
    lines = [
        line(2, ("ch_1",), 1000),
        line(3, ("ch_2",), 250, "USD"),
        line(4, ("re_1",), 100, kind="refund"),
    ]
    report = reconcile(lines, records, settlement_date=DAY, tolerances=EXACT)
    assert report.discrepancies == []
    assert report.count("matched") == 3


def test_partial_captures_match_one_to_many_when_their_lines_sum_to_our_total() -> None:
    records = [record("ch_1", 600), record("ch_1", 400)]
    lines = [line(2, ("ch_1",), 600, operation="op_a"), line(3, ("ch_1",), 400, operation="op_b")]
    report = reconcile(lines, records, settlement_date=DAY, tolerances=EXACT)
    assert classes(report) == [("matched", ("ch_1",))]
    assert report.results[0].line_numbers == (2, 3)


def test_fees_netted_match_many_to_one_when_the_batch_gross_equals_our_records() -> None:
    records = [record("ch_1", 1000), record("ch_2", 500), record("ch_3", 700)]
    lines = [line(2, ("ch_1", "ch_2"), 1500, fee=45, operation="batch_1"), line(3, ("ch_3",), 700)]
    report = reconcile(lines, records, settlement_date=DAY, tolerances=EXACT)
    assert classes(report) == [("matched", ("ch_1", "ch_2")), ("matched", ("ch_3",))]
    batch = next(r for r in report.results if len(r.references) == 2)
    assert (batch.provider_gross_minor, batch.internal_minor, batch.fee_minor) == (1500, 1500, 45)


def test_every_planted_discrepancy_gets_its_class_when_the_file_has_all_kinds() -> None:
    records = [
        record("ch_ok", 100),
        record("ch_amount", 1000),
        record("ch_currency", 500),
        record("ch_dup", 300),
        record("ch_gone", 800, days_ago=1),
    ]
    lines = [
        line(2, ("ch_ok",), 100),
        line(3, ("ch_amount",), 1001),
        line(4, ("ch_currency",), 500, "GBP"),
        line(5, ("ch_dup",), 300),
        line(6, ("ch_dup",), 300),
        line(7, ("x_unknown",), 900),
    ]
    report = reconcile(lines, records, settlement_date=DAY, tolerances=EXACT)
    assert classes(report) == [
        ("amount_mismatch", ("ch_amount",)),
        ("currency_mismatch", ("ch_currency",)),
        ("duplicate", ("ch_dup",)),
        ("matched", ("ch_dup",)),
        ("matched", ("ch_ok",)),
        ("missing_at_provider", ("ch_gone",)),
        ("missing_internally", ("x_unknown",)),
    ]
    duplicate = next(r for r in report.results if r.line_class == "duplicate")
    assert duplicate.line_numbers == (6,)


def test_mixed_currencies_are_a_mismatch_never_a_match_when_amounts_agree() -> None:
    records = [record("ch_1", 500, "EUR"), record("ch_2", 500, "USD")]
    lines = [line(2, ("ch_1", "ch_2"), 1000, "EUR")]
    report = reconcile(lines, records, settlement_date=DAY, tolerances=Tolerances(10_000, 1))
    assert classes(report) == [("currency_mismatch", ("ch_1", "ch_2"))]


def test_amount_tolerance_is_inclusive_when_the_difference_equals_it() -> None:
    records = [record("ch_1", 1000)]
    within = reconcile(
        [line(2, ("ch_1",), 1002)], records, settlement_date=DAY, tolerances=Tolerances(2, 1)
    )
    assert classes(within) == [("matched", ("ch_1",))]
    beyond = reconcile(
        [line(2, ("ch_1",), 1003)], records, settlement_date=DAY, tolerances=Tolerances(2, 1)
    )
    assert classes(beyond) == [("amount_mismatch", ("ch_1",))]


def test_unsettled_record_waits_within_the_date_tolerance_when_it_is_recent() -> None:
    records = [record("ch_today", 100), record("ch_old", 100, days_ago=2)]
    report = reconcile([], records, settlement_date=DAY, tolerances=Tolerances(0, 2))
    assert classes(report) == [("missing_at_provider", ("ch_old",))]
    assert report.pending_references == ["ch_today"]
    strict = reconcile([], records, settlement_date=DAY, tolerances=Tolerances(0, 0))
    assert strict.count("missing_at_provider") == 2


def test_a_refund_line_does_not_settle_a_capture_when_they_share_a_reference() -> None:
    records = [record("ch_1", 100, days_ago=1)]
    report = reconcile(
        [line(2, ("ch_1",), 100, kind="refund")], records, settlement_date=DAY, tolerances=EXACT
    )
    assert classes(report) == [
        ("missing_at_provider", ("ch_1",)),
        ("missing_internally", ("ch_1",)),
    ]


@pytest.mark.parametrize(("amount", "days"), [(-1, 1), (0, -1), (10**9, 1), (0, 400)])
def test_tolerances_are_refused_when_out_of_range(amount: int, days: int) -> None:
    with pytest.raises(ValidationError):
        Tolerances(amount, days)


amounts = st.integers(min_value=1, max_value=10**12)


# A database round trip per example: no deadline; the module's fixture is shared on purpose.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["EUR", "USD", "JPY"]), st.lists(amounts, min_size=1, max_size=3)
        ),
        min_size=0,
        max_size=30,
    )
)
def test_a_file_built_from_our_records_has_no_discrepancy_when_nothing_is_planted(
    payments: list[tuple[str, list[int]]],
) -> None:
    records: list[Record] = []
    lines: list[Line] = []
    for index, (currency, captures) in enumerate(payments):
        for part, amount in enumerate(captures):
            records.append(record(f"ch_{index}", amount, currency))
            lines.append(
                line(
                    len(lines) + 2,
                    (f"ch_{index}",),
                    amount,
                    currency,
                    operation=f"op_{index}_{part}",
                )
            )
    report = reconcile(lines, records, settlement_date=DAY, tolerances=EXACT)
    assert report.discrepancies == []
    assert report.count("matched") == len(payments)


def test_each_record_of_an_unnamed_charge_is_flagged_when_it_was_captured_in_parts() -> None:
    records = [record("ch_1", 600, days_ago=1), record("ch_1", 400, days_ago=1)]
    records.append(record("ch_2", 100))
    report = reconcile([line(2, ("ch_2",), 100)], records, settlement_date=DAY, tolerances=EXACT)
    missing = [r for r in report.results if r.line_class == "missing_at_provider"]
    assert sorted(r.internal_minor for r in missing) == [400, 600]
    assert report.count("matched") == 1


def test_copies_of_fee_lines_are_flagged_when_fees_settle_nothing_of_ours() -> None:
    lines = [
        line(2, (), 30, kind="fee", fee=30, operation="fee_1"),
        line(3, (), 30, kind="fee", fee=30, operation="fee_1"),
        line(4, ("ch_1", "ch_2"), 900, operation="batch_1"),
        line(5, ("ch_1",), 12, kind="fee", fee=12, operation="fee_2"),
    ]
    records = [record("ch_1", 500), record("ch_2", 500)]
    report = reconcile(lines, records, settlement_date=DAY, tolerances=EXACT)
    assert classes(report) == [("amount_mismatch", ("ch_1", "ch_2")), ("duplicate", ())]
    duplicate = next(r for r in report.results if r.line_class == "duplicate")
    assert duplicate.line_numbers == (3,)
