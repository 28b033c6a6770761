"""The shipped advisory snapshot: its provenance, its checked unpacking and its description."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tarfile
from pathlib import Path

import pytest

from pipeline.advisories import AdvisoryDatabase
from pipeline.advisory_snapshot import (
    PROVENANCE_PATH,
    Provenance,
    SnapshotError,
    describe,
    read_provenance,
    unpack,
)
from pipeline.workspace import HOME


def test_provenance_names_upstream_commit_date_and_licence_when_read() -> None:
    provenance = read_provenance(HOME / PROVENANCE_PATH)
    assert provenance.upstream == "https://github.com/pypa/advisory-database"
    assert re.fullmatch(r"[0-9a-f]{40}", provenance.commit)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", provenance.snapshot_date)
    assert provenance.licence == "CC-BY-4.0"
    assert "Attribution 4.0 International" in (provenance.archive.parent / "LICENSE").read_text()
    archive_bytes = provenance.archive.read_bytes()
    assert hashlib.sha256(archive_bytes).hexdigest() == provenance.archive_sha256
    # About half a megabyte: the repository carries only what the gate needs.
    assert 200_000 < len(archive_bytes) < 1_000_000


def _small_archive(tmp_path: Path) -> Provenance:
    source = tmp_path / "src"
    (source / "vulns" / "demo").mkdir(parents=True)
    (source / "vulns" / "demo" / "PYSEC-1.yaml").write_text("id: PYSEC-1\n")
    (source / "LICENSE").write_text("Attribution 4.0 International\n")
    archive = tmp_path / "snap.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(source / "LICENSE", "LICENSE")
        tar.add(source / "vulns", "vulns")
    provenance = read_provenance(HOME / PROVENANCE_PATH)
    return dataclasses.replace(
        provenance, archive=archive, archive_sha256=hashlib.sha256(archive.read_bytes()).hexdigest()
    )


def test_unpack_refuses_the_archive_when_its_sha256_differs_from_provenance(
    tmp_path: Path,
) -> None:
    provenance = dataclasses.replace(_small_archive(tmp_path), archive_sha256="0" * 64)
    with pytest.raises(SnapshotError, match=r"PROVENANCE\.toml says"):
        unpack(provenance, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unpack_restores_the_tree_when_an_unpacked_file_was_changed(tmp_path: Path) -> None:
    provenance = _small_archive(tmp_path)
    target = tmp_path / "out"
    manifest = unpack(provenance, target)
    advisory = target / "vulns" / "demo" / "PYSEC-1.yaml"
    assert manifest["sha256"] == provenance.archive_sha256
    advisory.write_text("id: PYSEC-1\nwithdrawn: '2020-01-01'\n")
    unpack(provenance, target)
    assert advisory.read_text() == "id: PYSEC-1\n"


def test_describe_reports_a_mismatch_when_the_loaded_tree_is_not_the_unpacked_one(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out"
    unpack(_small_archive(tmp_path), target)
    loaded = AdvisoryDatabase.load(target / "vulns")
    described = describe(target / "vulns", loaded.tree_sha256)
    assert described["source"] == "snapshot"
    assert described["snapshot_date"] == read_provenance().snapshot_date
    assert described["sha256"].startswith("sha256:")
    assert "tree_mismatch" not in described

    (target / "vulns" / "demo" / "PYSEC-2.yaml").write_text("id: PYSEC-2\n")
    altered = AdvisoryDatabase.load(target / "vulns")
    assert "tree_mismatch" in describe(target / "vulns", altered.tree_sha256)


def test_describe_has_no_date_or_archive_digest_when_the_folder_is_not_the_snapshot(
    tmp_path: Path,
) -> None:
    (tmp_path / "vulns" / "demo").mkdir(parents=True)
    (tmp_path / "vulns" / "demo" / "PYSEC-1.yaml").write_text("id: PYSEC-1\n")
    loaded = AdvisoryDatabase.load(tmp_path / "vulns")
    described = describe(tmp_path / "vulns", loaded.tree_sha256)
    assert described["snapshot_date"] is None
    assert described["sha256"] is None
    assert described["tree_sha256"] == loaded.tree_sha256
