"""Issue 10 item 3: every evidence record says who wrote it, and only trusted writers count.

Over HTTP against the uvicorn evidence service, with tokens from the API and writers
registered with the real OPA the way the dev stack and CI register theirs.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from app.entrypoints.devstack import Stack
from evidence import cli as evidence_cli
from evidence import exports, records, trust
from tests.integration.test_evidence_api import body, create
from tests.support.api_client import ApiClient, ClientFactory, evidence_client


@pytest.fixture(scope="module")
def pipeline(
    live_stack: Stack,
    client_factory: ClientFactory,
    api_http: httpx.Client,
    evidence_http: httpx.Client,
) -> ApiClient:
    """The CI pipeline's client, registered as the trusted writer of `ci.**` records."""
    client = evidence_client(
        client_factory, api_http, evidence_http, ["evidence:write", "evidence:read"]
    )
    trust.register_submitter(live_stack.opa_url, client.client_id, ["ci.**"])
    return client


@pytest.fixture(scope="module")
def rogue(
    client_factory: ClientFactory, api_http: httpx.Client, evidence_http: httpx.Client
) -> ApiClient:
    """Another client holding evidence:write, trusted for nothing."""
    return evidence_client(client_factory, api_http, evidence_http, ["evidence:write"])


def _control() -> str:
    return f"TEST:C{secrets.token_hex(4)}"


def _finding(auditor: ApiClient, since: str, control: str) -> dict[str, Any]:
    response = auditor.get("/v1/exports/oscal", params={"from": since})
    assert response.status_code == 200, response.text
    findings = response.json()["assessment-results"]["results"][0]["findings"]
    found: dict[str, Any] = next(item for item in findings if item["title"] == control)
    return found


def test_record_names_its_verified_writer_when_written(pipeline: ApiClient) -> None:
    created = create(pipeline, body())
    stored = pipeline.get(f"/v1/evidence/{created['id']}").json()
    record = stored["record"]
    assert record["submitted_by"] == {"client_id": pipeline.client_id, "key_id": pipeline.key_id}
    # The writer is inside the leaf: the published leaf hash is over the record with it.
    assert records.record_leaf_hash(record).hex() == created["leaf_hash"] == stored["leaf_hash"]
    without = {name: value for name, value in record.items() if name != "submitted_by"}
    assert records.record_leaf_hash(without).hex() != created["leaf_hash"]


def test_write_is_refused_with_422_when_body_names_a_submitter(
    pipeline: ApiClient, rogue: ApiClient
) -> None:
    control = _control()
    response = rogue.post(
        "/v1/evidence",
        json=body(
            control,
            submitted_by={"client_id": pipeline.client_id, "key_id": pipeline.key_id},
        ),
        idempotency_key=secrets.token_hex(8),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    listed = pipeline.get("/v1/evidence", params={"control": control}).json()
    assert listed["data"] == []


def test_oscal_finding_keeps_trusted_fail_when_untrusted_writer_posts_pass_after_it(
    pipeline: ApiClient, rogue: ApiClient
) -> None:
    control = _control()
    failed = create(pipeline, body(control, result="fail", actor="ci/job-41"))
    create(rogue, body(control, result="pass", actor="ci-pipeline"))
    finding = _finding(pipeline, failed["collected_at"], control)
    assert finding["target"]["status"]["state"] == "not-satisfied"
    assert finding["related-observations"] == [
        {"observation-uuid": exports.derived_uuid("observation", failed["id"])}
    ]
    # The finding names the verified writer and what the writer said about itself.
    assert pipeline.client_id in finding["description"]
    assert "ci/job-41" in finding["description"]
    props = {prop["name"]: prop["value"] for prop in finding["props"]}
    assert props["submitted-by"] == pipeline.client_id
    assert props["actor"] == "ci/job-41"


def test_oscal_finding_follows_trusted_writer_when_it_passes_later(
    pipeline: ApiClient, rogue: ApiClient
) -> None:
    control = _control()
    failed = create(pipeline, body(control, result="fail"))
    create(pipeline, body(control, result="pass"))
    create(rogue, body(control, result="fail"))
    finding = _finding(pipeline, failed["collected_at"], control)
    assert finding["target"]["status"]["state"] == "satisfied"


def test_oscal_finding_is_not_satisfied_when_only_untrusted_writers_report(
    pipeline: ApiClient, rogue: ApiClient
) -> None:
    control = _control()
    created = create(rogue, body(control, result="pass"))
    finding = _finding(pipeline, created["collected_at"], control)
    assert finding["target"]["status"] == {"state": "not-satisfied", "reason": "other"}
    assert rogue.client_id in finding["description"]


def test_registration_is_refused_when_pattern_is_not_a_record_type(live_stack: Stack) -> None:
    with pytest.raises(ValueError, match="pattern"):
        trust.register_submitter(live_stack.opa_url, "cli_x", ["CI RUN"])


def test_cli_registers_a_writer_when_given_client_and_types(
    live_stack: Stack,
    pipeline: ApiClient,
    client_factory: ClientFactory,
    api_http: httpx.Client,
    evidence_http: httpx.Client,
) -> None:
    newcomer = evidence_client(client_factory, api_http, evidence_http, ["evidence:write"])
    control = _control()
    created = create(newcomer, body(control, result="pass"))
    before = _finding(pipeline, created["collected_at"], control)
    assert before["target"]["status"]["state"] == "not-satisfied"
    code = evidence_cli.main(
        [
            "trust-register",
            "--client-id",
            newcomer.client_id,
            "--types",
            "ci.gate",
            "--opa-url",
            live_stack.opa_url,
        ]
    )
    assert code == 0
    after = _finding(pipeline, created["collected_at"], control)
    assert after["target"]["status"]["state"] == "satisfied"
