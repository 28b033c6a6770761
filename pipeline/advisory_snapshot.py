"""The advisory snapshot the repository ships: check it, unpack it, and say what it is.

`pipeline/advisory-db/` holds a compressed copy of the PyPA Advisory Database and its
provenance (upstream, commit, date, archive sha-256). `unpack` checks the archive against
that sha-256 before extracting it into `.tools/advisory-db/` and writes a manifest with the
digest of the extracted tree, so the dependency gate can tell, each run, that it judged by
exactly the shipped data.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.workspace import HOME, tree_digest

# Both relative to a checkout (`workspace.HOME` for this one).
PROVENANCE_PATH = Path("pipeline") / "advisory-db" / "PROVENANCE.toml"
UNPACKED_PATH = Path(".tools") / "advisory-db"
MANIFEST_NAME = "snapshot.json"
# Bounds on what an archive may unpack to; today's snapshot is ~2,700 files and 14 MB.
MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 200 * 1024 * 1024


class SnapshotError(RuntimeError):
    """The shipped snapshot is missing, altered or cannot be unpacked."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """What PROVENANCE.toml says about the archive."""

    upstream: str
    commit: str
    snapshot_date: str
    licence: str
    archive: Path
    archive_sha256: str


def read_provenance(path: Path = HOME / PROVENANCE_PATH) -> Provenance:
    """Parse PROVENANCE.toml. Raises SnapshotError when it is missing or incomplete."""
    try:
        data = tomllib.loads(path.read_text())
        return Provenance(
            upstream=str(data["upstream"]),
            commit=str(data["commit"]),
            snapshot_date=str(data["snapshot_date"]),
            licence=str(data["licence"]),
            archive=path.parent / str(data["archive"]),
            archive_sha256=str(data["archive_sha256"]),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError) as error:
        raise SnapshotError(f"{path}: unreadable provenance ({error!r})") from None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vulns_digest(vulns_dir: Path) -> str:
    """Digest of an OSV `vulns/` tree: every `*/*.yaml` file's path and content."""
    return tree_digest(vulns_dir, sorted(vulns_dir.glob("*/*.yaml")))


def _checked_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = archive.getmembers()
    if len(members) > MAX_MEMBERS:
        raise SnapshotError(f"archive holds more than {MAX_MEMBERS} entries")
    if sum(m.size for m in members) > MAX_UNPACKED_BYTES:
        raise SnapshotError(f"archive unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise SnapshotError(f"archive entry {member.name} is neither a file nor a folder")
    return members


def unpack(provenance: Provenance, target: Path = HOME / UNPACKED_PATH) -> dict[str, Any]:
    """Check the archive's sha-256, extract it to `target` (replacing it) and write the manifest.

    Skips the work when `target` already holds this archive's unpacked tree. Returns the
    manifest. Raises SnapshotError when the archive is missing or does not match.
    """
    if not provenance.archive.is_file():
        raise SnapshotError(f"advisory archive not found at {provenance.archive}")
    actual = _file_sha256(provenance.archive)
    if actual != provenance.archive_sha256:
        raise SnapshotError(
            f"{provenance.archive.name} has sha256 {actual}, "
            f"PROVENANCE.toml says {provenance.archive_sha256}"
        )
    current = read_manifest(target)
    if (
        current is not None
        and current.get("sha256") == actual
        and current.get("tree_sha256") == vulns_digest(target / "vulns")
    ):
        return current
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".advisory-db-", dir=target.parent))
    try:
        with tarfile.open(provenance.archive, mode="r:xz") as archive:
            members = _checked_members(archive)
            # The "data" filter refuses absolute paths, links out of the tree and devices.
            archive.extractall(staging, members=members, filter="data")
        manifest = {
            "source": "snapshot",
            "upstream": provenance.upstream,
            "commit": provenance.commit,
            "snapshot_date": provenance.snapshot_date,
            "licence": provenance.licence,
            "sha256": actual,
            "tree_sha256": vulns_digest(staging / "vulns"),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except (OSError, tarfile.TarError) as error:
        raise SnapshotError(f"cannot unpack {provenance.archive.name}: {error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def read_manifest(unpacked: Path) -> dict[str, Any] | None:
    """The manifest `unpack` wrote into `unpacked`, or None when there is none."""
    try:
        data = json.loads((unpacked / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe(vulns_dir: Path, loaded_tree_sha256: str) -> dict[str, Any]:
    """What a gate reading `vulns_dir` judged by: `{source, snapshot_date, sha256, ...}`.

    For the shipped snapshot, `sha256` is the archive's digest (the one in PROVENANCE.toml)
    and `tree_sha256` must equal the tree the gate actually loaded; `tree_mismatch` says
    when the unpacked files were changed after unpacking. Any other folder has no archive
    and no date: only its tree digest is known.
    """
    manifest = read_manifest(vulns_dir.parent)
    if manifest is None:
        return {
            "source": "snapshot",
            "snapshot_date": None,
            "sha256": None,
            "tree_sha256": loaded_tree_sha256,
            "path": str(vulns_dir),
        }
    described = {
        "source": "snapshot",
        "snapshot_date": manifest.get("snapshot_date"),
        "sha256": "sha256:" + str(manifest.get("sha256")),
        "upstream_commit": manifest.get("commit"),
        "tree_sha256": loaded_tree_sha256,
    }
    if manifest.get("tree_sha256") != loaded_tree_sha256:
        described["tree_mismatch"] = (
            f"the advisory files under {vulns_dir} differ from the unpacked snapshot "
            f"({manifest.get('tree_sha256')}); run `make install` to unpack it again"
        )
    return described
