"""The API's RFC 9421 check (its own signature base) against the independent
`http-message-signatures` signer, through the real app with real PostgreSQL, OPA and
OpenBao: whatever the library signs over the components our profile allows is accepted,
any change after signing is 401 `invalid_signature`, and so is every component the profile
cannot sign (never a 500)."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSigner,
    MappingKeyResolver,
    algorithms,
)

from tests.integration.ledger.helpers import code, key
from tests.support.api_client import ApiClient, ClientFactory

PATH = "/v1/ledger/accounts"
EVERY_COMPONENT = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@path",
    "@query",
    "@request-target",
    "content-digest",
    "idempotency-key",
    "content-type",
    "x-repeated",
]


@pytest.fixture(scope="module")
def client(client_factory: ClientFactory) -> ApiClient:
    return client_factory(scopes=["ledger:write", "ledger:read"])


@dataclass
class _Message:
    method: str
    url: str
    headers: httpx.Headers


def _unsigned(
    client: ApiClient, target: str = PATH, extra: list[tuple[str, Any]] | None = None
) -> httpx.Request:
    body = {"code": code(), "currency": "USD", "normal_balance": "credit"}
    headers: list[tuple[str, Any]] = [
        ("Authorization", f"Bearer {client.token()}"),
        ("Idempotency-Key", key()),
        ("X-Repeated", "one"),
        ("X-Repeated", "two, three"),
        *(extra or []),
    ]
    return client.http.build_request("POST", target, json=body, headers=headers)


def _library_signed(
    client: ApiClient,
    covered: list[str],
    *,
    target: str = PATH,
    signed_method: str = "POST",
    signed_url: str | None = None,
) -> httpx.Request:
    """Signed by the library over `covered`, as if the message were `signed_method` to
    `signed_url` (by default exactly what is sent)."""
    request = _unsigned(client, target)
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(
            public_keys={}, private_keys={client.key_id: client.private_key}
        ),
    )
    signer.sign(
        _Message(signed_method, signed_url or str(request.url), request.headers),
        key_id=client.key_id,
        created=datetime.now(UTC),
        nonce=secrets.token_urlsafe(24),
        label="sig1",
        covered_component_ids=covered,
        body=request.content,
    )
    return request


def _code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return str(response.json()["code"])


@pytest.mark.parametrize(
    "covered",
    [
        EVERY_COMPONENT,
        ["x-repeated", "@request-target", "idempotency-key", "@method", "@target-uri"],
        ["@target-uri", "@scheme", "@authority", "@method", "idempotency-key", "@query"],
    ],
)
def test_request_is_accepted_when_the_library_signs_any_component_set_the_profile_allows(
    client: ApiClient, covered: list[str]
) -> None:
    response = client.send(_library_signed(client, covered, target=PATH + "?probe=1&x=%20y"))
    assert response.status_code == 201, response.text


def test_request_is_accepted_when_signed_through_client_signing_with_extra_headers(
    client: ApiClient,
) -> None:
    response = client.post(
        PATH,
        json={"code": code(), "currency": "USD", "normal_balance": "credit"},
        idempotency_key=key(),
        headers={"X-Unsigned": "not covered, ignored"},
    )
    assert response.status_code == 201, response.text


def test_request_is_accepted_when_signature_input_has_the_signers_own_spacing(
    client: ApiClient,
) -> None:
    request = _library_signed(client, EVERY_COMPONENT)
    canonical = request.headers["signature-input"]
    spaced = canonical.replace('" "', '"   "').replace("(", "(  ").replace(";", ";  ")
    assert spaced != canonical
    request.headers["Signature-Input"] = spaced
    response = client.send(request)
    assert response.status_code == 201, response.text


def _flip_field(name: str, value: str) -> Any:
    def flip(request: httpx.Request) -> None:
        request.headers[name] = value

    return flip


def _flip_signature_input(old: str, new: str) -> Any:
    def flip(request: httpx.Request) -> None:
        value = request.headers["signature-input"]
        assert old in value
        request.headers["Signature-Input"] = value.replace(old, new, 1)

    return flip


def _flip_created(request: httpx.Request) -> None:
    value = request.headers["signature-input"]
    created = value.split("created=")[1].split(";")[0]
    request.headers["Signature-Input"] = value.replace(
        f"created={created}", f"created={int(created) - 1}"
    )


def _flip_signature_byte(request: httpx.Request) -> None:
    value = request.headers["signature"]
    position = len("sig1=:") + 3
    replacement = "A" if value[position] != "A" else "B"
    request.headers["Signature"] = value[:position] + replacement + value[position + 1 :]


@pytest.mark.parametrize(
    "flip",
    [
        _flip_field("Idempotency-Key", "idem-changed-after-signing"),
        _flip_field("Content-Type", "application/json; charset=utf-8"),
        _flip_field("X-Repeated", "one, three, two"),
        _flip_field("Content-Digest", ContentDigest.create(b"{}")),
        _flip_signature_input('"@scheme" ', ""),
        _flip_signature_input('alg="ed25519"', 'alg="ed25519";tag="t"'),
        _flip_signature_input("nonce=", "nonce=x"),
        _flip_created,
        _flip_signature_byte,
    ],
    ids=[
        "idempotency-key",
        "content-type",
        "repeated-lines",
        "content-digest",
        "covered-list",
        "added-param",
        "nonce",
        "created",
        "signature",
    ],
)
def test_request_is_401_invalid_signature_when_anything_signed_changes_after_signing(
    client: ApiClient, flip: Any
) -> None:
    request = _library_signed(client, EVERY_COMPONENT)
    flip(request)
    response = client.send(request)
    assert response.status_code == 401
    assert _code(response) == "invalid_signature"


@pytest.mark.parametrize(
    ("covered", "target", "method", "url"),
    [
        (["@method", "@target-uri"], PATH, "PUT", None),
        (
            ["@method", "@target-uri", "@query"],
            PATH + "?probe=1",
            None,
            "{base}" + PATH + "?probe=2",
        ),
        (["@method", "@target-uri", "@path"], PATH, None, "{base}/v1/ledger/accounts/"),
        (["@method", "@target-uri", "@authority"], PATH, None, "http://other.example" + PATH),
        (["@method", "@target-uri", "@scheme"], PATH, None, "{https}" + PATH),
        (["@method", "@target-uri", "@request-target"], PATH + "?a", None, "{base}" + PATH),
    ],
    ids=["method", "query", "path", "authority", "scheme", "request-target"],
)
def test_request_is_401_invalid_signature_when_signed_for_another_method_or_target(
    client: ApiClient, covered: list[str], target: str, method: str | None, url: str | None
) -> None:
    base = str(client.http.base_url).rstrip("/")
    request = _library_signed(
        client,
        [*covered, "idempotency-key"],
        target=target,
        signed_method=method or "POST",
        signed_url=url.format(base=base, https=base.replace("http://", "https://", 1))
        if url
        else None,
    )
    response = client.send(request)
    assert response.status_code == 401
    assert _code(response) == "invalid_signature"


def _hand_signed(
    client: ApiClient, extra_covered: list[str], extra_headers: list[tuple[str, Any]]
) -> httpx.Request:
    """Signed over the lenient base a careless verifier would build: every required
    component right, plus `extra_covered` with whatever value the header has (or none)."""
    request = _unsigned(client, extra=extra_headers)
    request.headers["Content-Digest"] = ContentDigest.create(request.content)
    covered = ["@method", "@target-uri", "content-digest", "idempotency-key", *extra_covered]
    params = (
        f';created={int(datetime.now(UTC).timestamp())};keyid="{client.key_id}"'
        f';nonce="{secrets.token_urlsafe(24)}";alg="ed25519"'
    )
    inner = "(" + " ".join(f'"{name}"' for name in covered) + ")" + params
    raw = {name.lower(): value for name, value in request.headers.raw}
    values = {
        "@method": "POST",
        "@target-uri": str(request.url),
        "@signature-params": inner,
        "@status": "200",
        "@query-param": "",
    }
    lines = []
    for name in covered:
        value = values.get(name)
        if value is None:
            value = raw.get(name.lower().encode(), b"").decode("latin-1").strip()
        lines.append(f'"{name}": {value}')
    lines.append(f'"@signature-params": {inner}')
    signature = client.private_key.sign("\n".join(lines).encode("latin-1"))
    request.headers["Signature-Input"] = f"sig1={inner}"
    request.headers["Signature"] = f"sig1=:{base64.b64encode(signature).decode()}:"
    return request


@pytest.mark.parametrize(
    ("covered", "headers"),
    [
        (["@status"], []),
        (["@query-param"], []),
        (["@signature-params"], []),
        (["@method"], []),
        (["idempotency-key"], []),
        (["X-Extra"], [("X-Extra", "v")]),
        (["x-absent"], []),
        (["x-extra"], [("X-Extra", "a\r\nb")]),
        (["x-extra"], [("X-Extra", "a\nb")]),
        (["x-extra"], [("X-Extra", "a\x01b")]),
        (["x-extra"], [("X-Extra", b"caf\xe9")]),
    ],
    ids=[
        "status",
        "query-param-without-name",
        "signature-params",
        "repeated-derived",
        "repeated-field",
        "uppercase-name",
        "absent-field",
        "crlf-value",
        "lf-value",
        "control-char-value",
        "non-ascii-value",
    ],
)
def test_request_is_401_invalid_signature_when_it_covers_what_the_profile_cannot_sign(
    client: ApiClient, covered: list[str], headers: list[tuple[str, Any]]
) -> None:
    response = client.send(_hand_signed(client, covered, headers))
    assert response.status_code == 401, response.text
    assert _code(response) == "invalid_signature"


def test_hand_signed_request_is_accepted_when_it_covers_only_what_the_profile_signs(
    client: ApiClient,
) -> None:
    """The refusals above are about their one odd component: the same hand-made signature
    over an ordinary extra field goes through."""
    response = client.send(_hand_signed(client, ["x-extra"], [("X-Extra", "plain value")]))
    assert response.status_code == 201, response.text


def test_live_api_accepts_every_component_and_refuses_an_odd_value_when_sent_over_the_wire(
    client_factory: ClientFactory, api_http: httpx.Client
) -> None:
    """Through uvicorn's own HTTP parser, where the raw path, query and header lines come
    from the wire rather than from the test client."""
    live = client_factory(scopes=["ledger:write"], http=api_http)
    accepted = live.send(_library_signed(live, EVERY_COMPONENT, target=PATH + "?a=%20b&c"))
    refused = live.send(_hand_signed(live, ["x-extra"], [("X-Extra", b"caf\xe9")]))

    assert accepted.status_code == 201, accepted.text
    assert refused.status_code == 401
    assert _code(refused) == "invalid_signature"


@pytest.mark.parametrize("field", ["Signature-Input", "Signature"])
def test_request_is_401_invalid_signature_when_a_signature_field_repeats_the_label(
    client: ApiClient, field: str
) -> None:
    """RFC 8941 would let the last `sig1` win, and the last one here is the valid one; a
    proxy reading the first would check another signature than we do."""
    request = _library_signed(client, EVERY_COMPONENT)
    other = _library_signed(client, ["@method", "@target-uri", "content-digest"])
    request.headers[field] = f"{other.headers[field]}, {request.headers[field]}"
    response = client.send(request)
    assert response.status_code == 401
    assert _code(response) == "invalid_signature"
