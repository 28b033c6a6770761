"""Settlement CSV loading for both provider formats (COPY into the adapters' tables on the
real PostgreSQL): exact minor units, bad lines refused with their number."""

from __future__ import annotations

from datetime import date

import pytest

from app.providers.api import SettlementFileError, UnknownProviderError
from tests.support.staged import Database

pytestmark = pytest.mark.integration

ACME = (
    "settlement_date,line,type,charge_ids,operation_id,amount,fee,net,currency\n"
    "2026-12-01,1,CAPTURE,ch_1,cap_1,1050,0,1050,EUR\n"
    "2026-12-01,2,CAPTURE,ch_2|ch_3,batch_1,3000,45,2955,EUR\n"
    "2026-12-01,3,REFUND,ch_1,re_1,50,0,50,EUR\n"
)
GLOBEX = (
    "ReportDate;RecordType;PaymentIds;ReferenceId;Currency;GrossAmount;Commission;NetAmount\r\n"
    "2026-12-01;Settled;gx_1;gx_1;EUR;10.50;0.00;10.50\r\n"
    "2026-12-01;Settled;gx_2 gx_3;batch_1;JPY;3000;45;2955\r\n"
    "2026-12-01;Transferred;gxt_1;gxt_1;KWD;1.234;0.000;1.234\r\n"
)


@pytest.fixture(scope="module")
def database(staged_database: Database) -> Database:
    return staged_database


def test_acme_lines_read_as_integer_minor_units_when_file_is_well_formed(
    database: Database,
) -> None:
    lines = database.parse("acme", ACME.encode())
    assert [(line.record_type, line.gross_minor, line.net_minor) for line in lines] == [
        ("capture", 1050, 1050),
        ("capture", 3000, 2955),
        ("refund", 50, 50),
    ]
    assert lines[1].provider_references == ("ch_2", "ch_3")
    assert lines[0].settlement_date == date(2026, 12, 1)
    assert [line.line_number for line in lines] == [2, 3, 4]


def test_globex_decimal_strings_read_exactly_when_currencies_have_different_exponents(
    database: Database,
) -> None:
    lines = database.parse("globex", GLOBEX.encode())
    assert [(line.gross_minor, line.fee_minor, line.currency) for line in lines] == [
        (1050, 0, "EUR"),
        (3000, 45, "JPY"),
        (1234, 0, "KWD"),
    ]
    assert lines[2].record_type == "payout"
    assert lines[1].provider_references == ("gx_2", "gx_3")


@pytest.mark.parametrize(
    ("provider", "text", "line"),
    [
        ("acme", ACME.replace("1050,0,1050", "10.50,0,10.50"), 2),
        ("acme", ACME.replace("3000,45,2955", "3000,45,2950"), 3),
        ("acme", ACME.replace("CAPTURE,ch_1", "CHARGEBACK,ch_1"), 2),
        ("acme", ACME.replace("settlement_date", "date"), None),
        ("acme", ACME.replace(",EUR\n", ",eur\n", 1), 2),
        ("globex", GLOBEX.replace("10.50;0.00;10.50", "10.5001;0.00;10.5001"), 2),
        ("globex", GLOBEX.replace("gx_1;gx_1;EUR", "gx_1;EUR"), 2),
        ("globex", GLOBEX.replace("3000;45;2955", "3000.5;45;2955.5"), 3),
        # What COPY refuses where the line-by-line reader skipped: a blank line inside.
        ("acme", ACME.replace("EUR\n2026-12-01,2", "EUR\n\n2026-12-01,2"), 3),
        ("acme", ACME.replace("1050,0,1050", "-1050,0,-1050"), 2),
        ("acme", ACME.replace("CAPTURE,ch_1,cap_1", "CAPTURE,,cap_1"), 2),
    ],
)
def test_bad_line_is_refused_with_its_number_when_file_is_malformed(
    database: Database, provider: str, text: str, line: int | None
) -> None:
    with pytest.raises(SettlementFileError) as refused:
        database.parse(provider, text.encode())
    message = str(refused.value)
    assert message.startswith(f"{provider} settlement ")
    if line is None:
        assert "header must be" in message
    else:
        assert f"line {line}:" in message


def test_non_utf8_file_is_refused_when_bytes_are_garbage(database: Database) -> None:
    with pytest.raises(SettlementFileError):
        database.parse("acme", b"\xff\xfe\x00garbage")


def test_end_of_data_marker_is_refused_when_a_line_holds_only_it(database: Database) -> None:
    # COPY would stop reading there and reconcile half the file without a word.
    text = ACME.replace("EUR\n2026-12-01,3", "EUR\n\\.\n2026-12-01,3")
    with pytest.raises(SettlementFileError, match="line 4"):
        database.parse("acme", text.encode())


def test_byte_order_mark_quotes_and_trailing_blank_lines_are_read_when_present(
    database: Database,
) -> None:
    odd = 'ch_"q",{b}\\s\tt'
    text = ACME.replace("ch_1,cap_1", f'"{odd.replace(chr(34), chr(34) * 2)}",cap_1', 1)
    lines = database.parse("acme", b"\xef\xbb\xbf" + text.encode() + b"\n\r\n  \n")
    assert [line.provider_references for line in lines] == [(odd,), ("ch_2", "ch_3"), ("ch_1",)]


def test_empty_file_is_refused_when_it_has_no_header(database: Database) -> None:
    with pytest.raises(SettlementFileError, match="header must be"):
        database.parse("globex", b"\xef\xbb\xbf\r\n")


def test_unknown_provider_is_refused_when_parsing(database: Database) -> None:
    with pytest.raises(UnknownProviderError):
        database.parse("initech", ACME.encode())


@pytest.mark.parametrize(
    ("provider", "text", "splitting_line"),
    [
        ("acme", ACME, "2026-12-01,2,CAPTURE,ch_2|ch_3,batch_1,3000,45,2955,EUR\n"),
        ("globex", GLOBEX, "2026-12-01;Settled;gx_2 gx_3;batch_1;JPY;3000;45;2955\r\n"),
    ],
)
def test_lines_read_alike_when_no_line_of_the_file_splits_its_references(
    database: Database, provider: str, text: str, splitting_line: str
) -> None:
    # Without a splitting line the view reads the reference column as is: the lines
    # that remain must read exactly as they do beside one.
    fee = (
        "2026-12-01,9,FEE,,,25,25,0,EUR\n"
        if provider == "acme"
        else "2026-12-01;Fee;;;EUR;0.25;0.25;0.00\r\n"
    )
    beside = database.parse(provider, (text + fee).encode())
    alone = database.parse(provider, (text.replace(splitting_line, "") + fee).encode())
    assert [line._replace(line_number=0) for line in alone] == [
        line._replace(line_number=0) for line in beside if len(line.provider_references) != 2
    ]
    assert len(alone) == 3
    assert alone[-1].provider_references == ()


def test_reference_padded_with_blanks_is_read_trimmed_when_it_is_the_only_one(
    database: Database,
) -> None:
    # globex splits on whitespace, so a lone padded id is one reference, not a new id.
    text = GLOBEX.replace(";gx_1;gx_1;", "; gx_1 ;gx_1;").replace(
        "2026-12-01;Settled;gx_2 gx_3;batch_1;JPY;3000;45;2955\r\n", ""
    )
    lines = database.parse("globex", text.encode())
    assert [line.provider_references for line in lines] == [("gx_1",), ("gxt_1",)]


def test_first_line_with_a_malformed_currency_is_named_when_several_have_one(
    database: Database,
) -> None:
    text = ACME.replace("0,50,EUR\n", "0,50,US$\n").replace("2955,EUR\n", "2955,eur\n")
    with pytest.raises(SettlementFileError) as refused:
        database.parse("acme", text.encode())
    assert str(refused.value) == (
        "acme settlement line 3: currency is not three upper-case letters"
    )
