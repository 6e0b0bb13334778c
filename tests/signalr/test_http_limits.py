"""signalr.http_limits in-process: the head, body and idle timeouts on real loopback sockets (long responses are not
cut), the one-line rate-limited log of bad requests, and the flags."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage

from signalr.http_limits import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    BadRequestLogFilter,
    HttpLimits,
    add_limit_arguments,
    install_bad_request_log_filter,
    limit_connections,
    limits_from_args,
)

Serve = Callable[..., Awaitable[int]]


async def _hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _echo(request: web.Request) -> web.Response:
    return web.Response(text=str(len(await request.read())))


async def _events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for n in range(20):  # bounded: 20 events, 0.1 s apart
        await response.write(f"data: {n}\n\n".encode())
        await asyncio.sleep(0.1)
    return response


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
    return ws


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(header: float = 0.5, body: float = 0.5, idle: float = 0.5) -> int:
        app = web.Application()
        app.router.add_get("/", _hello)
        app.router.add_post("/echo", _echo)
        app.router.add_get("/events", _events)
        app.router.add_get("/ws", _ws)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        limit_connections(runner, HttpLimits(header_timeout=header, body_timeout=body, idle_timeout=idle))
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def _until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(4096):
            data += chunk
    return data, time.monotonic() - started


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


# --- head timeout -------------------------------------------------------------------------------------------------


async def test_a_head_that_never_completes_gets_408_and_is_closed(serve: Serve) -> None:
    port = await serve(header=0.5, idle=30)
    reader, writer = await _open(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    data, took = await _until_closed(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert 0.4 < took < 2.0


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(serve: Serve) -> None:
    port = await serve(header=0.5, idle=30)
    reader, writer = await _open(port)
    data, took = await _until_closed(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert 0.4 < took < 2.0


async def test_a_head_sent_in_slow_pieces_within_the_timeout_is_served(serve: Serve) -> None:
    port = await serve(header=1.0, idle=30)
    reader, writer = await _open(port)
    for piece in (b"GET / HT", b"TP/1.1\r\nHost: x\r\n", b"Connection: close\r\n\r\n"):
        writer.write(piece)
        await asyncio.sleep(0.2)
    data, _ = await _until_closed(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello")


async def test_the_next_head_on_a_keep_alive_connection_is_timed_too(serve: Serve) -> None:
    port = await serve(header=0.5, idle=30)
    reader, writer = await _open(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    first = await asyncio.wait_for(reader.readuntil(b"hello"), 5)
    assert first.startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.7)  # idle between requests: longer than the head timeout, not cut
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ...then a head that never ends
    data, took = await _until_closed(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 408")
    assert 0.4 < took < 2.0


async def test_pipelined_requests_are_all_answered(serve: Serve) -> None:
    port = await serve()
    reader, writer = await _open(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3 + b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, _ = await _until_closed(reader)
    writer.close()
    assert data.count(b"HTTP/1.1 200") == 4


# --- body timeout -------------------------------------------------------------------------------------------------


async def test_a_body_that_never_completes_is_cut_after_the_body_timeout(serve: Serve) -> None:
    port = await serve(header=30, body=0.5, idle=30)
    reader, writer = await _open(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    data, took = await _until_closed(reader)
    writer.close()
    assert b"200" not in data
    assert 0.4 < took < 2.0


async def test_a_body_in_pieces_within_the_timeout_is_served_and_the_connection_kept(serve: Serve) -> None:
    port = await serve(header=30, body=1.0, idle=30)
    reader, writer = await _open(port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n0123456789")
    await asyncio.sleep(0.3)
    writer.write(b"0123456789")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"20"
    await asyncio.sleep(1.3)  # past the body timeout of the finished request: nothing is cut
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data, _ = await _until_closed(reader)
    writer.close()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"hello")


# --- idle timeout -------------------------------------------------------------------------------------------------


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(serve: Serve) -> None:
    port = await serve(header=30, body=30, idle=0.5)
    reader, writer = await _open(port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"hello"), 5)
    data, took = await _until_closed(reader)
    writer.close()
    assert data == b""
    assert 0.3 < took < 2.5  # aiohttp rounds its keep-alive deadline up to the loop's clock resolution


# --- long responses are not cut -----------------------------------------------------------------------------------


async def test_an_event_stream_and_a_websocket_outlive_every_timeout(serve: Serve) -> None:
    port = await serve(header=0.3, body=0.3, idle=0.3)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/events") as events:
            text = await asyncio.wait_for(events.text(), 10)  # 20 events over 2 s: 6 times every timeout
        assert text.count("data: ") == 20 and "data: 19\n\n" in text
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws", autoping=False) as ws:
            await asyncio.sleep(1.2)
            await ws.send_str("still here")
            message = await ws.receive(timeout=5)
            assert message.type == aiohttp.WSMsgType.TEXT and message.data == "still here"


# --- logging ------------------------------------------------------------------------------------------------------


async def test_a_malformed_request_is_one_bad_request_line_without_an_access_line(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    log_filter = install_bad_request_log_filter()
    try:
        port = await serve(header=30, body=30, idle=30)
        caplog.set_level(logging.INFO)
        reader, writer = await _open(port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
        data, _ = await _until_closed(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.0 400")
        await asyncio.sleep(0.05)
    finally:
        logging.getLogger("aiohttp.server").removeFilter(log_filter)
    lines = [(r.name, r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name.startswith("aiohttp")]
    assert lines == [("aiohttp.server", "WARNING", "bad request from 127.0.0.1: Invalid header token", None)]


def _error_record(exc: BaseException, msg: str = "Error handling request from %s") -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, ("10.0.0.7",), exc_info)


def test_the_filter_turns_parse_errors_and_early_disconnects_into_one_line() -> None:
    log_filter = BadRequestLogFilter(per_second=100)
    bad = _error_record(BadHttpMessage("Invalid header token:\n\n    b'Bad\\x00Header'\n       ^"))
    assert log_filter.filter(bad)
    assert (bad.levelname, bad.getMessage(), bad.exc_info) == (
        "WARNING",
        "bad request from 10.0.0.7: Invalid header token",
        None,
    )
    gone = _error_record(ConnectionResetError("Connection lost"))
    assert log_filter.filter(gone)
    assert (gone.levelname, gone.getMessage(), gone.exc_info) == (
        "INFO",
        "request from 10.0.0.7 ended early: connection lost",
        None,
    )


def test_the_filter_leaves_a_handler_bug_and_other_lines_alone() -> None:
    log_filter = BadRequestLogFilter(per_second=1)
    for _ in range(3):  # not rate-limited either
        bug = _error_record(ZeroDivisionError("division by zero"))
        assert log_filter.filter(bug)
        assert bug.exc_info is not None and bug.levelname == "ERROR"
    plain = logging.LogRecord("aiohttp.server", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    assert log_filter.filter(plain) and plain.getMessage() == "hello x"


def test_control_characters_of_the_reason_are_escaped_and_it_is_short() -> None:
    record = _error_record(BadHttpMessage("bad\x1b[2J\x00" + "x" * 500))
    BadRequestLogFilter().filter(record)
    message = record.getMessage()
    assert "\x1b" not in message and "\x00" not in message and "\\x1b" in message
    assert len(message) < 220


def test_past_the_budget_lines_are_dropped_and_counted_in_one_summary(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log_filter = BadRequestLogFilter(per_second=5, clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    passed = sum(log_filter.filter(_error_record(BadHttpMessage("Invalid method"))) for _ in range(200))
    assert passed == 5
    assert not [r for r in caplog.records if "suppressed" in r.getMessage()]  # no loop here: said with the next line
    now[0] += 1.5
    assert log_filter.filter(_error_record(BadHttpMessage("Invalid method")))
    summaries = [r.getMessage() for r in caplog.records if "suppressed" in r.getMessage()]
    assert summaries == ["suppressed 195 similar lines (bad requests, early disconnects, connection limits)"]


async def test_with_a_running_loop_the_summary_comes_when_the_second_is_over(caplog: pytest.LogCaptureFixture) -> None:
    log_filter = BadRequestLogFilter(per_second=3)
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    passed = sum(log_filter.filter(_error_record(BadHttpMessage("Invalid method"))) for _ in range(50))
    assert passed == 3
    for _ in range(30):  # bounded wait: up to 1.5 s
        if any("suppressed" in r.getMessage() for r in caplog.records):
            break
        await asyncio.sleep(0.05)
    summaries = [r.getMessage() for r in caplog.records if "suppressed" in r.getMessage()]
    assert summaries == ["suppressed 47 similar lines (bad requests, early disconnects, connection limits)"]


def test_installing_twice_keeps_one_filter() -> None:
    first = install_bad_request_log_filter()
    try:
        assert install_bad_request_log_filter() is first
        assert sum(isinstance(f, BadRequestLogFilter) for f in logging.getLogger("aiohttp.server").filters) == 1
    finally:
        logging.getLogger("aiohttp.server").removeFilter(first)


# --- flags --------------------------------------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_limit_arguments(parser)
    return parser.parse_args(argv)


def test_flags_default_and_parse() -> None:
    assert limits_from_args(_parse()) == HttpLimits(DEFAULT_HEADER_TIMEOUT, DEFAULT_BODY_TIMEOUT, DEFAULT_IDLE_TIMEOUT)
    assert HttpLimits() == HttpLimits(10.0, 30.0, 30.0)
    limits = limits_from_args(_parse("--header-timeout", "2", "--body-timeout", "0.5", "--idle-timeout", "15"))
    assert limits == HttpLimits(header_timeout=2.0, body_timeout=0.5, idle_timeout=15.0)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "3601"])
def test_bad_flag_values_are_refused(value: str) -> None:
    with pytest.raises(argparse.ArgumentError):
        _parse("--idle-timeout", value)
    with pytest.raises(ValueError):
        HttpLimits(header_timeout=float(value) if value != "soon" else -1)


def test_limits_need_a_runner_that_is_set_up() -> None:
    runner = web.AppRunner(web.Application())
    with pytest.raises(RuntimeError):
        limit_connections(runner, HttpLimits())
