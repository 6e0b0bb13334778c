"""A Web PubSub peer driven by the official JavaScript client, as an asyncio object for tests.

``tests/interop/js/wps_peer.mjs`` runs ``@azure/web-pubsub-client`` under Node and speaks JSON lines (events on
stdout, commands on stdin); :class:`WpsJsPeer` starts it, reads its events in a background task and exposes them as
awaitables::

    peer = await WpsJsPeer.start(url=client_access_url, protocol="reliable")
    await peer.join_group("room")
    await peer.send_to_group("room", {"text": "hi"})
    event = await peer.next_event("group-message")
    assert event["data"] == {"text": "hi"}
    await peer.stop()

Start it with a client access URL (``url=``) or the app server's negotiate URL (``negotiate=``, asked again before
every reconnect). Every wait has a timeout; a peer process is always stopped by its own pid (``stop()``, idempotent).
Error texts carry the peer's stderr with secrets redacted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from signalr.redact import redact_text
from tests.support.jspeer import node_executable
from tests.support.nodepeer import NodePeer
from tests.support.processes import REPO

__all__ = ["WPS_PEER_SCRIPT", "AckFailed", "WpsJsPeer", "WpsJsPeerError"]

WPS_PEER_SCRIPT = REPO / "tests" / "interop" / "js" / "wps_peer.mjs"
# What the peer reports as it happens; "result" and "started"/"error" are answered through futures instead.
EVENT_KINDS = frozenset(
    {"connected", "disconnected", "stopped", "server-message", "group-message", "rejoin-group-failed"}
)


class WpsJsPeerError(Exception):
    """The peer failed: it did not start, a command got no answer, or the process died."""


class AckFailed(WpsJsPeerError):
    """The service answered a request with a failed ack (or the client gave up on it): ``name`` is the ack's error
    name (``Forbidden``, ``BadRequest``…) or ``None`` when the client failed before any ack."""

    def __init__(self, message: str, name: str | None, detail: str | None) -> None:
        super().__init__(message if name is None else f"{message} ({name}: {detail})")
        self.name = name
        self.detail = detail


class WpsJsPeer(NodePeer):
    """One running ``wps_peer.mjs`` process. Create it with :meth:`start`; always end it with :meth:`stop`."""

    LABEL = "Web PubSub JS peer"
    ERROR = WpsJsPeerError

    def __init__(self, process: asyncio.subprocess.Process, stderr_path: Path, argv: list[str]) -> None:
        super().__init__(process, stderr_path, argv)
        self.user_id: str | None = None
        self.url: str | None = None
        """The client access URL it connected to, with ``access_token`` redacted."""
        self._events: list[dict[str, Any]] = []
        self.history: list[dict[str, Any]] = []
        """Every event in arrival order, taken or not."""

    @classmethod
    async def start(
        cls,
        url: str | None = None,
        *,
        negotiate: str | None = None,
        protocol: str = "reliable",
        auto_reconnect: bool = True,
        expect_start: bool = True,
        log_level: str = "warning",
        timeout: float = 20,
    ) -> WpsJsPeer:
        """Start a peer on the client access URL ``url`` or the app server's ``negotiate`` URL (exactly one).

        ``protocol`` is ``json`` (``json.webpubsub.azure.v1``) or ``reliable`` (``json.reliable.webpubsub.azure.v1``).
        Returns once the client started and the service said ``connected``. With ``expect_start`` (default) a failed
        start raises :class:`WpsJsPeerError` with the client's error and stderr; otherwise the returned peer's
        ``.error`` holds it (the process has exited).
        """
        if (url is None) == (negotiate is None):
            raise ValueError("give exactly one of url and negotiate")
        argv = [node_executable(), str(WPS_PEER_SCRIPT), "--protocol", protocol, "--log-level", log_level]
        argv += ["--url", url] if url is not None else ["--negotiate", str(negotiate)]
        if not auto_reconnect:
            argv.append("--no-auto-reconnect")
        peer, started = await cls._launch(argv, "wpspeer-", expect_start, timeout)
        peer.connection_id = started.get("connectionId")
        peer.user_id = started.get("userId")
        peer.url = started.get("url")
        return peer

    # -- commands ---------------------------------------------------------------------------------------------

    async def join_group(self, group: str, timeout: float = 10) -> dict[str, Any]:
        """``client.joinGroup(group)``: the ack result ``{"ackId", "isDuplicated"}``, or :class:`AckFailed`."""
        return await self._request({"op": "joinGroup", "group": group}, timeout)

    async def leave_group(self, group: str, timeout: float = 10) -> dict[str, Any]:
        return await self._request({"op": "leaveGroup", "group": group}, timeout)

    async def send_to_group(
        self,
        group: str,
        data: Any,
        data_type: str = "json",
        *,
        no_echo: bool = False,
        fire_and_forget: bool = False,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """``client.sendToGroup``; binary ``data`` is base64 text. Returns the ack result (fire-and-forget: once
        written)."""
        command = {"op": "sendToGroup", "group": group, "data": data, "dataType": data_type, "noEcho": no_echo}
        command["fireAndForget"] = fire_and_forget
        return await self._request(command, timeout)

    async def send_event(
        self, event: str, data: Any, data_type: str = "json", *, fire_and_forget: bool = False, timeout: float = 10
    ) -> dict[str, Any]:
        """``client.sendEvent``: the ack result once the service (and its event handler) took it."""
        command = {"op": "sendEvent", "event": event, "data": data, "dataType": data_type}
        command["fireAndForget"] = fire_and_forget
        return await self._request(command, timeout)

    def drop(self) -> None:
        """End the client's WebSocket without a close frame, as a network failure would (the client recovers)."""
        self._write({"op": "drop"})

    async def _request(self, command: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[request_id] = future
        try:
            self._write({**command, "id": request_id})
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"Web PubSub JS peer: no result for {command['op']} within {timeout}s") from None
        finally:
            self._results.pop(request_id, None)
        if "error" in answer:
            detail = answer.get("errorDetail") or {}
            raise AckFailed(str(answer["error"]), detail.get("name"), detail.get("message"))
        result: dict[str, Any] = answer.get("result") or {}
        return result

    # -- events -----------------------------------------------------------------------------------------------

    async def next_event(self, kind: str | None = None, timeout: float = 10) -> dict[str, Any]:
        """The oldest event not yet taken (of ``kind``, e.g. ``server-message``, when given).

        Events of other kinds stay queued. Raises :class:`TimeoutError` if none arrives within ``timeout``.
        """
        try:
            async with asyncio.timeout(timeout), self._arrived:
                while True:
                    for index, event in enumerate(self._events):
                        if kind is None or event["event"] == kind:
                            del self._events[index]
                            return event
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"Web PubSub JS peer: no {kind or ''} event within {timeout}s (queued: {self._events!r})"
            ) from None

    async def next_data(self, kind: str = "server-message", timeout: float = 10) -> Any:
        """The ``data`` of the next ``server-message`` (or ``group-message``) event."""
        return (await self.next_event(kind, timeout))["data"]

    def pending(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Events received and not yet taken (of ``kind`` when given); use it to assert that nothing arrived."""
        return [e for e in self._events if kind is None or e["event"] == kind]

    def _start_error_text(self, exc: Exception) -> str:
        return redact_text(str(exc))

    async def _on_event(self, kind: Any, event: dict[str, Any]) -> None:
        if kind == "result":
            future = self._results.get(int(event.get("id", -1)))
            if future is not None and not future.done():
                future.set_result(event)
        elif kind in EVENT_KINDS:
            async with self._arrived:
                self._events.append(event)
                self.history.append(event)
                self._arrived.notify_all()

    async def stop(self, timeout: float = 8) -> None:
        """Ask the client to ``stop()``, wait up to ``timeout`` for the process to exit, then kill it by pid.

        Idempotent; safe after the process died.
        """
        await super().stop(timeout)
