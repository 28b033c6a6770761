"""Minor units <-> decimal strings, for globex. The simulator keeps its own copy on purpose:
it plays another company, which shares no code with us."""

from __future__ import annotations

import re

_ZERO = {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND"}
_THREE = {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"}
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,17})(?:\.([0-9]{1,3}))?$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


def exponent(currency: str) -> int:
    return 0 if currency in _ZERO else 3 if currency in _THREE else 2


def to_decimal(amount_minor: int, currency: str) -> str:
    places = exponent(currency)
    if places == 0:
        return str(amount_minor)
    whole, fraction = divmod(amount_minor, 10**places)
    return f"{whole}.{fraction:0{places}d}"


def to_minor(text: str, currency: str) -> int:
    match = _DECIMAL.match(text)
    places = exponent(currency)
    if match is None or len(match.group(2) or "") > places:
        raise ValueError(f"bad amount {text[:30]!r} for {currency}")
    scale: int = 10**places
    return int(match.group(1)) * scale + int((match.group(2) or "").ljust(places, "0") or "0")
