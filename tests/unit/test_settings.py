from __future__ import annotations

from pathlib import Path

import pytest

from app.entrypoints.devstack import Stack
from app.platform.settings import Settings, SettingsError

DEV = {"MONEYPATH_ENV": "dev"}
APPROLE = {
    "VAULT_ROLE_ID": "r",
    "VAULT_SECRET_ID": "s",
    "VAULT_ADDR": "https://vault.example:8200",
    "PUBLIC_BASE_URL": "https://api.example",
}
REPO = Path(__file__).resolve().parents[2]


def test_dev_uses_the_dev_vault_token_when_nothing_else_is_set() -> None:
    settings = Settings.from_env({"MONEYPATH_ENV": "dev"})
    assert settings.environment == "dev"
    assert settings.vault_login.token == "moneypath-dev-root"
    assert settings.allow_insecure_webhook_urls is True


def test_production_refuses_a_vault_token_when_approle_is_required() -> None:
    with pytest.raises(SettingsError, match="VAULT_ROLE_ID"):
        Settings.from_env({"MONEYPATH_ENV": "production"})
    with pytest.raises(SettingsError, match="development only"):
        Settings.from_env({"MONEYPATH_ENV": "production", "VAULT_TOKEN": "t"})


def test_production_with_approle_turns_insecure_webhooks_off() -> None:
    settings = Settings.from_env({"MONEYPATH_ENV": "production", **APPROLE})
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
        Settings.from_env({"MONEYPATH_ENV": "dev", name: value})
    assert name in str(raised.value) or name == "MONEYPATH_ENV"


@pytest.mark.parametrize("raw", ["1_000", "+5", "\u0665", "5.0", "0x10"])
def test_api_and_evidence_refuse_the_same_integer_when_it_is_not_plain_digits(raw: str) -> None:
    from evidence.config import EvidenceSettings

    with pytest.raises(SettingsError, match="not an integer"):
        Settings.from_env({**DEV, "DB_POOL_SIZE": raw})
    with pytest.raises(SettingsError, match="not an integer"):
        EvidenceSettings.from_env({**DEV, "EVIDENCE_CHECKPOINT_EVERY_RECORDS": raw})


def test_api_and_evidence_accept_the_same_integer_when_padded_with_spaces() -> None:
    from evidence.config import EvidenceSettings

    assert Settings.from_env({**DEV, "DB_POOL_SIZE": " 12 "}).db_pool_size == 12
    evidence = EvidenceSettings.from_env({**DEV, "EVIDENCE_CHECKPOINT_EVERY_RECORDS": " 12 "})
    assert evidence.checkpoint_every_records == 12


# ---- production by default (issue 10, item 8) ---------------------------------------------


def test_defaults_are_production_and_demand_approle_when_nothing_is_set() -> None:
    with pytest.raises(SettingsError, match="VAULT_ROLE_ID"):
        Settings.from_env({})
    settings = Settings.from_env(APPROLE)
    assert settings.environment == "production"
    assert settings.vault_login.token is None
    assert settings.allow_insecure_webhook_urls is False


@pytest.mark.parametrize(
    ("name", "url"),
    [("VAULT_ADDR", "http://vault.internal:8200"), ("PUBLIC_BASE_URL", "http://api.example")],
)
def test_production_refuses_plain_http_when_reaching_vault_or_issuing_tokens(
    name: str, url: str
) -> None:
    with pytest.raises(SettingsError, match=f"{name}=.*https"):
        Settings.from_env({**APPROLE, name: url})
    secure = Settings.from_env({**APPROLE, name: url.replace("http://", "https://")})
    assert url.replace("http://", "https://").rstrip("/") in (
        secure.vault_addr,
        secure.public_base_url,
    )
    assert Settings.from_env({**DEV, name: url}).environment == "dev"


def test_production_refuses_a_plain_http_issuer_when_the_evidence_service_fetches_its_jwks() -> (
    None
):
    from evidence.config import EvidenceSettings

    with pytest.raises(SettingsError, match=r"API_ISSUER_URL=.*https"):
        EvidenceSettings.from_env({**APPROLE, "API_ISSUER_URL": "http://api.example"})
    settings = EvidenceSettings.from_env({**APPROLE, "API_ISSUER_URL": "https://api.example"})
    assert settings.jwks_url == "https://api.example/.well-known/jwks.json"


@pytest.mark.parametrize(
    ("name", "url"),
    [("VAULT_ADDR", "http://127.0.0.1:8200"), ("PUBLIC_BASE_URL", "http://localhost:8000")],
)
def test_production_refuses_plain_http_on_loopback_when_not_explicitly_allowed(
    name: str, url: str
) -> None:
    with pytest.raises(SettingsError, match=f"{name}=.*ALLOW_PLAIN_HTTP_LOOPBACK=true"):
        Settings.from_env({**APPROLE, name: url})
    with pytest.raises(SettingsError, match="ALLOW_PLAIN_HTTP_LOOPBACK"):
        Settings.from_env({**APPROLE, name: url, "ALLOW_PLAIN_HTTP_LOOPBACK": "false"})


def test_production_refuses_the_dev_default_addresses_when_they_are_not_set() -> None:
    only_login = {"VAULT_ROLE_ID": "r", "VAULT_SECRET_ID": "s"}
    with pytest.raises(SettingsError, match=r"VAULT_ADDR='http://127\.0\.0\.1:8200'"):
        Settings.from_env(only_login)
    with pytest.raises(SettingsError, match=r"PUBLIC_BASE_URL='http://127\.0\.0\.1:8000'"):
        Settings.from_env({**only_login, "VAULT_ADDR": "https://vault.example"})


def test_production_accepts_plain_http_on_loopback_when_explicitly_allowed() -> None:
    allowed = {**APPROLE, "ALLOW_PLAIN_HTTP_LOOPBACK": "true"}
    settings = Settings.from_env(
        {**allowed, "VAULT_ADDR": "http://127.0.0.1:8200", "PUBLIC_BASE_URL": "http://[::1]:80"}
    )
    assert settings.vault_addr == "http://127.0.0.1:8200"
    assert settings.public_base_url == "http://[::1]:80"
    # The allowance is for loopback only: the network stays https.
    with pytest.raises(SettingsError, match=r"VAULT_ADDR=.*https"):
        Settings.from_env({**allowed, "VAULT_ADDR": "http://vault.internal:8200"})


def test_evidence_refuses_a_loopback_http_issuer_in_production_when_not_explicitly_allowed() -> (
    None
):
    from evidence.config import EvidenceSettings

    issuer = {"API_ISSUER_URL": "http://127.0.0.1:8000"}
    with pytest.raises(SettingsError, match=r"API_ISSUER_URL=.*ALLOW_PLAIN_HTTP_LOOPBACK"):
        EvidenceSettings.from_env({**APPROLE, **issuer})
    allowed = EvidenceSettings.from_env({**APPROLE, **issuer, "ALLOW_PLAIN_HTTP_LOOPBACK": "1"})
    assert allowed.jwks_url == "http://127.0.0.1:8000/.well-known/jwks.json"


def test_dev_and_test_accept_plain_http_on_loopback_when_nothing_allows_it() -> None:
    for environment in ("dev", "test"):
        settings = Settings.from_env({"MONEYPATH_ENV": environment})
        assert settings.vault_addr == "http://127.0.0.1:8200"
        assert settings.public_base_url == "http://127.0.0.1:8000"


def test_worker_serves_metrics_on_loopback_in_production_when_no_port_is_set() -> None:
    production = Settings.from_env(APPROLE)
    assert (production.worker_metrics_host, production.worker_metrics_port) == ("127.0.0.1", 9101)
    # Dev and test workers serve only when told a port: parallel workers share a host.
    assert Settings.from_env(DEV).worker_metrics_port == 0
    chosen = Settings.from_env({**DEV, "WORKER_METRICS_PORT": "9555", "WORKER_METRICS_HOST": "::1"})
    assert (chosen.worker_metrics_host, chosen.worker_metrics_port) == ("::1", 9555)
    with pytest.raises(SettingsError, match="WORKER_METRICS_HOST"):
        Settings.from_env({**DEV, "WORKER_METRICS_HOST": "all interfaces"})
    with pytest.raises(SettingsError, match="WORKER_METRICS_PORT"):
        Settings.from_env({**DEV, "WORKER_METRICS_PORT": "70000"})


def test_dev_stack_and_make_run_say_dev_when_production_is_the_default(tmp_path: Path) -> None:
    import os

    stack = Stack(root=tmp_path)
    saved = os.environ.get("MONEYPATH_ENV")
    os.environ["MONEYPATH_ENV"] = "production"
    try:
        assert stack.app_env()["MONEYPATH_ENV"] == "dev"
    finally:
        if saved is None:
            del os.environ["MONEYPATH_ENV"]
        else:
            os.environ["MONEYPATH_ENV"] = saved
    run_recipe = (REPO / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "MONEYPATH_ENV=dev" in run_recipe
