"""Count database round trips: a TCP relay between an app and PostgreSQL (issue 16).

A round trip is the client waiting for the server: the relay counts every time bytes go
client -> server after the server last spoke (or first) on that connection. It can also
count the client's writes: the TCP segments carrying data that reached the relay from
the app (Linux keeps that count per socket, `tcpi_data_segs_in`), however the relay
happened to read them. Statements queued and sent in one write are one segment; each
flush of its own is another packet, which wakes the server. Statements
sent together (a psycopg pipeline, BEGIN with the first statement, a queued statement
with COMMIT) are one turn; a statement sent after reading the previous one's answer is
another. So the count does not depend on how the statements are logged, only on how
often the app waits.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from app.entrypoints.devstack import Stack

_CHUNK_BYTES = 65536
# struct tcp_info (linux/tcp.h): tcpi_data_segs_in is the u32 at this offset (Linux 4.6+).
_DATA_SEGS_IN_OFFSET = 152
_TCP_INFO_BYTES = 256


class RoundTripCounter:
    """Relays 127.0.0.1:<port> to the database of `database_url`, counting turns."""

    def __init__(self, database_url: str) -> None:
        parts = urlsplit(database_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        self.url = urlunsplit(
            parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )
        self._lock = threading.Lock()
        self._counting = False
        self._turns = 0
        self._clients: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @contextlib.contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Count the turns inside the block; the list holds the count afterwards."""
        found: list[int] = []
        with self._lock:
            self._turns, self._counting = 0, True
        try:
            yield found
        finally:
            with self._lock:
                self._counting = False
                found.append(self._turns)

    @contextlib.contextmanager
    def counting_writes(self) -> Iterator[list[int]]:
        """Like `counting`; the list holds the turns, then the app's writes (data segments)."""
        found: list[int] = []
        before = self._data_segments_in()
        with self.counting() as turns:
            yield found
        found.extend((turns[0], self._data_segments_in() - before))

    def _data_segments_in(self) -> int:
        total = 0
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                info = client.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
            except OSError:
                continue  # closed since
            (segments,) = struct.unpack_from("I", info, _DATA_SEGS_IN_OFFSET)
            total += segments
        return total

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._target, timeout=10)
            with self._lock:
                self._clients.append(client)
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, server)
        selector.register(server, selectors.EVENT_READ, client)
        server_spoke_last = True
        with client, server, selector:
            while not self._closed:
                for key, _ in selector.select(timeout=1.0):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(_CHUNK_BYTES)
                    except OSError:
                        return
                    if not data:
                        return
                    from_client = source is client
                    if from_client and server_spoke_last:
                        with self._lock:
                            if self._counting:
                                self._turns += 1
                    server_spoke_last = not from_client
                    key.data.sendall(data)


def app_through(stack: Stack) -> tuple[Starlette, RoundTripCounter, str]:
    """An in-process API (and its public base URL) whose database connections all pass
    through a new RoundTripCounter.

    The app finds its database in Vault when it starts; the stack's Vault hands it the
    relay's address for that moment only, then the real one again."""
    from app.entrypoints.asgi import create_app
    from app.entrypoints.bootstrap import DATABASE_SECRET
    from app.platform.settings import Settings
    from app.platform.vault import Vault
    from app.providers.api import ProviderSettings

    settings = Settings.from_env({**stack.app_env(), "MONEYPATH_ENV": "test"})
    vault = Vault.login(settings.vault_addr, settings.vault_login)
    real = vault.read_secret(DATABASE_SECRET) or {}
    counter = RoundTripCounter(vault.database_url(DATABASE_SECRET))
    vault.write_secret(DATABASE_SECRET, {**real, "url": counter.url})
    try:
        app = create_app(settings, ProviderSettings.from_env(stack.app_env()))
    finally:
        vault.write_secret(DATABASE_SECRET, real)
    return app, counter, settings.public_base_url
