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


def test_a_scenario_adds_up_its_slices_when_it_ran_in_turns() -> None:
    """The uncontended and hot scenarios run in alternating slices: each one's figures are
    its slices' totals, never the mean of per-slice rates."""
    bench = _bench()
    slices = [
        bench._Slice(
            statuses=bench.Counter({201: 100, 409: 1}),
            latencies_ms=[1.0, 2.0, 3.0],
            elapsed_s=1.0,
            client_cpu_s=0.1,
            server_cpu_s={"api": 0.3, "postgres": 0.2, "opa": 0.1},
        ),
        bench._Slice(
            statuses=bench.Counter({201: 300}),
            latencies_ms=[4.0, 5.0],
            elapsed_s=3.0,
            client_cpu_s=0.3,
            server_cpu_s={"api": 0.9, "postgres": 0.6, "opa": 0.3},
        ),
    ]
    outcome = bench._outcome(slices, 1)
    assert outcome.transfers_per_s == pytest.approx(100.0)  # 400 transfers in 4 s
    assert dict(outcome.statuses) == {201: 400, 409: 1}
    assert outcome.p50_ms == 3.0
    assert outcome.api_cpu_ms_per_transfer == pytest.approx(3.0)  # 1.2 s over 400
    assert outcome.db_cpu_ms_per_transfer == pytest.approx(2.0)
    assert outcome.opa_cpu_ms_per_transfer == pytest.approx(1.0)
    assert outcome.client_cpu_ms_per_transfer == pytest.approx(1.0)
    assert bench._outcome(slices, 100).transfers_per_s == pytest.approx(10_000.0)
