"""What the Node.js peers of the tests (``jspeer.JsPeer``, ``wps_jspeer.WpsJsPeer``) share: a script under Node that
speaks JSON lines (events on stdout, commands on stdin), its stderr kept in a file, a background reader, the start
handshake (``started`` or ``error``), numbered requests answered by ``result`` events, and a stop by pid.

A peer class sets :attr:`NodePeer.LABEL` (the name its errors start with) and :attr:`NodePeer.ERROR` (the exception
it raises), starts its script with :meth:`NodePeer._launch`, and handles its own events in :meth:`NodePeer._on_event`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from signalr.redact import redact_text
from tests.support.processes import REPO

__all__ = ["NodePeer"]

_STDERR_TAIL = 4000

P = TypeVar("P", bound="NodePeer")


class NodePeer:
    """One running Node peer process. Create it with a subclass's ``start``; always end it with :meth:`stop`."""

    LABEL: ClassVar[str] = "JS peer"
    ERROR: ClassVar[type[Exception]] = Exception

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path, argv: list[str]) -> None:
        self._process = process
        self._stderr_path = stderr_path
        self.argv = argv
        self.connection_id: str | None = None
        self.error: str | None = None
        """The start error text when started with ``expect_start=False`` and the start failed."""
        self._started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results: dict[int, asyncio.Future[Any]] = {}
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
    async def _launch(
        cls: type[P], argv: list[str], log_prefix: str, expect_start: bool, timeout: float
    ) -> tuple[P, dict[str, Any]]:
        """Run ``argv`` (stderr to a temporary file named ``<log_prefix>…``) and wait up to ``timeout`` for
        ``started``: the peer and that event. A failed start raises :attr:`ERROR` with ``expect_start``; without it
        the peer is returned (its process exited) with ``.error`` set and an empty event."""
        fd, name = tempfile.mkstemp(prefix=log_prefix, suffix=".log")
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
            raise cls.ERROR(f"{cls.LABEL} did not start within {timeout}s; {peer._stderr_note()}") from None
        except cls.ERROR as exc:
            peer.error = peer._start_error_text(exc)
            if expect_start:
                await peer.stop()
                raise cls.ERROR(f"{cls.LABEL} failed to start: {peer.error}; {peer._stderr_note()}") from None
            await peer._wait_exit(5)
            return peer, {}
        return peer, started

    def _start_error_text(self, exc: Exception) -> str:
        """``.error`` of a peer whose start failed with ``exc``."""
        return str(exc)

    # -- commands ---------------------------------------------------------------------------------------------

    def _write(self, command: Mapping[str, Any]) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.is_closing() or self._process.returncode is not None:
            raise self.ERROR(f"{self.LABEL} is not running (exit code {self._process.returncode})")
        stdin.write(json.dumps(command).encode() + b"\n")

    # -- events -----------------------------------------------------------------------------------------------

    def stderr(self) -> str:
        """Everything the peer wrote on stderr so far (the client's log); kept after stop."""
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
                continue  # not ours: the peer scripts write only JSON lines, anything else is noise
            if isinstance(event, dict):
                await self._dispatch(event)
        await self._wait_exit(5)
        gone = self.ERROR(f"{self.LABEL} exited; {self._stderr_note()}")
        if not self._started.done():
            self._started.set_exception(gone)
        for future in self._results.values():
            if not future.done():
                future.set_exception(gone)
        self._on_exit(gone)
        if self._started.done() and not self._started.cancelled():
            self._started.exception()  # retrieved, so asyncio does not log it when nobody awaits it

    def _on_exit(self, gone: Exception) -> None:
        """The process ended: fail what else waits for it with ``gone``."""

    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "started" and not self._started.done():
            self._started.set_result(dict(event))
        elif kind == "error" and not self._started.done():
            self._started.set_exception(self.ERROR(str(event.get("message"))))
        else:
            await self._on_event(kind, event)

    async def _on_event(self, kind: Any, event: dict[str, Any]) -> None:
        """An event other than the start's: a ``result`` or what the peer reports as it happens."""

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
            with contextlib.suppress(self.ERROR, ConnectionError):
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
