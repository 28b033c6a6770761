from __future__ import annotations

import pytest

from app.platform.settings import Settings, SettingsError


def test_defaults_are_dev_with_the_dev_vault_token_when_nothing_is_set() -> None:
    settings = Settings.from_env({})
    assert settings.environment == "dev"
    assert settings.vault_login.token == "moneypath-dev-root"
    assert settings.allow_insecure_webhook_urls is True


def test_production_refuses_a_vault_token_when_approle_is_required() -> None:
    with pytest.raises(SettingsError, match="VAULT_ROLE_ID"):
        Settings.from_env({"MONEYPATH_ENV": "production"})
    with pytest.raises(SettingsError, match="development only"):
        Settings.from_env({"MONEYPATH_ENV": "production", "VAULT_TOKEN": "t"})


def test_production_with_approle_turns_insecure_webhooks_off() -> None:
    settings = Settings.from_env(
        {"MONEYPATH_ENV": "production", "VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s"}
    )
    assert settings.vault_login.role_id == "r"
    assert settings.allow_insecure_webhook_urls is False
    assert "s" not in repr(settings.vault_login)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REQUEST_BODY_LIMIT_BYTES", "ten", "not an integer"),
        ("REQUEST_BODY_LIMIT_BYTES", "1", "must lie in"),
        ("OPA_URL", "ftp://x", "http"),
        ("ALLOW_INSECURE_WEBHOOK_URLS", "maybe", "boolean"),
        ("DATABASE_URL", "mysql://x", "postgresql"),
        ("MONEYPATH_ENV", "staging", "one of"),
    ],
)
def test_invalid_setting_is_named_when_malformed(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value) or name == "MONEYPATH_ENV"


@pytest.mark.parametrize("raw", ["1_000", "+5", "\u0665", "5.0", "0x10"])
def test_api_and_evidence_refuse_the_same_integer_when_it_is_not_plain_digits(raw: str) -> None:
    from evidence.config import EvidenceSettings

    with pytest.raises(SettingsError, match="not an integer"):
        Settings.from_env({"DB_POOL_SIZE": raw})
    with pytest.raises(SettingsError, match="not an integer"):
        EvidenceSettings.from_env({"EVIDENCE_CHECKPOINT_EVERY_RECORDS": raw})


def test_api_and_evidence_accept_the_same_integer_when_padded_with_spaces() -> None:
    from evidence.config import EvidenceSettings

    assert Settings.from_env({"DB_POOL_SIZE": " 12 "}).db_pool_size == 12
    evidence = EvidenceSettings.from_env({"EVIDENCE_CHECKPOINT_EVERY_RECORDS": " 12 "})
    assert evidence.checkpoint_every_records == 12
