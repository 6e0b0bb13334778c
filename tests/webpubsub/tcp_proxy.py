"""A TCP proxy on 127.0.0.1 that a test controls: it records what clients send, cuts live connections and refuses new
ones, to drop a WebSocket the way a network does (no close frame on either side).

    proxy = await TcpProxy.start(target_port)
    ...                      # clients connect to proxy.port
    proxy.refuse = True      # new connections are closed at once
    proxy.cut()              # every live connection is aborted, both sides
    proxy.refuse = False
    proxy.discard_replies = True   # what servers send is dropped (a request gets through, its answer does not)
    await proxy.close()
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]


class TcpProxy:
    def __init__(self, server: asyncio.Server, target_port: int) -> None:
        self._server = server
        self._target_port = target_port
        self._live: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.refuse = False
        self.discard_replies = False
        self.accepted = 0
        self.refused = 0
        # What each accepted connection sent first (its HTTP upgrade request and what followed), up to 64 KiB.
        self.requests: list[bytearray] = []

    @classmethod
    async def start(cls, target_port: int) -> TcpProxy:
        proxy: TcpProxy
        server = await asyncio.start_server(lambda r, w: proxy._accept(r, w), "127.0.0.1", 0)
        proxy = cls(server, target_port)
        return proxy

    @property
    def port(self) -> int:
        return int(self._server.sockets[0].getsockname()[1])

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            self.refused += 1
            client_writer.transport.abort()
            return
        self.accepted += 1
        try:
            server_reader, server_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self._target_port), 5.0
            )
        except (OSError, TimeoutError):
            client_writer.transport.abort()
            return
        record = bytearray()
        self.requests.append(record)
        pair = (client_writer, server_writer)
        self._live.add(pair)
        try:
            await asyncio.gather(
                self._pipe(client_reader, server_writer, record),
                self._pipe(server_reader, client_writer, None, replies=True),
            )
        finally:
            self._live.discard(pair)
            for writer in pair:
                writer.transport.abort()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        record: bytearray | None,
        *,
        replies: bool = False,
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if replies and self.discard_replies:
                    continue
                if record is not None and len(record) < 65536:
                    record += data[: 65536 - len(record)]
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    def cut(self) -> int:
        """Abort every live connection on both sides (no close frame, no FIN handshake); returns how many."""
        pairs = list(self._live)
        for client_writer, server_writer in pairs:
            client_writer.transport.abort()
            server_writer.transport.abort()
        return len(pairs)

    @property
    def live(self) -> int:
        return len(self._live)

    async def close(self) -> None:
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2.0)
