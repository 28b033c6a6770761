"""The evidence bundle a run leaves behind: it outlives the run's stack.

After the run, the pipeline waits (bounded) for a signed checkpoint that covers every
record it wrote, then stores in `reports/evidence/`:

- `bundle.json`: the evidence service's offline bundle for the run's time window (the
  records, each with its Merkle inclusion proof, the neighbours that prove nothing was cut
  off, the signed checkpoint and the public keys), as `GET /v1/exports/bundle` gives it;
- `attachments/sha256/<hex>`: every report those records reference, as stored.

`python -m pipeline verify-bundle reports/evidence` checks it with nothing but the files:
`evidence verify` for the records, proofs and checkpoint signature, then each attachment's
digest. The evidence service's own verifier is used, never a second implementation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pipeline.workspace import run_tool

CHECKPOINT_WAIT_S = 90.0
CHECKPOINT_POLL_S = 0.5
MAX_ATTACHMENTS = 500
VERIFY_TIMEOUT_S = 300


class BundleError(RuntimeError):
    """The bundle could not be exported, or it does not verify."""


class EvidenceReader(Protocol):
    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Appended:
    """What the evidence service answered for one record the run wrote."""

    id: str
    seq: int
    collected_at: str


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def wait_for_checkpoint(reader: EvidenceReader, seq: int, timeout_s: float) -> dict[str, Any]:
    """The latest checkpoint once it covers `seq`. Raises BundleError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            checkpoint = reader.get("/v1/checkpoints/latest")
        except RuntimeError:
            checkpoint = {}
        if int(checkpoint.get("size", 0)) > seq:
            return checkpoint
        if time.monotonic() >= deadline:
            raise BundleError(f"no checkpoint covered record seq {seq} within {timeout_s:.0f} s")
        time.sleep(CHECKPOINT_POLL_S)


def export(
    reader: EvidenceReader,
    appended: Sequence[Appended],
    target: Path,
    *,
    checkpoint_wait_s: float = CHECKPOINT_WAIT_S,
) -> Path:
    """Write the bundle covering `appended` into `target`; return the bundle file."""
    if not appended:
        raise BundleError("the run wrote no evidence: there is nothing to export")
    wait_for_checkpoint(reader, max(a.seq for a in appended), checkpoint_wait_s)
    times = sorted(_time(a.collected_at) for a in appended)
    window = {
        "from": _rfc3339(times[0]),
        # The window's end is exclusive: one microsecond past the last record.
        "to": _rfc3339(times[-1] + timedelta(microseconds=1)),
    }
    try:
        bundle = reader.get("/v1/exports/bundle", window)
    except RuntimeError as error:
        raise BundleError(f"bundle export refused: {error}") from None
    bundled = {str(e.get("record", {}).get("id")) for e in bundle.get("records", [])}
    missing = sorted({a.id for a in appended} - bundled)
    if missing:
        raise BundleError(f"the exported bundle lacks records {missing[:5]}")
    target.mkdir(parents=True, exist_ok=True)
    bundle_file = target / "bundle.json"
    bundle_file.write_text(json.dumps(bundle, indent=1))
    for digest in sorted(_attachment_digests(bundle))[:MAX_ATTACHMENTS]:
        try:
            stored = reader.get(f"/v1/attachments/{digest}")
        except RuntimeError as error:
            raise BundleError(f"attachment {digest}: {error}") from None
        content = base64.b64decode(stored["content_base64"])
        if "sha256:" + hashlib.sha256(content).hexdigest() != digest:
            raise BundleError(f"attachment {digest} came back with other content")
        path = target / "attachments" / digest.replace(":", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return bundle_file


def _attachment_digests(bundle: dict[str, Any]) -> set[str]:
    return {
        str(ref.get("digest"))
        for entry in bundle.get("records", [])
        for ref in (entry.get("record") or {}).get("attachments") or []
    }


def verify(folder: Path, key: Path | None = None) -> list[str]:
    """Problems with the bundle in `folder` (empty when it verifies), offline."""
    folder = folder.resolve()
    bundle_file = folder / "bundle.json"
    argv = [str(Path(sys.executable).parent / "evidence"), "verify", str(bundle_file)]
    if key is not None:
        argv += ["--key", str(key.resolve())]
    checked = run_tool(argv, cwd=folder, timeout_s=VERIFY_TIMEOUT_S)
    problems = [] if checked.exit_code == 0 else [checked.stderr.strip() or checked.stdout]
    try:
        bundle = json.loads(bundle_file.read_text())
    except (OSError, ValueError) as error:
        return [*problems, f"bundle.json unreadable: {error}"]
    for digest in sorted(_attachment_digests(bundle)):
        path = folder / "attachments" / digest.replace(":", "/")
        if not path.is_file():
            problems.append(f"attachment {digest} is missing")
        elif "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"attachment {digest} does not match its digest")
    return problems
