"""Waivers: versioned files (TOML or JSON) that suppress one named finding until they expire.

Each file holds one waiver:

    id = "WVR-2026-001"
    owner = "alice@example.com"
    approved_by = "bob@example.com"
    approved_at = 2026-11-15T00:00:00Z
    reason = "why the finding is acceptable for now"
    expires = 2026-12-31T00:00:00Z     # at most 90 days after approved_at
    [scope]
    gate = "pip-audit"
    finding = "PYSEC-2019-217"     # the advisory id or alias, bandit test id, checkov check id
    package = "jinja2"             # optional: pip-audit package; `path` for bandit/checkov

This module only reads them. Whether a waiver applies (approved by another person, at most
90 days long, unexpired, in scope) is decided by the Rego policy, so expiry is enforced
where every other verdict is made; the policy also warns 14 days before a waiver expires.
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

MAX_WAIVERS = 1000


class WaiverFileError(ValueError):
    """A waiver file cannot be parsed; the run fails instead of guessing."""


def _rfc3339(value: object) -> object:
    # TOML gives datetimes; the policy compares RFC 3339 strings with time.parse_rfc3339_ns.
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return f"{value.isoformat()}T00:00:00Z"
    return value


def load(directory: Path) -> list[dict[str, Any]]:
    """Every waiver under `directory` (`*.toml`, `*.json`), with `expires` as RFC 3339.

    Raises WaiverFileError on an unreadable file or a duplicate id.
    """
    if not directory.is_dir():
        return []
    paths = sorted([*directory.glob("*.toml"), *directory.glob("*.json")])
    if len(paths) > MAX_WAIVERS:
        raise WaiverFileError(f"more than {MAX_WAIVERS} waiver files")
    waivers: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in paths:
        try:
            raw = path.read_text()
            data = tomllib.loads(raw) if path.suffix == ".toml" else json.loads(raw)
        except (OSError, ValueError) as error:
            raise WaiverFileError(f"{path.name}: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("scope"), dict):
            raise WaiverFileError(f"{path.name}: a waiver is a table with a [scope] table")
        waiver_id = str(data.get("id", ""))
        if not waiver_id or waiver_id in seen:
            raise WaiverFileError(f"{path.name}: missing or duplicate id {waiver_id!r}")
        seen.add(waiver_id)
        times = {key: _rfc3339(data.get(key)) for key in ("approved_at", "expires")}
        waivers.append({**data, **times, "file": path.name})
    return waivers
