"""Which writers' records count: the policy `moneypath.evidence.trust`, asked through OPA.

Any client with `evidence:write` may add records (of every type but the few the policy
keeps to their trusted writers, such as `ledger.checkpoint`), but only records whose verified writer
(`submitted_by.client_id`) the policy trusts for the record's type decide an OSCAL
finding or a promotion. The trusted writers are a data document under `policies/trust/`
(reviewed like code) plus registrations made at run time through OPA's data API, which
is how the dev stack, the tests and CI's own stack register the client they just created
(`evidence trust register`). A production OPA loads signed bundles, whose roots refuse
such writes, so there only the reviewed document counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from app.platform.opa import Opa, OpaUnavailableError
from evidence import records

TRUST_PACKAGE = "moneypath/evidence/trust/verdicts"
ADMIT_PACKAGE = "moneypath/evidence/trust/admit"
REGISTRATIONS_PATH = "trust/registered_evidence_submitters"
REGISTER_TIMEOUT_S = 5.0
MAX_PATTERNS = 32
# A type pattern is a record type with glob wildcards: `ci.*` (one segment), `ci.**` (any).
TYPE_PATTERN = re.compile(r"^[a-z*][a-z0-9_.*-]{0,63}$")
CLIENT_ID = re.compile(r"^cli_[A-Za-z0-9_-]{1,60}$")


class SubmitterTrust:
    """Asks the policy, once per export, which (type, writer) pairs are trusted."""

    def __init__(self, opa: Opa) -> None:
        self._opa = opa

    async def admits(self, record_type: str, client_id: str) -> bool:
        """May `client_id` append a record of `record_type` at all? False only for a type
        the policy keeps to its trusted writers (`ledger.checkpoint`) and another writer.

        Raises OpaUnavailableError (503) when the policy cannot answer.
        """
        document = await self._opa.evaluate(
            ADMIT_PACKAGE, {"type": record_type, "client_id": client_id}
        )
        verdict = document.get("result")
        if not isinstance(verdict, bool):
            raise OpaUnavailableError("the trust policy gave no write verdict")
        return verdict

    async def trusted_records(self, items: Sequence[Mapping[str, Any]]) -> frozenset[str]:
        """The ids of the records in `items` whose writer is trusted for their type.

        Raises OpaUnavailableError (503) when the policy cannot answer: no answer is
        never trust.
        """
        pairs: dict[tuple[str, str], None] = {}
        for record in items:
            submitter = records.submitter_of(record)
            if submitter is not None:
                pairs[(str(record["type"]), submitter.client_id)] = None
        if not pairs:
            return frozenset()
        ordered = list(pairs)
        document = await self._opa.evaluate(
            TRUST_PACKAGE,
            {"pairs": [{"type": kind, "client_id": client_id} for kind, client_id in ordered]},
        )
        verdicts = document.get("result")
        if not isinstance(verdicts, list) or len(verdicts) != len(ordered):
            raise OpaUnavailableError("the trust policy gave no verdict for every writer")
        trusted_pairs = {pair for pair, verdict in zip(ordered, verdicts, strict=True) if verdict}
        trusted: set[str] = set()
        for record in items:
            submitter = records.submitter_of(record)
            if submitter is not None and (str(record["type"]), submitter.client_id) in (
                trusted_pairs
            ):
                trusted.add(str(record["id"]))
        return frozenset(trusted)


def check_registration(client_id: str, type_patterns: Sequence[str]) -> list[str]:
    """Validate a registration; returns the patterns. Raises ValueError naming the problem."""
    if not CLIENT_ID.match(client_id):
        raise ValueError(f"{client_id!r} is not a client id")
    patterns = list(dict.fromkeys(type_patterns))
    if not 1 <= len(patterns) <= MAX_PATTERNS:
        raise ValueError(f"give 1 to {MAX_PATTERNS} record type patterns")
    for pattern in patterns:
        if not TYPE_PATTERN.match(pattern):
            raise ValueError(f"{pattern!r} is not a record type pattern")
    return patterns


def register_submitter(opa_url: str, client_id: str, type_patterns: Sequence[str]) -> None:
    """Trust `client_id` for records whose type matches one of `type_patterns`.

    Writes through OPA's data API (dev stack, tests, CI). Raises ValueError for a bad
    registration and httpx.HTTPError when OPA refuses or cannot be reached.
    """
    patterns = check_registration(client_id, type_patterns)
    response = httpx.put(
        f"{opa_url.rstrip('/')}/v1/data/{REGISTRATIONS_PATH}/{quote(client_id, safe='')}",
        json=patterns,
        timeout=REGISTER_TIMEOUT_S,
    )
    response.raise_for_status()
