"""What really happened at the simulated providers: charges, payouts, operations, tokens.

Provider-neutral: `acme.py` and `globex.py` translate their HTTP dialects to these calls
and back. Processing has no await inside, so on one event loop each operation is atomic.
Every operation is stored under (provider, idempotency key) with a fingerprint of its
request; the same key with the same request replays the stored result, with another
request it is refused. State is bounded (oldest operations evicted past `max_records`)
and, when a state file is set, appended to it as JSON lines and replayed at start, so a
restart keeps what really happened.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

Kind = Literal["authorize", "capture", "void", "refund", "payout"]
Outcome = Literal["approved", "declined", "failed"]

FIXED_TOKENS = {
    "tok_visa": "approve",
    "tok_decline": "decline",
    "tok_timeout": "timeout",
    "tok_lost_response": "lost_response",
}
DECLINE_PAN = "4000000000000002"
BANK_DECLINE_TOKEN = "btok_decline"  # noqa: S105 - a fixed test token
MAX_AMOUNT_MINOR = 10**15


@dataclass
class Charge:
    id: str
    provider: str
    amount_minor: int
    currency: str
    captured_minor: int = 0
    refunded_minor: int = 0
    voided: bool = False
    refunds: int = 0


@dataclass
class Operation:
    provider: str
    key: str
    kind: Kind
    fingerprint: str
    outcome: Outcome
    charge_id: str | None
    own_id: str | None
    amount_minor: int | None
    currency: str | None
    code: str | None
    capture: bool = False
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    @property
    def day(self) -> str:
        return self.at[:10]


class KeyReusedError(Exception):
    """The idempotency key was used before for a different request."""


def fingerprint(kind: str, fields: dict[str, Any]) -> str:
    text = json.dumps({"kind": kind, **fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def luhn_ok(pan: str) -> bool:
    if not pan.isdigit() or not 12 <= len(pan) <= 19:
        return False
    total = 0
    for index, char in enumerate(reversed(pan)):
        digit = int(char)
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


class Engine:
    def __init__(self, *, max_records: int, state_file: Path | None) -> None:
        self.max_records = max_records
        self.state_file = state_file
        self.charges: OrderedDict[tuple[str, str], Charge] = OrderedDict()
        self.operations: OrderedDict[tuple[str, str], Operation] = OrderedDict()
        self.tokens: OrderedDict[str, str] = OrderedDict()  # token -> behaviour
        if state_file is not None:
            self._replay(state_file)

    # ---- persistence ----------------------------------------------------------------
    def _replay(self, path: Path) -> None:
        if not path.exists():
            return
        lines = path.read_text().splitlines()
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line after a kill: everything before it stands
            kind = record.pop("t", None)
            if kind == "charge":
                self._keep_charge(Charge(**record), persist=False)
            elif kind == "op":
                self._keep_operation(Operation(**record), persist=False)
            elif kind == "token":
                self.tokens[record["token"]] = record["behaviour"]
        if len(lines) > 4 * self.max_records:
            self._compact(path)

    def _compact(self, path: Path) -> None:
        temporary = path.with_suffix(".compact")
        with temporary.open("w") as out:
            for token, behaviour in self.tokens.items():
                out.write(json.dumps({"t": "token", "token": token, "behaviour": behaviour}) + "\n")
            for charge in self.charges.values():
                out.write(json.dumps({"t": "charge", **asdict(charge)}) + "\n")
            for operation in self.operations.values():
                out.write(json.dumps({"t": "op", **asdict(operation)}) + "\n")
        temporary.replace(path)

    def _persist(self, record: dict[str, Any]) -> None:
        if self.state_file is None:
            return
        with self.state_file.open("a") as out:
            out.write(json.dumps(record) + "\n")

    def _keep_charge(self, charge: Charge, *, persist: bool = True) -> None:
        self.charges[(charge.provider, charge.id)] = charge
        self.charges.move_to_end((charge.provider, charge.id))
        while len(self.charges) > self.max_records:
            self.charges.popitem(last=False)
        if persist:
            self._persist({"t": "charge", **asdict(charge)})

    def _keep_operation(self, operation: Operation, *, persist: bool = True) -> None:
        self.operations[(operation.provider, operation.key)] = operation
        while len(self.operations) > self.max_records:
            self.operations.popitem(last=False)
        if persist:
            self._persist({"t": "op", **asdict(operation)})

    # ---- tokens ---------------------------------------------------------------------
    def tokenize(self, pan: str) -> str | None:
        """Hosted fields: a PAN in, a token out. None when the PAN fails the Luhn check."""
        if not luhn_ok(pan):
            return None
        token = "tok_" + secrets.token_hex(12)
        self.tokens[token] = "decline" if pan == DECLINE_PAN else "approve"
        while len(self.tokens) > self.max_records:
            self.tokens.popitem(last=False)
        self._persist({"t": "token", "token": token, "behaviour": self.tokens[token]})
        return token

    def behaviour(self, token: str) -> str | None:
        return FIXED_TOKENS.get(token) or self.tokens.get(token)

    # ---- operations -----------------------------------------------------------------
    def find(self, provider: str, key: str) -> Operation | None:
        return self.operations.get((provider, key))

    def charge(self, provider: str, charge_id: str | None) -> Charge | None:
        return self.charges.get((provider, charge_id)) if charge_id else None

    def _replayed(self, provider: str, key: str, print_: str) -> Operation | None:
        found = self.find(provider, key)
        if found is not None and found.fingerprint != print_:
            raise KeyReusedError(key)
        return found

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{secrets.token_hex(10)}"

    def authorize(
        self,
        provider: str,
        key: str,
        *,
        token: str,
        amount_minor: int,
        currency: str,
        capture: bool,
        id_prefix: str,
    ) -> Operation:
        print_ = fingerprint(
            "authorize",
            {"token": token, "amount": amount_minor, "currency": currency, "capture": capture},
        )
        found = self._replayed(provider, key, print_)
        if found is not None:
            return found
        behaviour = self.behaviour(token)
        charge = Charge(self._new_id(id_prefix), provider, amount_minor, currency)
        outcome: Outcome
        code: str | None
        if behaviour is None:
            outcome, code = "failed", "unknown_token"
        elif behaviour == "decline":
            outcome, code = "declined", "card_declined"
        else:
            outcome, code = "approved", None
        if outcome == "approved" and capture:
            charge.captured_minor = amount_minor
        operation = Operation(
            provider, key, "authorize", print_, outcome, charge.id, charge.id,
            amount_minor, currency, code, capture,
        )  # fmt: skip
        if outcome == "approved":
            self._keep_charge(charge)
        self._keep_operation(operation)
        return operation

    def capture(
        self, provider: str, key: str, *, charge_id: str, amount_minor: int, currency: str
    ) -> Operation:
        print_ = fingerprint("capture", {"charge": charge_id, "amount": amount_minor})
        found = self._replayed(provider, key, print_)
        if found is not None:
            return found
        charge = self.charge(provider, charge_id)
        code = _refusal(charge, currency, amount_minor, "capture")
        own_id = self._new_id("cap") if code is None else None
        if charge is not None and code is None:
            charge.captured_minor += amount_minor
            self._keep_charge(charge)
        return self._finish(
            provider, key, "capture", print_, code, charge_id, own_id, amount_minor, currency
        )

    def void(self, provider: str, key: str, *, charge_id: str) -> Operation:
        print_ = fingerprint("void", {"charge": charge_id})
        found = self._replayed(provider, key, print_)
        if found is not None:
            return found
        charge = self.charge(provider, charge_id)
        code = _refusal(charge, None, 0, "void")
        if charge is not None and code is None:
            charge.voided = True
            self._keep_charge(charge)
        amount = charge.amount_minor - charge.captured_minor if charge else None
        currency = charge.currency if charge else None
        return self._finish(
            provider, key, "void", print_, code, charge_id, charge_id, amount, currency
        )

    def refund(
        self, provider: str, key: str, *, charge_id: str, amount_minor: int, currency: str
    ) -> Operation:
        print_ = fingerprint("refund", {"charge": charge_id, "amount": amount_minor})
        found = self._replayed(provider, key, print_)
        if found is not None:
            return found
        charge = self.charge(provider, charge_id)
        code = _refusal(charge, currency, amount_minor, "refund")
        own_id = self._new_id("re") if code is None else None
        if charge is not None and code is None:
            charge.refunded_minor += amount_minor
            charge.refunds += 1
            self._keep_charge(charge)
        return self._finish(
            provider, key, "refund", print_, code, charge_id, own_id, amount_minor, currency
        )

    def payout(
        self, provider: str, key: str, *, bank_token: str, amount_minor: int, currency: str,
        id_prefix: str,
    ) -> Operation:  # fmt: skip
        print_ = fingerprint(
            "payout", {"bank": bank_token, "amount": amount_minor, "currency": currency}
        )
        found = self._replayed(provider, key, print_)
        if found is not None:
            return found
        payout_id = self._new_id(id_prefix)
        outcome: Outcome = "declined" if bank_token == BANK_DECLINE_TOKEN else "approved"
        operation = Operation(
            provider, key, "payout", print_, outcome, payout_id, payout_id, amount_minor,
            currency, "account_closed" if outcome == "declined" else None,
        )  # fmt: skip
        self._keep_operation(operation)
        return operation

    def _finish(
        self, provider: str, key: str, kind: Kind, print_: str, code: str | None,
        charge_id: str, own_id: str | None, amount: int | None, currency: str | None,
    ) -> Operation:  # fmt: skip
        operation = Operation(
            provider, key, kind, print_, "failed" if code else "approved", charge_id, own_id,
            amount, currency, code,
        )  # fmt: skip
        self._keep_operation(operation)
        return operation

    def settled_operations(self, provider: str, day: str) -> list[Operation]:
        """Money that moved at `provider` on `day`: approved captures, refunds, payouts."""
        moved = [
            operation
            for (name, _), operation in self.operations.items()
            if name == provider
            and operation.day == day
            and operation.outcome == "approved"
            and (operation.kind in {"capture", "refund", "payout"} or operation.capture)
        ]
        return sorted(moved, key=lambda operation: (operation.at, operation.own_id or ""))


def _refusal(charge: Charge | None, currency: str | None, amount: int, kind: str) -> str | None:
    """Why the provider refuses this operation on this charge, or None."""
    if charge is None:
        return "charge_not_found"
    if currency is not None and currency != charge.currency:
        return "currency_mismatch"
    if amount < 0 or amount > MAX_AMOUNT_MINOR:
        return "invalid_amount"
    if kind == "capture":
        if charge.voided:
            return "charge_voided"
        if amount == 0 or charge.captured_minor + amount > charge.amount_minor:
            return "amount_exceeds_authorized"
    elif kind == "void":
        if charge.voided or charge.captured_minor > 0:
            return "charge_not_voidable"
    elif kind == "refund" and (
        amount == 0 or charge.refunded_minor + amount > charge.captured_minor
    ):
        return "amount_exceeds_captured"
    return None
