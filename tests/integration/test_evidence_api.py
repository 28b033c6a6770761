"""The evidence service over HTTP (uvicorn), with real tokens from the API and RFC 9421
signed requests: access rules, append-only API, proofs, audited reads, exports."""

from __future__ import annotations

import base64
import secrets
import time
from typing import Any

import httpx
import psycopg
import pytest
import rfc8785
from openapi_spec_validator import validate as validate_openapi
from trestle.oscal.assessment_results import AssessmentResults

from app.entrypoints.devstack import Stack
from app.entrypoints.launchers.postgres import EVIDENCE_DATABASE_NAME
from app.platform.db import libpq_url
from evidence import checkpoints, merkle, records
from evidence.verify import verify_bundle
from tests.support.api_client import ApiClient, ClientFactory, evidence_client

COMMIT = "c" * 40


@pytest.fixture(scope="module")
def writer(
    client_factory: ClientFactory, api_http: httpx.Client, evidence_http: httpx.Client
) -> ApiClient:
    return evidence_client(client_factory, api_http, evidence_http, ["evidence:write"])


@pytest.fixture(scope="module")
def auditor(
    client_factory: ClientFactory, api_http: httpx.Client, evidence_http: httpx.Client
) -> ApiClient:
    return evidence_client(client_factory, api_http, evidence_http, ["evidence:read"])


def body(control: str = "SOC2:CC8.1", **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "ci.gate",
        "control_refs": [control, "PCI-DSS-4.0.1:6.2.4"],
        "result": "pass",
        "subject": {
            "commit": COMMIT,
            "artifacts": [{"name": "requirements.lock", "digest": "sha256:" + "d" * 64}],
        },
        "tool": {"name": "bandit", "version": "1.8.0", "config_digest": "sha256:" + "e" * 64},
        "actor": "ci/pipeline",
        "started_at": "2026-11-28T18:00:00.000000Z",
        "finished_at": "2026-11-28T18:00:03.500000Z",
        "details": {"gate": "bandit", "findings_total": 0},
    }
    document.update(changes)
    return document


def create(writer: ApiClient, document: dict[str, Any]) -> dict[str, Any]:
    response = writer.post("/v1/evidence", json=document, idempotency_key=secrets.token_hex(8))
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def proven(auditor: ApiClient, record_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """GET the record until a checkpoint covers it (checkpoints come at least every 1 s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = auditor.get(f"/v1/evidence/{record_id}")
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        if document["inclusion_proof"] is not None or time.monotonic() > deadline:
            return document
        time.sleep(0.2)


# ---- acceptance: who may write, and nothing may change --------------------------------


def test_signed_write_with_evidence_write_scope_is_created(writer: ApiClient) -> None:
    created = create(writer, body())
    assert created["id"].startswith("evd_")
    assert isinstance(created["seq"], int)
    assert len(created["leaf_hash"]) == 64
    assert created["collected_at"].endswith("Z")


def test_unsigned_write_is_refused_with_401(writer: ApiClient) -> None:
    response = writer.post(
        "/v1/evidence", json=body(), idempotency_key=secrets.token_hex(8), sign=False
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature_required"


def test_write_without_token_is_refused_with_401(evidence_http: httpx.Client) -> None:
    response = evidence_http.post("/v1/evidence", json=body())
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_write_with_auditor_token_is_refused_with_403(auditor: ApiClient) -> None:
    response = auditor.post("/v1/evidence", json=body(), idempotency_key=secrets.token_hex(8))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_record_cannot_be_changed_through_the_api(writer: ApiClient, method: str) -> None:
    created = create(writer, body())
    response = writer.request(
        method,
        f"/v1/evidence/{created['id']}",
        json={"result": "fail"} if method != "DELETE" else None,
        idempotency_key=secrets.token_hex(8),
    )
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


def test_invalid_record_is_refused_with_422(writer: ApiClient) -> None:
    for document, code in (
        (body(result="passed"), "validation_error"),
        (body(control_refs=["no-framework"]), "validation_error"),
        (body(details={"log": "x" * 20_000}), "record_too_large"),
        (body(details={"ratio": 0.5}), "validation_error"),
    ):
        response = writer.post("/v1/evidence", json=document, idempotency_key=secrets.token_hex(8))
        assert response.status_code == 422, document
        assert response.json()["code"] == code


def test_write_without_idempotency_key_is_refused_with_400(writer: ApiClient) -> None:
    response = writer.post("/v1/evidence", json=body())
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"


def test_retry_with_same_key_replays_the_same_record(writer: ApiClient) -> None:
    key = secrets.token_hex(8)
    first = writer.post("/v1/evidence", json=body(), idempotency_key=key)
    second = writer.post("/v1/evidence", json=body(), idempotency_key=key)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"


# ---- reads: proofs, audit, queries ----------------------------------------------------


def test_record_read_carries_an_inclusion_proof_that_checks_against_the_signed_checkpoint(
    writer: ApiClient, auditor: ApiClient
) -> None:
    created = create(writer, body())
    document = proven(auditor, created["id"])
    record = document["record"]
    assert record["id"] == created["id"]
    assert record["seq"] == created["seq"]
    leaf = merkle.leaf_hash(rfc8785.dumps(record))
    assert leaf.hex() == document["leaf_hash"] == created["leaf_hash"]
    proof = document["inclusion_proof"]
    assert proof is not None
    keys = auditor.get("/v1/checkpoints/public-key").json()["keys"]
    trusted = {key["key_id"]: checkpoints.public_key_from_json(key) for key in keys}
    root = checkpoints.verify_checkpoint(document["checkpoint"], trusted)
    assert proof["tree_size"] == document["checkpoint"]["size"]
    merkle.verify_inclusion(
        proof["leaf_index"],
        proof["tree_size"],
        leaf,
        [bytes.fromhex(item) for item in proof["hashes"]],
        root,
    )


def test_auditor_read_is_itself_audited(
    live_stack: Stack, writer: ApiClient, auditor: ApiClient
) -> None:
    created = create(writer, body())
    assert auditor.get(f"/v1/evidence/{created['id']}").status_code == 200
    url = libpq_url(live_stack.database_url_for(EVIDENCE_DATABASE_NAME))
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT event_type, outcome, decision_id FROM platform.audit_log "
            "WHERE actor = %s AND resource_id = %s",
            (auditor.client_id, created["id"]),
        ).fetchall()
    assert [(row[0], row[1]) for row in rows] == [("evidence.read", "success")]
    assert rows[0][2]


def test_query_filters_by_control_and_paginates_with_a_cursor(
    writer: ApiClient, auditor: ApiClient
) -> None:
    control = f"TEST:run-{secrets.token_hex(4)}"
    ids = [create(writer, body(control=control))["id"] for _ in range(3)]
    first = auditor.get("/v1/evidence", params={"control": control, "limit": 2}).json()
    assert [item["id"] for item in first["data"]] == ids[:2]
    assert first["next_cursor"]
    second = auditor.get(
        "/v1/evidence", params={"control": control, "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [item["id"] for item in second["data"]] == ids[2:]
    assert second["next_cursor"] is None
    later = records.parse_time(first["data"][1]["collected_at"])
    ranged = auditor.get(
        "/v1/evidence",
        params={"control": control, "from": records.format_time(later), "commit": COMMIT},
    ).json()
    assert [item["id"] for item in ranged["data"]] == ids[1:]
    bad = auditor.get("/v1/evidence", params={"controls": control})
    assert bad.status_code == 422


def test_consistency_proof_between_two_checkpoints_checks_over_http(
    writer: ApiClient, auditor: ApiClient
) -> None:
    first = proven(auditor, create(writer, body())["id"])["checkpoint"]
    second = proven(auditor, create(writer, body())["id"])["checkpoint"]
    assert second["size"] > first["size"]
    keys = {
        key["key_id"]: checkpoints.public_key_from_json(key)
        for key in auditor.get("/v1/checkpoints/public-key").json()["keys"]
    }
    response = auditor.get(
        "/v1/proofs/consistency", params={"first": first["size"], "second": second["size"]}
    )
    assert response.status_code == 200
    merkle.verify_consistency(
        first["size"],
        second["size"],
        checkpoints.verify_checkpoint(first, keys),
        checkpoints.verify_checkpoint(second, keys),
        [bytes.fromhex(item) for item in response.json()["hashes"]],
    )
    latest = auditor.get("/v1/checkpoints/latest").json()
    assert latest["note"] == checkpoints.note_text(
        latest["origin"], latest["size"], bytes.fromhex(latest["root_hash"])
    )
    too_far = auditor.get(
        "/v1/proofs/consistency", params={"first": 1, "second": latest["size"] + 10**6}
    )
    assert too_far.status_code == 422
    assert too_far.json()["code"] == "invalid_tree_size"


def test_oscal_export_over_http_validates_with_trestle(
    writer: ApiClient, auditor: ApiClient
) -> None:
    created = create(writer, body(result="fail"))
    response = auditor.get("/v1/exports/oscal", params={"from": created["collected_at"]})
    assert response.status_code == 200
    document = response.json()
    AssessmentResults.model_validate(document["assessment-results"])
    result = document["assessment-results"]["results"][0]
    assert any(
        item["relevant-evidence"][0]["href"] == f"/v1/evidence/{created['id']}"
        for item in result["observations"]
    )
    states = {
        finding["title"]: finding["target"]["status"]["state"] for finding in result["findings"]
    }
    assert states["SOC2:CC8.1"] == "not-satisfied"


def test_bundle_export_over_http_verifies_offline(writer: ApiClient, auditor: ApiClient) -> None:
    created = create(writer, body())
    proven(auditor, created["id"])
    response = auditor.get("/v1/exports/bundle", params={"from": created["collected_at"]})
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["records"][0]["record"]["id"] == created["id"]
    report = verify_bundle(bundle)
    assert report.ok, report.problems
    bundle["records"][0]["record"]["result"] = "fail"
    assert not verify_bundle(bundle).ok


def test_in_toto_statement_and_attachment_round_trip(writer: ApiClient, auditor: ApiClient) -> None:
    content = b"bandit report"
    stored = writer.post(
        "/v1/attachments",
        json={"media_type": "text/plain", "content_base64": base64.b64encode(content).decode()},
        idempotency_key=secrets.token_hex(8),
    )
    assert stored.status_code == 201, stored.text
    digest = stored.json()["digest"]
    created = create(writer, body(attachments=[{"name": "bandit.txt", "digest": digest}]))
    fetched = auditor.get(f"/v1/attachments/{digest}").json()
    assert base64.b64decode(fetched["content_base64"]) == content
    statement = auditor.get(f"/v1/evidence/{created['id']}/in-toto").json()
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert {"name": "git-commit", "digest": {"gitCommit": COMMIT}} in statement["subject"]
    assert statement["predicate"]["record"]["attachments"][0]["digest"] == digest


def test_operational_endpoints_and_openapi_document(evidence_http: httpx.Client) -> None:
    assert evidence_http.get("/healthz").json() == {"status": "ok"}
    ready = evidence_http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"db": "ok", "opa": "ok", "vault": "ok"}
    assert "evidence_checkpoints_total" in evidence_http.get("/metrics").text
    document = evidence_http.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)
    assert set(document["paths"]["/v1/evidence/{id}"]) == {"get"}
    assert document["paths"]["/v1/evidence"]["post"]["x-scopes"] == ["evidence:write"]
