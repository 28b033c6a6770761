"""Daily settlement files, each provider in its own CSV dialect, with planted discrepancies.

The true lines come from what the engine recorded that day (approved captures, refunds,
payouts). A plan per provider and day then plants discrepancies, applied in order:

- {"kind": "missing", "reference": R}: drop the line(s) of R (a charge or operation id);
- {"kind": "extra", "amount_minor": N, "currency": C, "reference"?: R}: a line we never made;
- {"kind": "amount_mismatch", "reference": R, "delta_minor": D}: gross (and net) += D;
- {"kind": "currency_mismatch", "reference": R, "currency": C};
- {"kind": "duplicate", "reference": R}: R's line twice;
- {"kind": "fees_netted", "references": [R...], "fee_minor": F}: those lines become one
  batch line over all of them, gross = their sum, net = gross - F (many-to-one).

The file is a pure function of the records and the plan, so fetching it twice gives the
same bytes (reconciliation digests it).
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from provider_sim import money
from provider_sim.engine import Engine

KINDS = {"missing", "extra", "amount_mismatch", "currency_mismatch", "duplicate", "fees_netted"}
MAX_PLAN = 1000


@dataclass(frozen=True)
class Line:
    kind: str  # capture, refund, payout, fee, adjustment
    charges: tuple[str, ...]
    operation: str
    gross: int
    fee: int
    currency: str

    def mentions(self, reference: str) -> bool:
        return reference == self.operation or reference in self.charges


def check_plan(plan: Any) -> list[dict[str, Any]]:
    if not isinstance(plan, list) or len(plan) > MAX_PLAN:
        raise ValueError(f"discrepancies must be a list of at most {MAX_PLAN}")
    for item in plan:
        if not isinstance(item, dict) or item.get("kind") not in KINDS:
            raise ValueError(f"each discrepancy needs a kind in {sorted(KINDS)}")
        if item["kind"] == "fees_netted":
            if not isinstance(item.get("references"), list) or not item["references"]:
                raise ValueError("fees_netted needs references")
            if not isinstance(item.get("fee_minor"), int) or item["fee_minor"] < 0:
                raise ValueError("fees_netted needs fee_minor >= 0")
        elif item["kind"] == "extra":
            if not isinstance(item.get("amount_minor"), int) or item["amount_minor"] < 0:
                raise ValueError("extra needs amount_minor >= 0")
            if not money.CURRENCY.match(str(item.get("currency", ""))):
                raise ValueError("extra needs a currency")
        elif not isinstance(item.get("reference"), str):
            raise ValueError(f"{item['kind']} needs a reference")
        if item["kind"] == "currency_mismatch" and not money.CURRENCY.match(
            str(item.get("currency", ""))
        ):
            raise ValueError("currency_mismatch needs a currency")
        if item["kind"] == "amount_mismatch" and not isinstance(item.get("delta_minor"), int):
            raise ValueError("amount_mismatch needs an integer delta_minor")
    return plan


def true_lines(engine: Engine, provider: str, day: str) -> list[Line]:
    lines = []
    for operation in engine.settled_operations(provider, day):
        kind = "capture" if operation.kind == "authorize" else operation.kind
        lines.append(
            Line(
                kind=kind,
                charges=(operation.charge_id or "",),
                operation=operation.own_id or "",
                gross=operation.amount_minor or 0,
                fee=0,
                currency=operation.currency or "",
            )
        )
    return lines


def planted(lines: list[Line], plan: list[dict[str, Any]], day: str) -> list[Line]:
    for index, item in enumerate(plan):
        kind = item["kind"]
        if kind == "missing":
            lines = [line for line in lines if not line.mentions(item["reference"])]
        elif kind == "extra":
            made_up = "x_" + hashlib.sha256(f"{day}:{index}".encode()).hexdigest()[:16]
            reference = item.get("reference") or made_up
            lines.append(
                Line("capture", (reference,), reference, item["amount_minor"], 0, item["currency"])
            )
        elif kind == "amount_mismatch":
            lines = [
                replace(line, gross=max(0, line.gross + item["delta_minor"]))
                if line.mentions(item["reference"])
                else line
                for line in lines
            ]
        elif kind == "currency_mismatch":
            lines = [
                replace(line, currency=item["currency"])
                if line.mentions(item["reference"])
                else line
                for line in lines
            ]
        elif kind == "duplicate":
            lines = [
                copy
                for line in lines
                for copy in ([line, line] if line.mentions(item["reference"]) else [line])
            ]
        elif kind == "fees_netted":
            references = set(item["references"])
            group = [line for line in lines if references & {line.operation, *line.charges}]
            if group:
                rest = [line for line in lines if line not in group]
                charges = tuple(charge for line in group for charge in line.charges)
                batch = "batch_" + hashlib.sha256(f"{day}:{index}".encode()).hexdigest()[:12]
                gross = sum(line.gross for line in group)
                fee = min(item["fee_minor"], gross)
                lines = [*rest, Line("capture", charges, batch, gross, fee, group[0].currency)]
    return lines


def render(provider: str, day: str, lines: list[Line]) -> bytes:
    out = io.StringIO()
    if provider == "acme":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            ["settlement_date", "line", "type", "charge_ids", "operation_id", "amount", "fee",
             "net", "currency"]
        )  # fmt: skip
        for number, line in enumerate(lines, start=1):
            writer.writerow(
                [day, number, line.kind.upper(), "|".join(line.charges), line.operation,
                 line.gross, line.fee, line.gross - line.fee, line.currency]
            )  # fmt: skip
    else:
        names = {"capture": "Settled", "refund": "Refunded", "payout": "Transferred"}
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        writer.writerow(
            ["ReportDate", "RecordType", "PaymentIds", "ReferenceId", "Currency", "GrossAmount",
             "Commission", "NetAmount"]
        )  # fmt: skip
        for line in lines:
            writer.writerow(
                [day, names.get(line.kind, "Adjustment"), " ".join(line.charges), line.operation,
                 line.currency, money.to_decimal(line.gross, line.currency),
                 money.to_decimal(line.fee, line.currency),
                 money.to_decimal(line.gross - line.fee, line.currency)]
            )  # fmt: skip
    return out.getvalue().encode()


def settlement_day(text: str) -> str:
    """A YYYY-MM-DD day, or BadRequestError-like ValueError."""
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValueError(f"{text[:20]!r} is not a YYYY-MM-DD date") from None


def settlement_file(engine: Engine, provider: str, day: str, plan: list[dict[str, Any]]) -> bytes:
    return render(provider, day, planted(true_lines(engine, provider, day), plan, day))
