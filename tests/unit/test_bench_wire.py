"""The ledger benchmark's wire client sends exactly the request the signing client built."""

from __future__ import annotations

import http.server
import importlib.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "loadtests" / "bench_ledger.py"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_ledger", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn answers
    seen: ClassVar[list[tuple[str, str, dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).seen.append((self.command, self.path, dict(self.headers.items()), body))
        answer = b'{"ok":true}'
        self.send_response(201 if len(type(self).seen) == 1 else 409)
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    _Recorder.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_wire_client_sends_the_built_request_and_reads_each_status_when_kept_alive(
    server: http.server.ThreadingHTTPServer,
) -> None:
    bench = _bench()
    base = httpx.URL(f"http://127.0.0.1:{server.server_address[1]}")
    http_client = httpx.Client(base_url=base)
    built = http_client.build_request(
        "POST",
        "/v1/ledger/transactions?x=1",
        json={"amount_minor": 5},
        headers={"signature": "sig1=:AA==:", "idempotency-key": "k1"},
    )
    raw = bench._wire_bytes(built)
    with bench._WireConnection(base) as connection:
        statuses = [connection.exchange(raw), connection.exchange(raw)]
    http_client.close()

    assert statuses == [201, 409]
    assert len(_Recorder.seen) == 2
    method, path, headers, body = _Recorder.seen[0]
    assert (method, path, body) == ("POST", "/v1/ledger/transactions?x=1", built.content)
    sent = {name.lower(): value for name, value in headers.items()}
    expected = {name.decode().lower(): value.decode() for name, value in built.headers.raw}
    assert sent == expected
