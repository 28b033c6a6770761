"""Our RFC 9421 signature base against the RFC's own vector and the independent
`http-message-signatures` library (its signer builds the base it signs; we must build the
same bytes from the Signature-Input alone), and the components our profile refuses."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import http_sf
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver, algorithms

from app.platform.request_auth import InvalidSignatureError
from app.platform.request_auth.signature_base import (
    PublicOrigin,
    RequestComponents,
    check_ed25519,
    field_lines,
    signature_base,
)

# RFC 9421 Appendix B.1.4, test-key-ed25519 (the public half).
RFC_KEY_PEM = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""
# RFC 9421 Appendix B.2, the test request's header fields.
RFC_REQUEST_HEADERS = [
    (b"host", b"example.com"),
    (b"date", b"Tue, 20 Apr 2021 02:07:55 GMT"),
    (b"content-type", b"application/json"),
    (
        b"content-digest",
        b"sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvR"
        b"wEmTHWXvJwew==:",
    ),
    (b"content-length", b"18"),
]
RFC_B26_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
RFC_B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1"
    "u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
)
RFC_B26_BASE = (
    '"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    '"@method": POST\n'
    '"@path": /foo\n'
    '"@authority": example.com\n'
    '"content-type": application/json\n'
    '"content-length": 18\n'
    '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" '
    '"content-length");created=1618884473;keyid="test-key-ed25519"'
)


def _ours(
    origin: str,
    method: str,
    raw_path: str,
    query: str,
    headers: list[tuple[bytes, bytes]],
    signature_input: str,
    label: str,
) -> tuple[bytes, Any]:
    """Our base for the member `label` of `signature_input`, as the verifier builds it."""
    member = http_sf.parse(signature_input.encode(), tltype="dictionary")[label]  # type: ignore[index]
    covered = [name for name, _ in member[0]]
    components = RequestComponents(
        PublicOrigin(origin), method, raw_path, query, field_lines(headers)
    )
    return signature_base(components, covered, http_sf.ser([member])), member


def test_rfc9421_b26_ed25519_vector_verifies_when_our_builder_makes_the_base() -> None:
    """RFC 9421 Appendix B.2.6 ("Signing a Request Using ed25519"): the B.2 test request,
    key test-key-ed25519 (B.1.4). Our profile would refuse the request itself (label
    sig-b26, no nonce, created in 2021), so the base builder and the Ed25519 check are
    tested directly."""
    key = load_pem_public_key(RFC_KEY_PEM)
    signature = http_sf.parse(RFC_B26_SIGNATURE.encode(), tltype="dictionary")["sig-b26"][0]  # type: ignore[index]

    base, _ = _ours(
        "https://example.com",
        "POST",
        "/foo",
        "param=Value&Pet=dog",
        RFC_REQUEST_HEADERS,
        RFC_B26_INPUT,
        "sig-b26",
    )

    assert base.decode() == RFC_B26_BASE
    check_ed25519(key, signature, base)  # type: ignore[arg-type]
    with pytest.raises(InvalidSignatureError):
        check_ed25519(key, signature, base.replace(b"/foo", b"/bar"))  # type: ignore[arg-type]
    with pytest.raises(InvalidSignatureError):
        check_ed25519(key, bytes([signature[0] ^ 1]) + signature[1:], base)  # type: ignore[arg-type,index]


@dataclass
class _Message:
    method: str
    url: str
    headers: httpx.Headers


COMPONENT_SETS = [
    ["@method", "@target-uri"],
    ["@method", "@authority", "@path", "@query", "@scheme", "content-digest"],
    ["@request-target", "@method", "x-repeated", "content-type", "@target-uri"],
    ["x-spaced", "@query", "@authority", "idempotency-key", "@method", "@target-uri"],
]


@pytest.mark.parametrize("covered", COMPONENT_SETS)
@pytest.mark.parametrize(
    ("origin", "path"),
    [
        ("https://api.example.com", "/v1/ledger/transactions?limit=5&x=%20a"),
        ("http://API.Example.com:8080", "/v1/clients"),
        ("https://api.example.com:443/prefix", "/v1/a%2Fb;p=1?q"),
    ],
)
def test_our_base_equals_the_library_signers_when_it_signs_the_same_request(
    covered: list[str], origin: str, path: str
) -> None:
    key = Ed25519PrivateKey.generate()
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"k1": key}),
    )
    headers = httpx.Headers(
        [
            ("Content-Type", "application/json"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two,three"),
            ("X-Spaced", "\t inner\tvalue  "),
            ("Idempotency-Key", "mp-1"),
        ]
    )
    message = _Message("POST", origin.rstrip("/") + path, headers)
    signer.sign(
        message,
        key_id="k1",
        created=datetime.now(UTC),
        nonce="n" * 20,
        label="sig1",
        covered_component_ids=covered,
        body=b'{"a": 1}',
    )
    raw_path, _, query = path.partition("?")
    wire = [(name.encode(), value.encode()) for name, value in headers.multi_items()]
    # What a server reads: each field line on its own, its outer whitespace kept.
    wire = [(n, b"\t inner\tvalue  " if n == b"x-spaced" else v) for n, v in wire]

    signature_input = headers["signature-input"]
    member = http_sf.parse(signature_input.encode(), tltype="dictionary")["sig1"]  # type: ignore[index]

    base, _ = _ours(origin, "POST", raw_path, query, wire, signature_input, "sig1")

    # The signer's own base for the same input, byte for byte, and its signature verifies.
    prepared = signer.prepare(
        message,
        key_id="k1",
        created=datetime.fromtimestamp(member[1]["created"], UTC),  # type: ignore[index,call-overload]
        nonce="n" * 20,
        label="sig1",
        covered_component_ids=[name for name, _ in member[0]],  # type: ignore[misc,union-attr]
        use_existing_digest=True,
    )
    assert base == prepared.signature_base
    signature = http_sf.parse(headers["signature"].encode(), tltype="dictionary")["sig1"][0]  # type: ignore[index]
    check_ed25519(key.public_key(), signature, base)


def _base_of(covered: list[str], headers: list[tuple[bytes, bytes]] | None = None) -> bytes:
    components = RequestComponents(
        PublicOrigin("https://api.example.com"),
        "POST",
        "/v1/clients",
        "",
        field_lines(headers if headers is not None else [(b"idempotency-key", b"k")]),
    )
    return signature_base(components, covered, "()")


@pytest.mark.parametrize(
    "covered",
    [
        ["@status"],
        ["@query-param"],
        ["@signature-params"],
        ["@method", "@method"],
        ["idempotency-key", "idempotency-key"],
        ["Idempotency-Key"],
        ["x-absent"],
        ["@unknown"],
        [""],
        ["two words"],
    ],
)
def test_component_is_refused_as_invalid_signature_when_the_profile_cannot_sign_it(
    covered: list[str],
) -> None:
    with pytest.raises(InvalidSignatureError):
        _base_of(covered)


@pytest.mark.parametrize(
    "value", [b"a\r\nb", b"a\nb", b"a\rb", b"a\x00b", b"a\x7fb", b"a\x1bb", b"caf\xe9"]
)
def test_field_value_is_refused_when_it_has_control_or_non_ascii_characters(value: bytes) -> None:
    with pytest.raises(InvalidSignatureError):
        _base_of(["x-field"], [(b"x-field", value)])


def test_derived_value_is_refused_when_the_raw_path_has_characters_a_base_cannot_carry() -> None:
    components = RequestComponents(
        PublicOrigin("https://api.example.com"), "POST", "/v1/caf\xe9", "", {}
    )
    with pytest.raises(InvalidSignatureError):
        signature_base(components, ["@path"], "()")


def test_field_lines_are_trimmed_and_joined_in_order_when_a_field_repeats() -> None:
    base = _base_of(
        ["x-field", "@authority", "@scheme", "@query"],
        [(b"X-Field", b" one "), (b"other", b"x"), (b"x-field", b"\ttwo,\tthree\t")],
    )
    assert base == (
        b'"x-field": one, two,\tthree\n"@authority": api.example.com\n'
        b'"@scheme": https\n"@query": ?\n"@signature-params": ()'
    )


def test_authority_drops_the_default_port_and_lowercases_the_host_when_the_origin_has_them() -> (
    None
):
    assert PublicOrigin("HTTPS://API.Example.com:443/").authority == "api.example.com"
    assert PublicOrigin("http://API.Example.com:8443").authority == "api.example.com:8443"
    assert PublicOrigin("http://[::1]:80").authority == "[::1]"
    assert PublicOrigin("HTTPS://x.example").scheme == "https"


def test_signature_bytes_are_refused_when_the_member_is_not_a_byte_sequence() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidSignatureError):
        check_ed25519(key.public_key(), base64.b64encode(key.sign(b"x")).decode(), b"x")


@pytest.mark.parametrize("name", ["@status", "@signature-params", 'x"y', "x y"])
def test_component_is_refused_when_a_header_of_that_odd_name_arrived(name: str) -> None:
    """A server that passes such a header name on must not turn it into a base line."""
    with pytest.raises(InvalidSignatureError):
        _base_of([name], [(name.encode(), b"200")])


_SIGNED = {
    "origin": "https://api.example.com",
    "method": "POST",
    "raw_path": "/v1/clients",
    "query": "a=1",
    "headers": [(b"x-field", b"v")],
}


@pytest.mark.parametrize(
    ("component", "change"),
    [
        ("@method", {"method": "PUT"}),
        ("@target-uri", {"query": "a=2"}),
        ("@authority", {"origin": "https://other.example.com"}),
        ("@scheme", {"origin": "http://api.example.com"}),
        ("@path", {"raw_path": "/v1/clientz"}),
        ("@query", {"query": "a=2"}),
        ("@request-target", {"raw_path": "/v1/clientz"}),
        ("x-field", {"headers": [(b"x-field", b"w")]}),
        ("x-field", {"headers": [(b"x-field", b"v"), (b"x-field", b"v")]}),
    ],
)
def test_signature_is_refused_when_the_one_covered_component_differs_from_what_was_signed(
    component: str, change: dict[str, Any]
) -> None:
    key = Ed25519PrivateKey.generate()
    signer = HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={"k1": key}),
    )
    headers = httpx.Headers([("X-Field", "v")])
    url = f"{_SIGNED['origin']}{_SIGNED['raw_path']}?{_SIGNED['query']}"
    signer.sign(
        _Message("POST", url, headers),
        key_id="k1",
        nonce="n" * 20,
        label="sig1",
        covered_component_ids=[component],
    )
    signature = http_sf.parse(headers["signature"].encode(), tltype="dictionary")["sig1"][0]  # type: ignore[index]

    def base(**request: Any) -> bytes:
        built, _ = _ours(
            *(request[k] for k in ("origin", "method", "raw_path", "query", "headers")),
            headers["signature-input"],
            "sig1",
        )
        return built

    check_ed25519(key.public_key(), signature, base(**_SIGNED))
    with pytest.raises(InvalidSignatureError):
        check_ed25519(key.public_key(), signature, base(**(_SIGNED | change)))
