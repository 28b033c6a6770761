"""Settlement CSV parsing for both provider formats: exact minor units, bad lines refused."""

from __future__ import annotations

from datetime import date

import pytest

from app.providers.api import SettlementFileError, UnknownProviderError, parse_settlement_file

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


def test_acme_lines_read_as_integer_minor_units_when_file_is_well_formed() -> None:
    lines = list(parse_settlement_file("acme", ACME.encode()))
    assert [(line.record_type, line.gross_minor, line.net_minor) for line in lines] == [
        ("capture", 1050, 1050),
        ("capture", 3000, 2955),
        ("refund", 50, 50),
    ]
    assert lines[1].provider_references == ("ch_2", "ch_3")
    assert lines[0].settlement_date == date(2026, 12, 1)


def test_globex_decimal_strings_read_exactly_when_currencies_have_different_exponents() -> None:
    lines = list(parse_settlement_file("globex", GLOBEX.encode()))
    assert [(line.gross_minor, line.fee_minor, line.currency) for line in lines] == [
        (1050, 0, "EUR"),
        (3000, 45, "JPY"),
        (1234, 0, "KWD"),
    ]
    assert lines[2].record_type == "payout"
    assert lines[1].provider_references == ("gx_2", "gx_3")


@pytest.mark.parametrize(
    ("provider", "text"),
    [
        ("acme", ACME.replace("1050,0,1050", "10.50,0,10.50")),
        ("acme", ACME.replace("3000,45,2955", "3000,45,2950")),
        ("acme", ACME.replace("CAPTURE,ch_1", "CHARGEBACK,ch_1")),
        ("acme", ACME.replace("settlement_date", "date")),
        ("acme", ACME.replace(",EUR\n", ",eur\n", 1)),
        ("globex", GLOBEX.replace("10.50;0.00;10.50", "10.5001;0.00;10.5001")),
        ("globex", GLOBEX.replace("gx_1;gx_1;EUR", "gx_1;EUR")),
        ("globex", GLOBEX.replace("3000;45;2955", "3000.5;45;2955.5")),
    ],
)
def test_bad_line_is_refused_with_its_number_when_file_is_malformed(
    provider: str, text: str
) -> None:
    with pytest.raises(SettlementFileError):
        list(parse_settlement_file(provider, text.encode()))


def test_non_utf8_file_is_refused_when_bytes_are_garbage() -> None:
    with pytest.raises(SettlementFileError):
        list(parse_settlement_file("acme", b"\xff\xfe\x00garbage"))


def test_unknown_provider_is_refused_when_parsing() -> None:
    with pytest.raises(UnknownProviderError):
        parse_settlement_file("initech", ACME.encode())
