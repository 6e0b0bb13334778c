"""A SignalR peer driven by the official JavaScript client, as an asyncio object for tests.

``tests/interop/js/peer.mjs`` runs ``@microsoft/signalr`` under Node and speaks JSON lines (events on stdout, commands
on stdin); :class:`JsPeer` starts it, reads its events in a background task and exposes them as awaitables::

    peer = await JsPeer.start("http://127.0.0.1:5000/chat", transport="sse")
    await peer.send("broadcastMessage", "alice", "hi")
    assert await peer.next_message("broadcastMessage") == ("broadcastMessage", ["alice", "hi"])
    await peer.stop()

Every wait has a timeout; a peer process is always stopped by its own pid (``stop()``, idempotent). Error texts
carry the peer's stderr with secrets redacted.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.nodepeer import NodePeer
from tests.support.processes import REPO

__all__ = ["PEER_SCRIPT", "REPO", "JsPeer", "JsPeerError", "node_executable"]

PEER_SCRIPT = REPO / "tests" / "interop" / "js" / "peer.mjs"


class JsPeerError(Exception):
    """The JS peer failed: it did not start, an invoke or send was rejected, or the process died."""


def node_executable() -> str:
    """Path of ``node``; raises :class:`JsPeerError` when Node.js is not installed."""
    node = shutil.which("node")
    if node is None:
        raise JsPeerError("node is not on PATH: install Node.js 20 and run `make node`")
    return node


class JsPeer(NodePeer):
    """One running ``peer.mjs`` process. Create it with :meth:`start`; always end it with :meth:`stop`."""

    LABEL = "JS peer"
    ERROR = JsPeerError

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path, argv: list[str]) -> None:
        super().__init__(process, stderr_path, argv)
        self.transport: str | None = None
        self.base_url: str | None = None
        self._closed: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._messages: list[tuple[str, list[Any]]] = []

    @classmethod
    async def start(
        cls,
        url: str,
        transport: str = "websockets",
        headers: Mapping[str, str] | None = None,
        access_token: str | None = None,
        on: Iterable[str] = ("broadcastMessage", "echo"),
        expect_start: bool = True,
        timeout: float = 20,
        log_level: str = "trace",
        extra_args: Iterable[str] = (),
        protocol: str = "json",
    ) -> JsPeer:
        """Start a peer connected to the hub at ``url``; returns once it reported ``started`` or its start error.

        ``transport`` is ``websockets``, ``sse``, ``longpolling`` or ``auto``. With ``expect_start`` (default) a
        failed start raises :class:`JsPeerError` with the client's error and stderr; otherwise the returned peer's
        ``.error`` holds the error text. ``log_level`` ``trace`` sends the client's log to :meth:`stderr`.
        ``protocol`` is the hub protocol, ``json`` or ``messagepack`` (``@microsoft/signalr-protocol-msgpack``).
        ``extra_args`` go to ``peer.mjs`` as they are (e.g. ``["--server-timeout", "2000"]``).
        """
        argv = [node_executable(), str(PEER_SCRIPT), "--url", url, "--transport", transport, "--log-level", log_level]
        argv += ["--protocol", protocol]
        for name, value in (headers or {}).items():
            argv += ["--header", f"{name}={value}"]
        if access_token is not None:
            argv += ["--access-token", access_token]
        for target in on:
            argv += ["--on", target]
        argv += list(extra_args)
        peer, started = await cls._launch(argv, "jspeer-", expect_start, timeout)
        peer.connection_id = started.get("connectionId")
        peer.transport = started.get("transport")
        peer.base_url = started.get("baseUrl")
        return peer

    # -- commands ---------------------------------------------------------------------------------------------

    async def send(self, target: str, *arguments: Any, timeout: float = 10) -> None:
        """``connection.send(target, ...arguments)``; returns once the client handed it to its transport.

        Raises :class:`JsPeerError` with the client's error (e.g. ``Cannot send data if the connection is not in the
        'Connected' State.``).
        """
        await self._request("send", target, arguments, timeout)

    async def invoke(self, target: str, *arguments: Any, timeout: float = 10) -> Any:
        """``connection.invoke(target, ...arguments)``: the completion's result, or :class:`JsPeerError`."""
        return await self._request("invoke", target, arguments, timeout)

    async def _request(self, op: str, target: str, arguments: tuple[Any, ...], timeout: float) -> Any:
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[request_id] = future
        try:
            self._write({"op": op, "id": request_id, "target": target, "arguments": list(arguments)})
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"JS peer: no result for {op} {target!r} within {timeout}s") from None
        finally:
            self._results.pop(request_id, None)

    # -- events -----------------------------------------------------------------------------------------------

    async def next_message(self, target: str | None = None, timeout: float = 10) -> tuple[str, list[Any]]:
        """The oldest message not yet taken (of ``target``, when given) as ``(target, arguments)``.

        Messages of other targets stay queued. Raises :class:`TimeoutError` if none arrives within ``timeout``.
        """
        try:
            async with asyncio.timeout(timeout), self._arrived:
                while True:
                    for index, (got, arguments) in enumerate(self._messages):
                        if target is None or got == target:
                            del self._messages[index]
                            return got, arguments
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"JS peer: no {target or 'hub'} message within {timeout}s (queued: {self._messages!r})"
            ) from None

    async def messages_until(self, count: int, timeout: float = 10) -> list[tuple[str, list[Any]]]:
        """The next ``count`` messages of any target, in arrival order; :class:`TimeoutError` if fewer arrive."""
        taken: list[tuple[str, list[Any]]] = []
        try:
            async with asyncio.timeout(timeout):
                while len(taken) < count:
                    taken.append(await self.next_message(timeout=timeout))
        except TimeoutError:
            raise TimeoutError(f"JS peer: {len(taken)} of {count} messages within {timeout}s: {taken!r}") from None
        return taken

    def pending_messages(self) -> list[tuple[str, list[Any]]]:
        """Messages received and not yet taken (a copy); use it to assert that nothing arrived."""
        return list(self._messages)

    async def wait_closed(self, timeout: float = 10) -> str | None:
        """Wait for the client's ``onclose``: its error text, or ``None`` for a clean close."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except TimeoutError:
            raise TimeoutError(f"JS peer: connection not closed within {timeout}s") from None

    @property
    def closed(self) -> bool:
        return self._closed.done()

    def stderr(self) -> str:
        """Everything the peer wrote on stderr so far (the client's log with ``log_level`` trace); kept after stop."""
        return super().stderr()

    def _on_exit(self, gone: Exception) -> None:
        if not self._closed.done():
            self._closed.set_exception(gone)
        if not self._closed.cancelled():
            self._closed.exception()  # retrieved, so asyncio does not log it when nobody awaits it

    async def _on_event(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "message":
            async with self._arrived:
                self._messages.append((str(event.get("target")), list(event.get("arguments") or [])))
                self._arrived.notify_all()
        elif kind == "result":
            future = self._results.get(int(event.get("id", -1)))
            if future is not None and not future.done():
                if "error" in event:
                    future.set_exception(JsPeerError(str(event["error"])))
                else:
                    future.set_result(event.get("result"))
        elif kind == "closed" and not self._closed.done():
            error = event.get("error")
            self._closed.set_result(None if error is None else str(error))
