"""``webpubsub-emulator`` as a real process for tests.

:func:`start_webpubsub_emulator` runs the console script on 127.0.0.1 (``--port 0`` unless ``port`` is given), reads
its ready line (the connection string), and returns what it says; stop it with ``stop()`` (by pid) or use it as a
context manager::

    with start_webpubsub_emulator(event_handler="http://127.0.0.1:5000/eventhandler/{event}") as emulator:
        client = WebPubSubServiceClient.from_connection_string(emulator.connection_string, hub="chat")
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.support.processes import Process, script

__all__ = ["WPS_EMULATOR_READY", "WebPubSubEmulator", "start_webpubsub_emulator"]

WPS_EMULATOR_READY = re.compile(r"^Endpoint=http://127\.0\.0\.1;Port=(\d+);AccessKey=([^;]+);Version=1\.0;$")
_READY_TIMEOUT = 20.0


@dataclass
class WebPubSubEmulator:
    """A running ``webpubsub-emulator`` and the connection string its ready line printed."""

    process: Process
    connection_string: str
    port: int
    access_key: str

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: append ``/client/hubs/…`` or ``/api/hubs/…``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_endpoint(self) -> str:
        """``ws://127.0.0.1:<port>``."""
        return f"ws://127.0.0.1:{self.port}"

    def connection_string_to(self, client_endpoint: str) -> str:
        """The connection string with clients sent to ``client_endpoint`` (a gateway)."""
        return f"{self.connection_string}ClientEndpoint={client_endpoint};"

    def stderr(self) -> str:
        return self.process.stderr()

    def stop(self) -> int:
        return self.process.stop()

    def __enter__(self) -> WebPubSubEmulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_webpubsub_emulator(
    *args: str, port: int = 0, event_handler: str | None = None, env: dict[str, str] | None = None
) -> WebPubSubEmulator:
    """Start ``webpubsub-emulator --port <port> [--event-handler <event_handler>] [args]``; raises (after stopping
    it) when the ready line does not come or is not a connection string."""
    argv = [script("webpubsub-emulator"), "--port", str(port)]
    if event_handler is not None:
        argv += ["--event-handler", event_handler]
    process = Process([*argv, *args], env=env)
    try:
        line = process.readline(_READY_TIMEOUT)
        match = WPS_EMULATOR_READY.match(line)
        if match is None:
            raise AssertionError(
                f"unexpected ready line {line!r} from {Path(argv[0]).name}; stderr:\n{process.stderr()}"
            )
    except BaseException:
        process.stop()
        raise
    return WebPubSubEmulator(process, match.group(0), int(match.group(1)), match.group(2))
