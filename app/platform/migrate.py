"""Applies Alembic migrations. Each domain keeps its own branch under `<domain>/migrations`.

Separate branches (one base per domain, `alembic upgrade heads`) let domains add
migrations without fighting over one linear history.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config

from app.platform.db import libpq_url

_HERE = Path(__file__).resolve().parent
APP_ROOT = _HERE.parent


def api_version_locations() -> list[Path]:
    """Every `app/<package>/migrations` directory: the platform's and each domain's."""
    return sorted(path for path in APP_ROOT.glob("*/migrations") if path.is_dir())


def alembic_config(database_url: str, version_locations: Sequence[Path]) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE / "alembic"))
    existing = [str(path) for path in version_locations if path.is_dir()]
    config.set_main_option("version_locations", " ".join(existing))
    config.set_main_option("path_separator", "space")
    config.attributes["database_url"] = libpq_url(database_url)
    return config


def upgrade(database_url: str, version_locations: Sequence[Path] | None = None) -> None:
    """Bring the database to every branch's head. Safe to run concurrently (advisory lock)."""
    locations = list(version_locations) if version_locations else api_version_locations()
    command.upgrade(alembic_config(database_url, locations), "heads")
