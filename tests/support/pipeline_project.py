"""A small clean project for pipeline tests: each test plants one problem in its own copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from pipeline.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
FAKE_HASH = "sha256:" + "0" * 64
CLEAN_APP = '''"""A tiny fully-tested module."""


def add(left: int, right: int) -> int:
    return left + right
'''
CLEAN_TEST = """from demo.calc import add


def test_add_when_small_numbers() -> None:
    assert add(2, 3) == 5
"""
ROOT_DOCKERFILE = """FROM docker.io/library/python:3.11.10-slim-bookworm
COPY demo /srv/demo
CMD ["python", "-m", "demo"]
"""
SCHEMA_DEMO = '''"""The demo's migrations: one schema and one table."""

import psycopg


def upgrade(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA demo")
        connection.execute("CREATE TABLE demo.items (id bigint PRIMARY KEY, name text NOT NULL)")
'''
# What `python -m pipeline.schema_probe demo=schema_demo:upgrade` reports for SCHEMA_DEMO.
EXPECTED_SCHEMA = {
    "demo": [
        "column demo.items.id bigint not null",
        "column demo.items.name text not null",
        "constraint demo.items items_pkey PRIMARY KEY (id)",
        "index demo.items_pkey CREATE UNIQUE INDEX items_pkey ON demo.items USING btree (id)",
        "schema demo",
        "table demo.items (r)",
    ]
}
PYPROJECT = """[project]
name = "demo"
version = "0.1.0"

[tool.setuptools]
packages = ["demo"]

[tool.pipeline.migrations]
expected = "expected-schema.json"
upgrade = { demo = "schema_demo:upgrade" }

[tool.importlinter]
root_packages = ["demo"]
include_external_packages = true

[[tool.importlinter.contracts]]
name = "demo does no I/O"
type = "forbidden"
source_modules = ["demo"]
forbidden_modules = ["httpx"]
"""


def make_project(root: Path, pins: tuple[str, ...] = ("jinja2==3.1.6",)) -> Path:
    """A small clean project: typed package, passing tests, lock, Dockerfile, workflow, policies."""
    (root / "demo").mkdir(parents=True)
    (root / "demo" / "__init__.py").write_text('"""Demo."""\n')
    (root / "demo" / "calc.py").write_text(CLEAN_APP)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "tests").mkdir()
    (root / "tests" / "test_calc.py").write_text(CLEAN_TEST)
    lock = "".join(f"{pin} \\\n    --hash={FAKE_HASH}\n" for pin in pins)
    (root / "requirements.lock").write_text(lock)
    (root / "requirements-runtime.lock").write_text(lock)
    (root / "schema_demo.py").write_text(SCHEMA_DEMO)
    # What the copied Dockerfile's COPY lines take from the context besides the above.
    (root / "app").mkdir()
    (root / "app" / "__init__.py").write_text('"""The image\'s package, empty in the demo."""\n')
    (root / "expected-schema.json").write_text(json.dumps(EXPECTED_SCHEMA, indent=1))
    shutil.copy(REPO / "Dockerfile", root / "Dockerfile")
    (root / ".github" / "workflows").mkdir(parents=True)
    shutil.copy(REPO / ".github" / "workflows" / "ci.yml", root / ".github" / "workflows")
    # Promotion asks the evidence trust policy (and its data) which writers count.
    for name in ("pipeline", "evidence", "trust"):
        shutil.copytree(REPO / "policies" / name, root / "policies" / name)
    # The repository's reviewed baseline, narrowed to the files copied above.
    baseline = json.loads((REPO / ".secrets.baseline").read_text())
    baseline["results"] = {
        name: found for name, found in baseline["results"].items() if (root / name).is_file()
    }
    (root / ".secrets.baseline").write_text(json.dumps(baseline, indent=2))
    return root


def workspace(root: Path) -> Workspace:
    return Workspace.create(
        root,
        reports_dir=root.parent / "reports",
        source_packages=["demo"],
        test_paths=["tests"],
    )


def commit_all(root: Path) -> str:
    """Make `root` a git checkout with one commit of everything; return the commit SHA."""
    env = {
        "GIT_AUTHOR_NAME": "ci-test",
        "GIT_AUTHOR_EMAIL": "ci-test@example.com",
        "GIT_COMMITTER_NAME": "ci-test",
        "GIT_COMMITTER_EMAIL": "ci-test@example.com",
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(root),
    }
    (root / ".gitignore").write_text(".coverage\n.mypy_cache/\n__pycache__/\nbuild/\n*.egg-info/\n")
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "x"]):
        subprocess.run(argv, cwd=root, env=env, check=True, capture_output=True, timeout=60)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return head.stdout.strip()
