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
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from signalr.redact import redact_text
from tests.support.processes import REPO

__all__ = ["PEER_SCRIPT", "REPO", "JsPeer", "JsPeerError", "node_executable"]

PEER_SCRIPT = REPO / "tests" / "interop" / "js" / "peer.mjs"
_STDERR_TAIL = 4000


class JsPeerError(Exception):
    """The JS peer failed: it did not start, an invoke or send was rejected, or the process died."""


def node_executable() -> str:
    """Path of ``node``; raises :class:`JsPeerError` when Node.js is not installed."""
    node = shutil.which("node")
    if node is None:
        raise JsPeerError("node is not on PATH: install Node.js 20 and run `make node`")
    return node


class JsPeer:
    """One running ``peer.mjs`` process. Create it with :meth:`start`; always end it with :meth:`stop`."""

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path, argv: list[str]) -> None:
        self._process = process
        self._stderr_path = stderr_path
        self.argv = argv
        self.connection_id: str | None = None
        self.transport: str | None = None
        self.base_url: str | None = None
        self.error: str | None = None
        """The start error text when started with ``expect_start=False`` and the start failed."""
        self._started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._closed: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._messages: list[tuple[str, list[Any]]] = []
        self._arrived = asyncio.Condition()
        self._next_id = 0
        self._stopped = False
        self._final_stderr: str | None = None
        self._reader = asyncio.create_task(self._read_events())

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

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
        fd, name = tempfile.mkstemp(prefix="jspeer-", suffix=".log")
        stderr_path = Path(name)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=fd,
                cwd=str(REPO),
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which stops the peer itself
            )
        finally:
            os.close(fd)
        peer = cls(process, stderr_path, argv)
        try:
            started = await asyncio.wait_for(asyncio.shield(peer._started), timeout)
        except TimeoutError:
            await peer.stop()
            raise JsPeerError(f"JS peer did not start within {timeout}s; {peer._stderr_note()}") from None
        except JsPeerError as exc:
            peer.error = str(exc)
            if expect_start:
                await peer.stop()
                raise JsPeerError(f"JS peer failed to start: {exc}; {peer._stderr_note()}") from None
            await peer._wait_exit(5)
            return peer
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

    def _write(self, command: Mapping[str, Any]) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing() or self._process.returncode is not None:
            raise JsPeerError(f"JS peer is not running (exit code {self._process.returncode})")
        stdin.write(json.dumps(command).encode() + b"\n")

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
        if self._final_stderr is not None:
            return self._final_stderr
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _stderr_note(self) -> str:
        text = redact_text(self.stderr())
        if len(text) > _STDERR_TAIL:
            text = "…" + text[-_STDERR_TAIL:]
        return f"exit code {self._process.returncode}; stderr:\n{text}"

    async def _read_events(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            line = await stdout.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # not ours: peer.mjs writes only JSON lines, anything else is noise
            await self._dispatch(event)
        await self._wait_exit(5)
        gone = JsPeerError(f"JS peer exited; {self._stderr_note()}")
        if not self._started.done():
            self._started.set_exception(gone)
        for future in self._results.values():
            if not future.done():
                future.set_exception(gone)
        if not self._closed.done():
            self._closed.set_exception(gone)
        # Nobody may await these futures: retrieve their exceptions so asyncio does not log them as unhandled.
        for future in (self._started, self._closed):
            if future.done() and not future.cancelled():
                future.exception()

    async def _dispatch(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        if kind == "started" and not self._started.done():
            self._started.set_result(dict(event))
        elif kind == "error" and not self._started.done():
            self._started.set_exception(JsPeerError(str(event.get("message"))))
        elif kind == "message":
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

    # -- shutdown ---------------------------------------------------------------------------------------------

    async def _wait_exit(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout: float = 5) -> None:
        """Ask the client to ``stop()``, wait up to ``timeout`` for the process to exit, then kill it by pid.

        Idempotent; safe after the process died.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._process.returncode is None:
            with contextlib.suppress(JsPeerError, ConnectionError):
                self._write({"op": "stop"})
            stdin = self._process.stdin
            if stdin is not None:
                stdin.close()
            if not await self._wait_exit(timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self._process.pid, signal.SIGKILL)
                await self._wait_exit(5)
        try:
            await asyncio.wait_for(self._reader, 5)
        except TimeoutError:
            self._reader.cancel()
        self._final_stderr = self.stderr()
        with contextlib.suppress(FileNotFoundError):
            self._stderr_path.unlink()
