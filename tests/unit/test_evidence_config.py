"""Evidence settings are validated at start-up and name the variable at fault."""

from __future__ import annotations

import pytest

from app.platform.settings import SettingsError
from evidence.config import EvidenceSettings
from evidence.exports import control_token, in_toto_statement


def test_defaults_match_the_contract_when_environment_is_empty() -> None:
    settings = EvidenceSettings.from_env({"MONEYPATH_ENV": "test"})
    assert settings.checkpoint_every_records == 1000
    assert settings.checkpoint_interval_ms == 1000
    assert settings.public_base_url == "http://127.0.0.1:8081"
    assert settings.jwks_url == "http://127.0.0.1:8000/.well-known/jwks.json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EVIDENCE_CHECKPOINT_EVERY_RECORDS", "0"),
        ("EVIDENCE_CHECKPOINT_INTERVAL_MS", "soon"),
        ("EVIDENCE_PUBLIC_BASE_URL", "ftp://x"),
        ("EVIDENCE_LOG_ORIGIN", "two\nlines"),
    ],
)
def test_start_is_refused_when_a_setting_is_malformed(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        EvidenceSettings.from_env({"MONEYPATH_ENV": "test", name: value})


def test_control_refs_become_oscal_tokens_when_they_hold_a_colon() -> None:
    assert control_token("PCI-DSS-4.0.1:6.3.3") == "PCI-DSS-4.0.1_6.3.3"
    assert control_token("27001:A.8") == "_27001_A.8"


def test_in_toto_subject_is_the_record_itself_when_it_names_no_artifact() -> None:
    record = {"id": "evd_" + "1" * 32, "seq": 0, "subject": {}, "type": "drill"}
    statement = in_toto_statement(record, bytes(32), None, None)
    assert statement["subject"][0]["name"] == record["id"]
    assert len(statement["subject"][0]["digest"]["sha256"]) == 64
