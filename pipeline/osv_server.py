"""A tiny local server speaking the OSV `POST /v1/query` API over an advisory snapshot.

pip-audit's OSV service (`--osv-url`) talks to it, so the dependency gate runs the real
pip-audit offline. Every query is recorded: the gate cross-checks that each locked package
was asked about, and packages that could not be evaluated come back as HTTP 500 (pip-audit
then fails) and are listed as unchecked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipeline.advisories import AdvisoryDatabase, UncheckableError

MAX_QUERY_BYTES = 64 * 1024


@dataclass
class QueryLog:
    """What the server was asked and what it could not answer (thread-safe appends)."""

    queried: list[tuple[str, str]] = field(default_factory=list)
    unchecked: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _vulnerability(advisory: dict[str, Any]) -> dict[str, Any]:
    # pip-audit reads id, aliases, summary/details, affected (for fix versions), published.
    keys = ("id", "aliases", "summary", "details", "affected", "published", "modified")
    return {key: advisory[key] for key in keys if key in advisory}


def _handler(database: AdvisoryDatabase, log: QueryLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            # pip-audit makes ~150 queries per run; access logs would drown the gate output.
            return

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path != "/v1/query" or not 0 < length <= MAX_QUERY_BYTES:
                self._answer(400, {"error": "expected POST /v1/query with a JSON body"})
                return
            try:
                query = json.loads(self.rfile.read(length))
                name = str(query["package"]["name"])
                version = str(query["version"])
                ecosystem = str(query["package"].get("ecosystem", "PyPI"))
            except (ValueError, KeyError, TypeError):
                self._answer(400, {"error": "malformed OSV query"})
                return
            with log.lock:
                log.queried.append((name, version))
            if ecosystem != "PyPI":
                with log.lock:
                    log.unchecked.append({"name": name, "version": version, "reason": ecosystem})
                self._answer(500, {"error": f"ecosystem {ecosystem} is not in the snapshot"})
                return
            try:
                matched = {m.id for m in database.matches(name, version)}
            except UncheckableError as error:
                with log.lock:
                    log.unchecked.append({"name": name, "version": version, "reason": str(error)})
                self._answer(500, {"error": str(error)})
                return
            vulns = [
                _vulnerability(dict(a))
                for a in database.advisories_for(name)
                if str(a.get("id")) in matched
            ]
            self._answer(200, {"vulns": vulns} if vulns else {})

    return Handler


@contextmanager
def serving(database: AdvisoryDatabase) -> Iterator[tuple[str, QueryLog]]:
    """Serve `database` on a free loopback port; yields the query URL and the query log."""
    log = QueryLog()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(database, log))
    thread = threading.Thread(target=server.serve_forever, name="osv-snapshot", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}/v1/query", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
