"""`moneypath call`: one signed API request from a shell, for operators and runbooks.

Every `/v1` write needs a token, an RFC 9421 signature and an Idempotency-Key, which curl
cannot make. This reads a credentials file (written by `moneypath clients create --out`),
sends the request through `app.platform.signed_client` and prints:
- on stderr, one readable line: status, problem `code` and detail, idempotency key,
  request id;
- on stdout, the response body as indented JSON, or with `--field NAME` only that field
  (so a shell can capture an id: `ACC=$(moneypath call ... --field id)`).

Exit status: 0 for 2xx, 1 for any other answer, 2 when the call could not be made.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx

from app.platform.client_credentials import ClientCredentials, CredentialsFileError
from app.platform.client_tokens import TokenRequestError
from app.platform.signed_client import SignedClient

CREDENTIALS_ENV = "MONEYPATH_CREDENTIALS"
DEFAULT_API_URL = "http://127.0.0.1:8000"
# Enough for every documented body; a bigger one is a typo, not a request.
MAX_BODY_BYTES = 1024 * 1024


class CallError(Exception):
    """The request could not be made: bad arguments, credentials or an unreachable API."""


def write_credentials(
    out: Path,
    *,
    api_url: str,
    client_id: str,
    client_secret: str,
    key_id: str,
    key_path: Path,
) -> None:
    """Write a credentials file readable by its owner only (0600); never overwrite one."""
    key_reference = (
        key_path.name if key_path.resolve().parent == out.resolve().parent else str(key_path)
    )
    document = {
        "api_url": api_url,
        "client_id": client_id,
        "client_secret": client_secret,
        "key_id": key_id,
        "key_path": key_reference,
    }
    # O_EXCL: a second `clients create` must not silently replace the first client's secret.
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")


def _api_url(args: argparse.Namespace, credentials_path: Path) -> str:
    if args.api_url:
        return str(args.api_url)
    try:
        document = json.loads(credentials_path.read_text())
    except (OSError, ValueError):
        document = {}
    stored = document.get("api_url") if isinstance(document, dict) else None
    return str(stored or os.environ.get("PUBLIC_BASE_URL") or DEFAULT_API_URL)


def _body(raw: str | None) -> bytes | None:
    if raw is None:
        return None
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise CallError(f"--json is larger than {MAX_BODY_BYTES} bytes")
    try:
        json.loads(raw)
    except ValueError as error:
        raise CallError(f"--json is not valid JSON: {error}") from None
    # The exact bytes are sent (and digested), so what the operator typed is what is signed.
    return raw.encode()


def status_line(response: httpx.Response) -> str:
    """`HTTP 422 Unprocessable Entity  code=insufficient_funds  ...` for humans."""
    try:
        phrase = HTTPStatus(response.status_code).phrase
    except ValueError:
        phrase = ""
    parts = [f"HTTP {response.status_code} {phrase}".rstrip()]
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        problem = _json(response)
        if isinstance(problem, dict):
            parts.append(f"code={problem.get('code')}")
            if problem.get("detail"):
                parts.append(f"detail={problem['detail']!r}")
    if response.headers.get("retry-after"):
        parts.append(f"retry-after={response.headers['retry-after']}")
    if response.headers.get("idempotent-replayed"):
        parts.append("replayed=true")
    key = response.request.headers.get("idempotency-key")
    if key:
        parts.append(f"idempotency-key={key}")
    if response.headers.get("x-request-id"):
        parts.append(f"request-id={response.headers['x-request-id']}")
    return "  ".join(parts)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def run_call(args: argparse.Namespace) -> int:
    raw_path = args.credentials or os.environ.get(CREDENTIALS_ENV)
    if not raw_path:
        print(f"moneypath call: give --credentials FILE or set {CREDENTIALS_ENV}", file=sys.stderr)
        return 2
    credentials_path = Path(raw_path)
    try:
        credentials = ClientCredentials.from_file(credentials_path)
        body = _body(args.json)
        with SignedClient(credentials, base_url=_api_url(args, credentials_path)) as client:
            headers = {"Content-Type": "application/json"} if body is not None else None
            response = client.request(
                args.method.upper(),
                args.path,
                content=body,
                headers=headers,
                idempotency_key=args.idempotency_key,
            )
    except (CredentialsFileError, CallError, TokenRequestError, OSError) as error:
        print(f"moneypath call: {error}", file=sys.stderr)
        return 2
    except httpx.HTTPError as error:
        print(f"moneypath call: API unreachable: {error!r}", file=sys.stderr)
        return 2
    print(status_line(response), file=sys.stderr, flush=True)
    document = _json(response)
    if args.field:
        value = document.get(args.field) if isinstance(document, dict) else None
        if value is not None:
            print(value if isinstance(value, str) else json.dumps(value))
    elif document is not None:
        print(json.dumps(document, indent=2))
    elif response.text:
        print(response.text)
    return 0 if response.is_success else 1


def add_call_parser(commands: Any) -> None:
    call = commands.add_parser(
        "call",
        help="send one signed API request (token, RFC 9421 signature, Idempotency-Key)",
    )
    call.add_argument("method", help="GET, POST, PUT, PATCH or DELETE")
    call.add_argument("path", help="for example /v1/ledger/accounts")
    call.add_argument("--json", help="request body as JSON text, or @FILE")
    call.add_argument(
        "--credentials",
        help=f"credentials file from `clients create --out` (or ${CREDENTIALS_ENV})",
    )
    call.add_argument("--idempotency-key", help="reuse a key to retry a write safely")
    call.add_argument("--api-url", help="override the API base URL from the credentials file")
    call.add_argument("--field", help="print only this top-level field of the response body")
    call.set_defaults(run=run_call)
