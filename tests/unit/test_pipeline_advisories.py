"""The offline advisory matcher: versions lists, ECOSYSTEM ranges and failing closed."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.advisories import AdvisoryDatabase, UncheckableError, advisory_affects


def advisory(
    events: list[dict[str, str]], versions: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": "PYSEC-0000-1",
        "aliases": ["CVE-0000-1"],
        "affected": [
            {
                "package": {"name": "Demo_Pkg", "ecosystem": "PyPI"},
                "ranges": [{"type": "ECOSYSTEM", "events": events}],
                "versions": versions or [],
            }
        ],
        **extra,
    }


@pytest.mark.parametrize(
    ("version", "affected"),
    [
        ("0.9", False),
        ("1.0", True),
        ("1.4.2", True),
        ("2.0", False),
        ("2.0rc1", True),
        ("3.1", True),
    ],
)
def test_range_membership_follows_pep440_when_introduced_fixed_pairs(
    version: str, affected: bool
) -> None:
    data = advisory([{"introduced": "1.0"}, {"fixed": "2.0"}, {"introduced": "3.0"}])
    assert advisory_affects(data, "demo-pkg", version) is affected


def test_last_affected_is_inclusive_when_range_uses_last_affected() -> None:
    data = advisory([{"introduced": "0"}, {"last_affected": "1.2"}])
    assert advisory_affects(data, "demo-pkg", "1.2")
    assert not advisory_affects(data, "demo-pkg", "1.2.1")


def test_versions_list_matches_when_ranges_say_nothing() -> None:
    data = advisory([{"introduced": "5.0"}], versions=["1.0", "1.1"])
    assert advisory_affects(data, "demo-pkg", "1.1")
    assert not advisory_affects(data, "demo-pkg", "1.2")


def test_names_are_canonicalised_when_matching() -> None:
    data = advisory([{"introduced": "0"}, {"fixed": "2"}])
    assert advisory_affects(data, "DEMO.pkg", "1")
    assert not advisory_affects(data, "other", "1")


def test_unparsable_version_is_uncheckable_when_queried() -> None:
    with pytest.raises(UncheckableError):
        advisory_affects(advisory([{"introduced": "0"}]), "demo-pkg", "not a version!")


def test_unknown_range_event_is_uncheckable_when_present() -> None:
    with pytest.raises(UncheckableError):
        advisory_affects(advisory([{"introduced": "0"}, {"mystery": "1"}]), "demo-pkg", "1")


def test_database_reports_id_aliases_and_fixes_when_affected() -> None:
    database = AdvisoryDatabase([advisory([{"introduced": "0"}, {"fixed": "2.0"}])])
    [match] = database.matches("demo-pkg", "1.5")
    assert (match.id, match.aliases, match.fixed_in) == ("PYSEC-0000-1", ("CVE-0000-1",), ("2.0",))
    assert database.matches("demo-pkg", "2.0") == []


def test_withdrawn_advisories_are_ignored_when_matching() -> None:
    withdrawn = advisory([{"introduced": "0"}], withdrawn="2024-01-01T00:00:00Z")
    assert AdvisoryDatabase([withdrawn]).matches("demo-pkg", "1.0") == []
