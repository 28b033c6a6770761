"""Offline vulnerability matching over an OSV-format advisory snapshot (the PyPA database).

An advisory affects a version when the version is listed in `affected[].versions` OR falls
inside one of the advisory's ECOSYSTEM ranges (`introduced` / `fixed` / `last_affected`,
ordered by PEP 440). Both are checked because the PyPA data is not always consistent
between the two, and a miss here is a silent pass of the dependency gate.

A package whose advisories cannot be evaluated (an unparsable version, or a range we do not
understand) is reported as uncheckable instead of clean: the gate must never pass on a
package it could not check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pipeline.workspace import sha256_bytes

# The snapshot holds ~2,700 advisories; a bound keeps a corrupted tree from eating memory.
MAX_ADVISORY_FILES = 50_000
MAX_RANGE_EVENTS = 1_000


class AdvisoryDatabaseError(RuntimeError):
    """The advisory snapshot is missing, empty or unreadable."""


class UncheckableError(ValueError):
    """A package/version pair cannot be evaluated against one of its advisories."""


@dataclass(frozen=True, slots=True)
class Match:
    """One advisory that affects a queried package version."""

    id: str
    aliases: tuple[str, ...]
    fixed_in: tuple[str, ...]


def _version(raw: object, context: str) -> Version:
    try:
        return Version(str(raw))
    except InvalidVersion:
        raise UncheckableError(f"{context}: {raw!r} is not a PEP 440 version") from None


def _in_range(version: Version, events: Sequence[Mapping[str, Any]], context: str) -> bool:
    """OSV range semantics: walk the events in version order, toggling 'affected'."""
    if len(events) > MAX_RANGE_EVENTS:
        raise UncheckableError(f"{context}: too many range events")
    ordered: list[tuple[Version, str]] = []
    for event in events:
        if "introduced" in event:
            raw = event["introduced"]
            ordered.append((Version("0") if str(raw) == "0" else _version(raw, context), "in"))
        elif "fixed" in event:
            ordered.append((_version(event["fixed"], context), "fixed"))
        elif "last_affected" in event:
            ordered.append((_version(event["last_affected"], context), "last"))
        elif "limit" in event:
            # `limit` only bounds where a range search stops; it never marks a version.
            continue
        else:
            raise UncheckableError(f"{context}: unknown range event {sorted(event)}")
    ordered.sort(key=lambda item: item[0])
    affected = False
    for boundary, kind in ordered:
        if kind == "in" and boundary <= version:
            affected = True
        elif (kind == "fixed" and boundary <= version) or (kind == "last" and boundary < version):
            affected = False
    return affected


def advisory_affects(advisory: Mapping[str, Any], name: str, version: str) -> bool:
    """Whether `advisory` affects PyPI package `name` at `version` (versions list or range).

    Raises UncheckableError when the version or one of the advisory's ranges cannot be
    parsed, so the caller can fail closed.
    """
    wanted = canonicalize_name(name)
    context = f"{advisory.get('id', '?')} for {wanted} {version}"
    queried = _version(version, context)
    for affected in advisory.get("affected") or []:
        package = affected.get("package") or {}
        if package.get("ecosystem") != "PyPI":
            continue
        if canonicalize_name(str(package.get("name", ""))) != wanted:
            continue
        for listed in affected.get("versions") or []:
            if str(listed) == version:
                return True
            try:
                if Version(str(listed)) == queried:
                    return True
            except InvalidVersion:
                # A non-PEP 440 entry cannot equal a PEP 440 version; string equality
                # above already covered an exact textual match.
                continue
        for span in affected.get("ranges") or []:
            if span.get("type") != "ECOSYSTEM":
                # GIT ranges name commits, not releases; PyPA also gives ECOSYSTEM ranges.
                continue
            if _in_range(queried, span.get("events") or [], context):
                return True
    return False


def _fixed_versions(advisory: Mapping[str, Any], name: str) -> tuple[str, ...]:
    fixed: list[str] = []
    for affected in advisory.get("affected") or []:
        package = affected.get("package") or {}
        if canonicalize_name(str(package.get("name", ""))) != canonicalize_name(name):
            continue
        for span in affected.get("ranges") or []:
            fixed.extend(str(e["fixed"]) for e in span.get("events") or [] if "fixed" in e)
    return tuple(sorted(set(fixed)))


class AdvisoryDatabase:
    """Advisories indexed by canonical PyPI package name."""

    def __init__(self, advisories: Iterable[Mapping[str, Any]]) -> None:
        self._by_package: dict[str, list[Mapping[str, Any]]] = {}
        count = 0
        for advisory in advisories:
            count += 1
            names = {
                canonicalize_name(str((a.get("package") or {}).get("name", "")))
                for a in advisory.get("affected") or []
                if (a.get("package") or {}).get("ecosystem") == "PyPI"
            }
            for package_name in names:
                self._by_package.setdefault(package_name, []).append(advisory)
        self.advisory_count = count
        # Digest of the files this database was read from (see `load`); empty when built
        # from documents in memory.
        self.tree_sha256 = ""

    @classmethod
    def load(cls, vulns_dir: Path) -> AdvisoryDatabase:
        """Read every `*.yaml` advisory under `vulns_dir` (the PyPA `vulns/` tree).

        Raises AdvisoryDatabaseError when the directory is missing or holds no advisory.
        """
        if not vulns_dir.is_dir():
            raise AdvisoryDatabaseError(f"advisory database not found at {vulns_dir}")
        paths = sorted(vulns_dir.glob("*/*.yaml"))
        if not paths:
            raise AdvisoryDatabaseError(f"no advisories under {vulns_dir}")
        if len(paths) > MAX_ADVISORY_FILES:
            raise AdvisoryDatabaseError(f"more than {MAX_ADVISORY_FILES} advisories")
        loaded: list[Mapping[str, Any]] = []
        digests: list[str] = []
        for path in paths:
            try:
                raw = path.read_bytes()
                document = yaml.load(raw.decode(), Loader=yaml.CSafeLoader)
            except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
                raise AdvisoryDatabaseError(f"{path}: {error}") from None
            # The same form as workspace.tree_digest, so it can be compared with the
            # digest taken when the snapshot was unpacked.
            digests.append(f"{path.relative_to(vulns_dir).as_posix()} {sha256_bytes(raw)}")
            if isinstance(document, dict):
                loaded.append(document)
        database = cls(loaded)
        database.tree_sha256 = sha256_bytes("\n".join(sorted(digests)).encode())
        return database

    def advisories_for(self, name: str) -> list[Mapping[str, Any]]:
        """The raw OSV documents that mention `name` (canonicalised)."""
        return list(self._by_package.get(canonicalize_name(name), ()))

    def matches(self, name: str, version: str) -> list[Match]:
        """Advisories affecting `name==version`, withdrawn ones excluded.

        Raises UncheckableError when any of the package's advisories cannot be evaluated.
        """
        found: list[Match] = []
        for advisory in self.advisories_for(name):
            if advisory.get("withdrawn"):
                continue
            if advisory_affects(advisory, name, version):
                found.append(
                    Match(
                        id=str(advisory["id"]),
                        aliases=tuple(str(a) for a in advisory.get("aliases") or ()),
                        fixed_in=_fixed_versions(advisory, name),
                    )
                )
        return found
