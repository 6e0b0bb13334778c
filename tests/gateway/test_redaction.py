"""Secrets never reach the gateway's log output."""

from __future__ import annotations

import io
import logging

from gateway.redaction import SCRUBBED_WITH, RedactingFilter, redact_query, redact_target
from signalr.redact import connection_token_tag


def test_redact_query_keeps_everything_else_byte_for_byte() -> None:
    raw = "hub=chat&asrs.op=%2Fchat&access_token=eyJ.a.b&id=t1&subscription-key=k1&ACCESS_TOKEN=x&code"
    assert (
        redact_query(raw)
        == f"hub=chat&asrs.op=%2Fchat&access_token=***&id={connection_token_tag('t1')}&subscription-key=***"
        "&ACCESS_TOKEN=***&code"
    )
    assert redact_query("key=v&x=1", {"key"}) == "key=***&x=1"
    assert redact_query("access%5Ftoken=v") == "access%5Ftoken=***"
    assert redact_target("/client/", "") == "/client/"
    assert redact_target("/client/", "access_token=v") == "/client/?access_token=***"


def test_redact_query_edge_cases_keep_the_raw_bytes() -> None:
    cases = {
        "": "",
        "&": "&",
        "a&&b": "a&&b",
        "=v&access_token": "=v&access_token",  # no "=": nothing to hide, kept as received
        "access_token=": "access_token=***",
        "access_token=a=b&x=%2F+": "access_token=***&x=%2F+",
        "Subscription-Key=k&acc%65ss+token=t": "Subscription-Key=***&acc%65ss+token=t",
        "access%5ftoken=t&ACCESS_TOKEN=u": "access%5ftoken=***&ACCESS_TOKEN=***",
        "x=1&subscription%2Dkey=k#frag": "x=1&subscription%2Dkey=***",
    }
    for raw, expected in cases.items():
        assert redact_query(raw) == expected, raw


def _redactor() -> RedactingFilter:
    redactor = RedactingFilter({"key"})
    redactor.add_secret("literal-subscription-key")
    return redactor


def _log_through_filter(
    message: str, *args: object, exc: BaseException | None = None, extra: dict[str, object] | None = None
) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_redactor())
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    if exc is not None:
        try:
            raise exc
        except BaseException:
            logger.exception(message, *args)
    else:
        logger.error(message, *args, extra=extra)
    return stream.getvalue()


def test_filter_scrubs_tokens_keys_and_urls() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    out = _log_through_filter(
        "failed %s with Authorization: Bearer %s and key literal-subscription-key",
        "http://h/client/?hub=chat&access_token=abc.def&key=qk",
        jwt,
    )
    for secret in (jwt, "abc.def", "qk", "literal-subscription-key"):
        assert secret not in out, out
    assert "hub=chat" in out and "Bearer ***" in out


def test_a_record_scrubbed_with_the_same_rules_passes_as_logged_and_any_other_is_scrubbed() -> None:
    line = "GET /client/?hub=chat&key=*** -> api/op 200 1.0 ms"
    same = _redactor().rules
    assert _log_through_filter("%s", line, extra={SCRUBBED_WITH: same}) == line + "\n"
    other = RedactingFilter({"key"}).rules  # without the literal key
    out = _log_through_filter("%s literal-subscription-key", line, extra={SCRUBBED_WITH: other})
    assert "literal-subscription-key" not in out
    out = _log_through_filter("GET /?key=qk", extra={SCRUBBED_WITH: ("forged", frozenset())})
    assert "qk" not in out


def test_filter_scrubs_exception_text() -> None:
    out = _log_through_filter("boom", exc=RuntimeError("url=http://h/?access_token=tok123 literal-subscription-key"))
    assert "tok123" not in out and "literal-subscription-key" not in out
    assert "RuntimeError" in out


def test_connection_tokens_and_tokens_in_the_path_never_reach_a_target() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln"
    target = redact_target(f"/client/{jwt[:15]}", f"hub=chat&id=tok%2B1&access_token={jwt}")
    assert target == f"/client/***?hub=chat&id={connection_token_tag('tok%2B1')}&access_token=***"
    assert redact_target("/client/", "id=~3f2a9c1b") == "/client/?id=~3f2a9c1b"  # already a tag
