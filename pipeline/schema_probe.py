"""`python -m pipeline.schema_probe`: migrate empty scratch databases to head and describe
the schema they end up with, as JSON on stdout. The migrations gate runs it inside the
tree under test (its working directory), so the tree's own migrations are the ones applied.

A scratch PostgreSQL (the embedded `pgserver`) lives in a temporary folder for the probe's
lifetime only; nothing touches a developer's or CI's database.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import psycopg
from pgserver import get_server  # type: ignore[attr-defined]

SKIPPED = "ARRAY['pg_catalog', 'information_schema', 'pg_toast']"

# One row per schema object; partitions (named by month at migration time) are left out
# because their names depend on the day the migration ran, not on the migrations.
_QUERIES = {
    "schema": """
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public')
          AND nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'""",
    "table": """
        SELECT n.nspname || '.' || c.relname || ' (' || c.relkind::text || ')'
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND NOT c.relispartition
          AND n.nspname <> ALL({skipped})""",
    "column": """
        SELECT n.nspname || '.' || c.relname || '.' || a.attname || ' '
               || format_type(a.atttypid, a.atttypmod)
               || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || COALESCE(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm')
          AND NOT c.relispartition AND n.nspname <> ALL({skipped})""",
    "constraint": """
        SELECT n.nspname || '.' || c.relname || ' ' || k.conname || ' '
               || pg_get_constraintdef(k.oid)
        FROM pg_constraint k
        JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT c.relispartition AND n.nspname <> ALL({skipped})""",
    "index": """
        SELECT n.nspname || '.' || i.relname || ' ' || pg_get_indexdef(i.oid)
        FROM pg_index x
        JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = i.relnamespace
        WHERE NOT t.relispartition AND n.nspname <> ALL({skipped})""",
    "trigger": """
        SELECT pg_get_triggerdef(g.oid)
        FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT g.tgisinternal AND g.tgparentid = 0 AND n.nspname <> ALL({skipped})""",
    "function": """
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)
               || ') body md5 ' || md5(p.prosrc)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname <> ALL({skipped}) AND n.nspname <> 'public'""",
}


def describe(url: str) -> list[str]:
    """Every schema object of the database at `url`, one sorted line each."""
    lines: list[str] = []
    with psycopg.connect(url, connect_timeout=10) as connection:
        for kind, query in _QUERIES.items():
            rows = connection.execute(query.format(skipped=SKIPPED)).fetchall()
            lines += [f"{kind} {row[0]}" for row in rows]
    return sorted(lines)


def _target(spec: str) -> Callable[[str], None]:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    return cast(Callable[[str], None], getattr(module, attribute))


def probe(upgrades: dict[str, str], scratch: Path) -> dict[str, Any]:
    """Migrate one empty database per entry of `upgrades` (name -> "module:function")."""
    server = get_server(scratch / "pg", cleanup_mode="delete")
    described: dict[str, Any] = {}
    try:
        for name, spec in sorted(upgrades.items()):
            database = f"scratch_{name}"
            with psycopg.connect(server.get_uri("postgres"), autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            url = server.get_uri(database)
            _target(spec)(url)
            described[name] = describe(url)
    finally:
        server.cleanup()
    return described


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.schema_probe")
    parser.add_argument("upgrades", nargs="+", help="name=module:function, one per database")
    args = parser.parse_args(argv)
    upgrades = dict(item.split("=", 1) for item in args.upgrades)
    # The tree under test is the working directory; its packages come first.
    sys.path.insert(0, str(Path.cwd()))
    with tempfile.TemporaryDirectory(prefix="schema-probe-") as scratch:
        print(json.dumps(probe(upgrades, Path(scratch)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
