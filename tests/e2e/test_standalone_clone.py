"""The project stands alone: a clone with nothing beside it installs and passes its gate tests.

The committed HEAD is cloned into an empty temporary folder (no shared folder, no sibling
checkout), `make install` runs there, and the pip-audit and checkov gate tests (and the test
that every default path lies inside the checkout) run in that clone with the clone's own
venv, tools and advisory snapshot.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pipeline.workspace import HOME, child_env

# Set inside the clone, so its own copy of this test does not clone again.
INNER = "MONEYPATH_STANDALONE_CLONE"
INSTALL_TIMEOUT_S = 1500
TESTS_TIMEOUT_S = 900
# The folder beside the checkout that the pipeline once read its advisory data from; spelt
# in two parts so that this file does not match its own search.
SIBLING = ".." + "/shared"


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: int) -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    output = done.stdout[-6000:] + done.stderr[-6000:]
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{output}"
    return done.stdout


def test_nothing_reads_the_sibling_shared_folder_when_the_tree_is_searched() -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=HOME, capture_output=True, timeout=60, check=True
    ).stdout.decode()
    offenders = []
    for name in filter(None, listed.split("\0")):
        path = HOME / name
        if not path.is_file() or path.suffix in {".xz", ".png"}:
            continue
        if SIBLING in path.read_text(errors="replace"):
            offenders.append(name)
    assert offenders == []


@pytest.mark.skipif(bool(os.environ.get(INNER)), reason="already inside the standalone clone")
def test_a_clone_installs_and_passes_the_gate_tests_when_nothing_is_beside_it(
    tmp_path: Path,
) -> None:
    lonely = tmp_path / "empty"
    lonely.mkdir()
    clone = lonely / "moneypath"
    env = child_env({INNER: "1"})
    for name in ("VIRTUAL_ENV", "PIPELINE_ADVISORY_DB"):
        env.pop(name, None)
    head = _run(["git", "rev-parse", "HEAD"], HOME, env, 60).strip()
    _run(["git", "clone", "--quiet", "--no-checkout", str(HOME), str(clone)], lonely, env, 300)
    _run(["git", "checkout", "--quiet", head], clone, env, 300)
    assert sorted(p.name for p in lonely.iterdir()) == ["moneypath"]

    _run(["make", "install"], clone, env, INSTALL_TIMEOUT_S)
    assert (clone / ".tools" / "checkov" / "bin" / "checkov").is_file()
    assert (clone / ".tools" / "advisory-db" / "snapshot.json").is_file()

    out = _run(
        [
            str(clone / ".venv" / "bin" / "python"),
            "-m",
            "pytest",
            "tests/integration/test_pipeline_gates.py",
            "-p",
            "no:cacheprovider",
            "-q",
            "-k",
            "pip_audit or checkov or inside_the_checkout",
        ],
        clone,
        env,
        TESTS_TIMEOUT_S,
    )
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary
    assert "failed" not in summary
    assert "skipped" not in summary, summary
