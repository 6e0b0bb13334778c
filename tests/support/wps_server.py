"""Start ``chat-server --service webpubsub`` as a real process for tests.

    server = start_webpubsub_chat_server(connection_string)   # or: with start_webpubsub_chat_server(...) as server:
    negotiate_url = server.url + "/chat/negotiate?id=alice"
    server.stop()

The connection string goes in ``Azure__WebPubSub__ConnectionString``; the process runs in ``cwd`` (default: an empty
temporary directory, so no ``.env`` is read) and is stopped by its own pid.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.processes import Process, script
from tests.support.stack import SERVER_READY, _start_ready

__all__ = ["WebPubSubChatServer", "start_webpubsub_chat_server"]


@dataclass
class WebPubSubChatServer:
    """A running ``chat-server --service webpubsub`` and what its ready line said."""

    process: Process
    url: str
    """``http://127.0.0.1:<port>``, without a trailing slash: append ``/chat/negotiate``, ``/eventhandler``…"""
    port: int
    hub: str
    ready_line: str

    @property
    def negotiate_url(self) -> str:
        return f"{self.url}/{self.hub}/negotiate"

    @property
    def event_handler_url(self) -> str:
        return f"{self.url}/eventhandler"

    def stderr(self) -> str:
        """The server's log so far."""
        return self.process.stderr()

    def stop(self) -> int:
        """SIGTERM (then SIGKILL after 10 s); returns the exit code."""
        return self.process.stop()

    def __enter__(self) -> WebPubSubChatServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_webpubsub_chat_server(
    connection_string: str, *args: str, port: int = 0, cwd: Path | None = None
) -> WebPubSubChatServer:
    """Start ``chat-server --service webpubsub --port <port> [args]`` and wait for its ready line."""
    env = {"Azure__WebPubSub__ConnectionString": connection_string}
    argv = [script("chat-server"), "--service", "webpubsub", "--port", str(port), *args]
    workdir = cwd if cwd is not None else Path(tempfile.mkdtemp(prefix="wps-server-"))
    process, match = _start_ready(argv, SERVER_READY, env=env, cwd=workdir)
    url = re.sub(r"/$", "", match.group(1))
    return WebPubSubChatServer(process, url, int(match.group(2)), match.group(3), match.group(0))
