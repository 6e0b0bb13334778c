"""Log cost of malformed requests on the three servers as processes: 200 of them over raw sockets add a bounded
number of stderr lines (one ``bad request from …: <reason>`` line each, at most ten a second, then one
``suppressed K similar lines`` line), never a traceback; a normal request is logged as before."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from .conftest import Servers

MALFORMED = 200
MAX_NEW_LINES = 40  # 10 a second for the few seconds the burst takes, plus the summaries
# Requests aiohttp's parser refuses (400), each logged with a traceback at ERROR before (aiohttp logs an invalid
# method on a connection's first request at DEBUG only, so none is sent).
BAD_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
    b"GET /\x01 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
]
NORMAL_LINES = {
    "signalr-emulator": ("/api/v1/health", r"INFO emulator: REST GET /api/v1/health -> 200$"),
    "apim-gateway": ("/nothing-here", r"INFO gateway\.access: GET /nothing-here -> .*404 "),
    "chat-server": ("/healthz", r"INFO aiohttp\.access: 127\.0\.0\.1 GET /healthz -> 200 \(\d+ ms\)$"),
}


async def _send_raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        answer = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(4096):
                answer += chunk
        return answer
    finally:
        writer.close()


@pytest.mark.parametrize("name", ["signalr-emulator", "apim-gateway", "chat-server"])
async def test_malformed_requests_cost_a_bounded_number_of_lines_without_traceback(servers: Servers, name: str) -> None:
    served = servers.by_name[name]
    before = served.process.stderr().splitlines()
    for n in range(MALFORMED):  # bounded, one socket at a time
        answer = await _send_raw(served.port, BAD_REQUESTS[n % len(BAD_REQUESTS)])
        assert b"HTTP/1.0 400 Bad Request" in answer or b"HTTP/1.1 400 Bad Request" in answer, answer[:200]
    await served.process.stderr_line("suppressed \\d+ similar lines", timeout=3)
    new = served.process.stderr().splitlines()[len(before) :]
    text = "\n".join(new)
    assert len(new) <= MAX_NEW_LINES, text[-3000:]
    assert "Traceback" not in text and "Error handling request" not in text, text[-3000:]
    bad_lines = [line for line in new if "bad request from 127.0.0.1: " in line]
    assert bad_lines and all(" WARNING aiohttp.server: " in line for line in bad_lines)
    reasons = {line.split("bad request from 127.0.0.1: ", 1)[1] for line in bad_lines}
    assert all(re.fullmatch(r"[\x20-\x7e]{1,160}", reason) for reason in reasons), reasons
    suppressed = sum(int(m.group(1)) for line in new if (m := re.search(r"suppressed (\d+) similar lines", line)))
    # every malformed request is either a line or counted in a summary
    assert len(bad_lines) + suppressed == MALFORMED
    assert served.process.popen.poll() is None


@pytest.mark.parametrize("name", ["signalr-emulator", "apim-gateway", "chat-server"])
async def test_a_normal_request_is_logged_as_before(servers: Servers, name: str) -> None:
    served = servers.by_name[name]
    path, line = NORMAL_LINES[name]
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{served.port}{path}") as response:
        await response.read()
    await served.process.stderr_line(line, timeout=3)
