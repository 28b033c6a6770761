"""OPA's Data API for the request path: one POST on a kept-alive HTTP/1.1 connection.

Every request asks OPA for one decision. Through opa-python-client (aiohttp underneath)
that call cost about 0.25 ms of CPU on its own and about 0.6 ms inside the API, where it
was the largest single part of the policy stage (issue 16): a general HTTP client builds
cookies, timeouts, payload objects and a task for each request. The request path needs
none of that. Here the request is one `POST /v1/data/<path>` with a fixed set of headers,
written in one call on a connection kept open between decisions, and the answer is read by
httptools (llhttp, the C parser uvicorn uses for our own server side). opa-python-client
still does everything else: health checks and the launcher's readiness probe.

Limits: one timeout covers connecting, sending and reading; at most
`MAX_IDLE_CONNECTIONS` are kept; an answer over `MAX_ANSWER_BYTES` is refused. A
connection is never reused after an error, a timeout, a cancellation or an answer that
asks to close it. One retry only, and only where it is certain that OPA never read the
request: a kept connection that OPA had closed while it sat idle (OPA restarted), seen as
the connection ending before any byte of an answer.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import quote

import httptools

MAX_IDLE_CONNECTIONS = 32
# A decision document is a few hundred bytes; anything near this is not OPA answering us.
MAX_ANSWER_BYTES = 1 << 20


class OpaConnectionError(ConnectionError):
    """The connection broke off, or the bytes that came back are not an HTTP answer."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection to OPA, one exchange at a time, parsed by httptools."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self.answered_any = False  # a byte of an answer arrived during the current exchange
        self.reusable = True

    # ---- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered_any = True
        if self._waiter is None or self._waiter.done():
            self._fail(OpaConnectionError("bytes from OPA that answer no request"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(OpaConnectionError(f"not an HTTP answer: {error}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        self._fail(OpaConnectionError("OPA closed the connection"))

    # ---- httptools callbacks ----------------------------------------------------------
    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_ANSWER_BYTES:
            self._fail(OpaConnectionError(f"an answer over {MAX_ANSWER_BYTES} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.reusable = False
        answer = Answer(self._parser.get_status_code(), b"".join(self._body))
        self._body, self._size = [], 0
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)

    # ---- ours ---------------------------------------------------------------------------
    async def exchange(self, request: bytes) -> Answer:
        if self._transport is None or self._transport.is_closing():
            raise OpaConnectionError("OPA closed the connection")
        self.answered_any = False
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: OpaConnectionError) -> None:
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self._transport is not None:
            self._transport.close()


class OpaDataApi:
    """`POST /v1/data/<path>` with `{"input": ...}` on kept-alive connections to one OPA.

    Bound to the event loop that first uses it (its connections are); `close()` ends them.
    """

    def __init__(self, host: str, port: int, *, tls: bool, timeout_s: float) -> None:
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._ssl = ssl.create_default_context() if tls else None
        self._host_header = f"{host}:{port}".encode("ascii")
        self._idle: list[_Connection] = []
        self._opened = 0

    @property
    def connections_opened(self) -> int:
        """How many connections this client has opened so far (kept ones are reused)."""
        return self._opened

    async def post(self, package_path: str, body: bytes) -> Answer:
        """OPA's answer to `body` (JSON text) at `data.<package_path>`. Raises
        OpaConnectionError, OSError or TimeoutError when there is none."""
        request = b"".join(
            (
                b"POST /v1/data/",
                quote(package_path, safe="/").encode("ascii"),
                b" HTTP/1.1\r\nHost: ",
                self._host_header,
                b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
                b"Content-Length: ",
                str(len(body)).encode("ascii"),
                b"\r\n\r\n",
                body,
            )
        )
        async with asyncio.timeout(self._timeout_s):
            kept = self._kept()
            if kept is not None:
                try:
                    return await self._exchange(kept, request)
                except OpaConnectionError:
                    if kept.answered_any:
                        raise
                    # OPA closed the kept connection before reading our request (it
                    # restarted while the connection sat idle): it never saw it.
            return await self._exchange(await self._open(), request)

    def _kept(self) -> _Connection | None:
        """The most recently used kept connection still open (warm, and its peer awake)."""
        while self._idle:
            kept = self._idle.pop()
            if kept.reusable:
                return kept
        return None

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._opened += 1
        _, connection = await loop.create_connection(
            _Connection,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> Answer:
        try:
            answer = await connection.exchange(request)
        except BaseException:
            # An error, a timeout or a cancellation mid-exchange: its state is unknown.
            connection.close()
            raise
        if connection.reusable and len(self._idle) < MAX_IDLE_CONNECTIONS:
            self._idle.append(connection)
        else:
            connection.close()
        return answer
