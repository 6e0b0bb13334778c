"""``chat.probe.verdict`` and ``chat.probe.report``, pure: observed steps in, verdicts, tables and JSON out."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from chat.probe import exit_code, render_table, report_json
from chat.probe.model import (
    ALL_TRANSPORTS,
    Cause,
    Cors,
    HostKind,
    NegotiateFindings,
    NetError,
    Outcome,
    ProbeOptions,
    ProbeReport,
    Profile,
    Step,
    StepResult,
    Target,
    TokenInfo,
    TransportReport,
    Works,
    origin_of,
    working_profiles,
)
from chat.probe.verdict import (
    GUIDE_URL,
    SERVICE_PLACEHOLDER,
    Context,
    conclude,
    export_command,
    judge_transport,
    service_url_for,
)
from signalr.negotiate import TransportType

WS, SSE, LP = ALL_TRANSPORTS
URL = "http://127.0.0.1:8080/client/?hub=chat&asrs.op=%2Fchat&id=~0a1b2c3d"
NEGOTIATE_URL = "http://127.0.0.1:8080/client/negotiate?hub=chat&negotiateVersion=1"
OPTIONS = ProbeOptions(url="http://127.0.0.1:5000/chat")
APP = StepResult(None, Step.APP_NEGOTIATE, Outcome.OK, "POST", "http://127.0.0.1:5000/chat/negotiate", 200, 2.0)
GOOD_CORS = Cors("http://127.0.0.1:5000", True, ("GET", "POST", "DELETE"), ("authorization",))


def step(
    kind: TransportType,
    name: Step,
    ok: bool = True,
    *,
    status: int | None = 200,
    apim: str | None = None,
    error: NetError | None = None,
    method: str = "POST",
    url: str = URL,
    body: str = "",
    cors: Cors | None = None,
    detail: str = "",
    elapsed: float = 5.0,
) -> StepResult:
    return StepResult(
        kind,
        name,
        Outcome.OK if ok else Outcome.FAILED,
        method=method,
        url=url,
        status=status,
        elapsed_ms=elapsed,
        error=error,
        apim=apim,
        body=body,
        cors=cors,
        detail=detail,
    )


def healthy(kind: TransportType, *, echo: bool = True) -> list[StepResult]:
    """The steps of a transport that worked all the way."""
    steps = [
        step(kind, Step.NEGOTIATE_PREFLIGHT, status=204, method="OPTIONS", url=NEGOTIATE_URL, cors=GOOD_CORS),
        step(kind, Step.NEGOTIATE, url=NEGOTIATE_URL),
    ]
    if kind is LP:
        steps.append(step(kind, Step.POLL_PREFLIGHT, status=204, method="OPTIONS", cors=GOOD_CORS))
    steps.append(step(kind, Step.CONNECT, status=101 if kind is WS else 200, method="GET", elapsed=3.0))
    if kind is not WS:
        steps.append(step(kind, Step.SEND_PREFLIGHT, status=204, method="OPTIONS", cors=GOOD_CORS))
    steps.append(step(kind, Step.HANDSHAKE, status=None, method="", elapsed=2.0))
    if echo:
        steps.append(step(kind, Step.ECHO, status=None, method="", elapsed=7.5))
    else:
        steps.append(StepResult(kind, Step.ECHO, Outcome.SKIPPED, detail="--no-echo"))
    steps.append(step(kind, Step.CLOSE))
    if kind is LP:
        steps.append(step(kind, Step.DELETE_PREFLIGHT, status=204, method="OPTIONS", cors=GOOD_CORS))
        steps.append(step(kind, Step.DELETE, status=202, method="DELETE"))
    return steps


def replaced(steps: Sequence[StepResult], new: StepResult, *, cut: bool = False) -> list[StepResult]:
    """``steps`` with the one of ``new``'s step replaced (and, with ``cut``, nothing after it)."""
    out: list[StepResult] = []
    for old in steps:
        if old.step is new.step:
            out.append(new)
            if cut:
                break
        else:
            out.append(old)
    return out


def findings(
    target: Target = Target.GATEWAY,
    kind: HostKind = HostKind.LOCAL,
    audience: str = "http://127.0.0.1/client/?hub=chat",
) -> NegotiateFindings:
    return NegotiateFindings(
        step=APP,
        redirect=True,
        redirect_url=URL,
        redirect_host="127.0.0.1:8080",
        host_kind=kind,
        target=target,
        target_evidence="test",
        token=TokenInfo(3600, 3599, audience),
    )


def context(target: Target = Target.GATEWAY, *, key: bool = False, kind: HostKind = HostKind.LOCAL) -> Context:
    return Context(findings(target, kind), key, "http://127.0.0.1:5000")


def judge(kind: TransportType, steps: Sequence[StepResult], ctx: Context | None = None) -> TransportReport:
    return judge_transport(kind, steps, ctx or context())


# --- working transports ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_TRANSPORTS)
def test_a_healthy_transport_works_with_the_echo_as_latency(kind: TransportType) -> None:
    report = judge(kind, healthy(kind))
    assert report.works is Works.YES
    assert report.latency_ms == 7.5
    assert report.problem is None and report.notes == ()


def test_without_echo_the_latency_is_connect_and_handshake() -> None:
    report = judge(WS, healthy(WS, echo=False))
    assert report.works is Works.YES
    assert report.latency_ms == 5.0


def test_apim_404_on_delete_is_a_harmless_note_with_the_with_delete_fix() -> None:
    delete = step(LP, Step.DELETE, False, status=404, apim="Resource not found", method="DELETE")
    report = judge(LP, replaced(healthy(LP), delete))
    assert report.works is Works.YES
    assert report.problem is None
    (note,) = report.notes
    assert note.code is Cause.NO_DELETE_OPERATION and note.harmless
    assert "clients send a Close message first" in note.cause
    assert note.fix is not None and "--with-delete" in note.fix.command


# --- the profile is the other one -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [SSE, LP])
def test_apim_404_on_the_connect_get_means_the_websocket_profile(kind: TransportType) -> None:
    connect = step(kind, Step.CONNECT, False, status=404, apim="Resource not found", method="GET")
    report = judge(
        kind, replaced(healthy(kind), connect, cut=True), Context(findings(), False, "o", configured=Profile.WEBSOCKET)
    )
    assert report.works is Works.NO
    assert report.problem is not None and report.problem.code is Cause.NO_CONNECT_OPERATION
    assert "no HTTP operation `GET /` on client/ — the websocket profile is configured" in report.problem.cause
    assert report.problem.fix is not None
    assert report.problem.fix.command.startswith("apim-gateway export --profile sse-lp --format bicep")
    assert "ServerSentEvents or LongPolling transport" in report.problem.fix.doc


def test_an_upgrade_answered_200_means_the_sse_lp_profile() -> None:
    connect = step(WS, Step.CONNECT, False, status=200, method="GET")
    report = judge(WS, replaced(healthy(WS), connect, cut=True))
    assert report.problem is not None and report.problem.code is Cause.UPGRADE_REFUSED
    assert "the sse-lp profile is configured" in report.problem.cause
    assert report.problem.fix is not None and "--profile websocket" in report.problem.fix.command
    assert "--with-delete" not in report.problem.fix.command


def test_an_event_stream_without_a_first_byte_is_buffered() -> None:
    connect = step(SSE, Step.CONNECT, False, status=None, error=NetError.TIMEOUT, method="GET", detail="no byte")
    report = judge(SSE, replaced(healthy(SSE), connect, cut=True))
    assert report.problem is not None and report.problem.code is Cause.SSE_BUFFERED
    assert '<forward-request buffer-response="false" />' in report.problem.cause
    assert report.problem.fix is not None and 'buffer-response="false"' in report.problem.fix.doc
    assert "--profile sse-lp" in report.problem.fix.command


# --- browsers only --------------------------------------------------------------------------------------------


def test_preflight_401_is_server_side_only_and_names_the_query_key() -> None:
    preflight = step(
        SSE, Step.NEGOTIATE_PREFLIGHT, False, status=401, apim="Access denied due to missing subscription key.",
        method="OPTIONS", cors=Cors(None, False, problem="no Access-Control-Allow-Origin header"),
    )  # fmt: skip
    report = judge(SSE, replaced(healthy(SSE), preflight), context(key=True))
    assert report.works is Works.SERVER_ONLY
    assert report.latency_ms == 7.5
    assert report.problem is not None and report.problem.code is Cause.PREFLIGHT_SUBSCRIPTION
    assert "browsers cannot send the key on a preflight" in report.problem.cause
    assert report.problem.fix is not None and "query parameter subscription-key" in report.problem.fix.doc


def test_preflight_404_is_a_missing_options_operation() -> None:
    preflight = step(LP, Step.POLL_PREFLIGHT, False, status=404, apim="Resource not found", method="OPTIONS")
    report = judge(LP, replaced(healthy(LP), preflight))
    assert report.works is Works.SERVER_ONLY
    assert report.problem is not None and report.problem.code is Cause.PREFLIGHT_NOT_FOUND
    assert report.problem.fix is not None and "OPTIONS operations" in report.problem.fix.doc


def test_preflight_without_the_right_cors_headers() -> None:
    bad = Cors(
        "*", True, problem="Access-Control-Allow-Origin is *, which browsers refuse for requests with credentials"
    )
    preflight = step(WS, Step.NEGOTIATE_PREFLIGHT, False, status=204, method="OPTIONS", cors=bad)
    report = judge(WS, replaced(healthy(WS), preflight))
    assert report.works is Works.SERVER_ONLY
    assert report.problem is not None and report.problem.code is Cause.CORS_REFUSED
    assert "Access-Control-Allow-Origin is *" in report.problem.cause


def test_an_answer_a_browser_cannot_read_is_server_side_only() -> None:
    negotiate = step(
        WS, Step.NEGOTIATE, url=NEGOTIATE_URL, cors=Cors(None, False, problem="no Access-Control-Allow-Origin header")
    )
    report = judge(WS, replaced(healthy(WS), negotiate))
    assert report.works is Works.SERVER_ONLY
    assert report.problem is not None and report.problem.code is Cause.CORS_REFUSED


# --- failures through the gateway -----------------------------------------------------------------------------


def negotiate_failure(kind: TransportType, ctx: Context | None = None, **kwargs: object) -> TransportReport:
    failed = step(kind, Step.NEGOTIATE, False, url=NEGOTIATE_URL, **kwargs)  # type: ignore[arg-type]
    return judge(kind, replaced(healthy(kind), failed, cut=True), ctx)


def test_apim_401_without_a_key_is_a_missing_key() -> None:
    report = negotiate_failure(WS, status=401, apim="Access denied due to missing subscription key. Make sure…")
    assert report.problem is not None and report.problem.code is Cause.SUBSCRIPTION_KEY_MISSING
    assert report.problem.fix is not None and "--subscription-key KEY" in report.problem.fix.doc
    assert "(APIM: Access denied due to missing subscription key.)" in report.problem.what


def test_apim_401_with_a_key_is_a_wrong_key() -> None:
    message = "Access denied due to invalid subscription key. Make sure to provide a valid key."
    report = negotiate_failure(WS, context(key=True), status=401, apim=message)
    assert report.problem is not None and report.problem.code is Cause.SUBSCRIPTION_KEY_INVALID


def test_nothing_listening_at_the_redirect() -> None:
    report = negotiate_failure(LP, context(Target.UNREACHABLE), status=None, error=NetError.REFUSED)
    assert report.problem is not None and report.problem.code is Cause.REDIRECT_UNREACHABLE
    assert "nothing answers at 127.0.0.1:8080" in report.problem.cause
    assert "the gateway is down" in report.problem.cause
    assert "ClientEndpoint" in report.problem.cause


def test_an_azure_api_host_that_does_not_resolve_is_the_gateway() -> None:
    ctx = context(Target.UNREACHABLE, kind=HostKind.APIM)
    report = negotiate_failure(WS, ctx, status=None, error=NetError.DNS)
    assert report.problem is not None and report.problem.code is Cause.GATEWAY_UNREACHABLE


def test_apim_500_is_a_wrong_backend() -> None:
    report = negotiate_failure(SSE, status=500, apim="Internal server error")
    assert report.problem is not None and report.problem.code is Cause.WRONG_BACKEND
    assert "Web service URL" in (report.problem.fix.doc if report.problem.fix else "")


def test_a_gateway_forwarding_to_something_else_is_a_wrong_backend() -> None:
    report = negotiate_failure(SSE, status=405, body="405: Method Not Allowed")
    assert report.problem is not None and report.problem.code is Cause.WRONG_BACKEND
    assert "not SignalR Service" in report.problem.cause


def test_a_refused_host_header_is_host_not_rewritten() -> None:
    body = "The Host header 'gw:8080' does not name this service (127.0.0.1)."
    report = negotiate_failure(WS, status=404, body=body)
    assert report.problem is not None and report.problem.code is Cause.HOST_NOT_REWRITTEN
    assert "Host" in report.problem.cause


def test_a_redirect_to_neither_gateway_nor_service_is_a_wrong_client_endpoint() -> None:
    report = negotiate_failure(WS, context(Target.OTHER), status=404, body="404: Not Found")
    assert report.problem is not None and report.problem.code is Cause.CLIENT_ENDPOINT_WRONG
    assert "ClientEndpoint" in report.problem.cause


def test_a_plain_401_is_a_refused_token() -> None:
    report = negotiate_failure(WS, context(Target.SERVICE), status=401, body="")
    assert report.problem is not None and report.problem.code is Cause.TOKEN_REJECTED


def test_a_transport_the_service_does_not_offer() -> None:
    report = negotiate_failure(SSE, detail="the service does not offer ServerSentEvents (it offers WebSockets)")
    assert report.problem is not None and report.problem.code is Cause.TRANSPORT_NOT_OFFERED


def test_handshake_and_echo_failures() -> None:
    handshake = step(WS, Step.HANDSHAKE, False, status=None, method="", detail="refused: bad protocol")
    report = judge(WS, replaced(healthy(WS), handshake, cut=True))
    assert report.problem is not None and report.problem.code is Cause.HANDSHAKE_FAILED
    assert "refused: bad protocol" in report.problem.cause
    echo = step(WS, Step.ECHO, False, status=None, method="", detail="no echo in time")
    report = judge(WS, replaced(healthy(WS), echo, cut=True))
    assert report.problem is not None and report.problem.code is Cause.ECHO_FAILED
    assert report.problem.fix is not None and "--no-echo" in report.problem.fix.doc


def test_steps_that_end_before_the_handshake_do_not_count_as_working() -> None:
    report = judge(WS, healthy(WS)[:2])
    assert report.works is Works.NO


# --- the whole report -----------------------------------------------------------------------------------------


def test_an_unreachable_app_server_is_the_problem_of_every_transport() -> None:
    app = StepResult(None, Step.APP_NEGOTIATE, Outcome.FAILED, "POST", OPTIONS.url, None, 1.0, NetError.REFUSED)
    report = conclude(OPTIONS, NegotiateFindings(step=app), {})
    assert report.problem is not None and report.problem.code is Cause.APP_UNREACHABLE
    assert [t.works for t in report.transports] == [Works.NO] * 3
    assert exit_code(report) == 1
    text = render_table(report)
    assert "the app server cannot be reached (connection refused)" in " ".join(text.split())
    assert "Exit 1." in text


def test_an_app_server_without_the_hub() -> None:
    app = StepResult(None, Step.APP_NEGOTIATE, Outcome.FAILED, "POST", OPTIONS.url, 404, 1.0, body="Not Found")
    report = conclude(OPTIONS, NegotiateFindings(step=app), {})
    assert report.problem is not None and report.problem.code is Cause.APP_NEGOTIATE_FAILED


def test_a_service_taken_from_the_audience_that_answers_404_is_something_else() -> None:
    steps = {
        kind: [
            step(kind, Step.NEGOTIATE_PREFLIGHT, status=204, method="OPTIONS", cors=GOOD_CORS),
            step(kind, Step.NEGOTIATE, False, status=404, body="404: Not Found", url=NEGOTIATE_URL),
        ]
        for kind in ALL_TRANSPORTS
    }
    report = conclude(OPTIONS, findings(Target.SERVICE), steps)
    assert report.negotiate.target is Target.OTHER
    assert {t.problem.code for t in report.transports if t.problem} == {Cause.CLIENT_ENDPOINT_WRONG}


def test_the_configured_profile_is_named_from_all_transports() -> None:
    steps = {
        WS: healthy(WS),
        SSE: replaced(healthy(SSE), step(SSE, Step.CONNECT, False, status=404, apim="Resource not found"), cut=True),
        LP: replaced(healthy(LP), step(LP, Step.CONNECT, False, status=404, apim="Resource not found"), cut=True),
    }
    report = conclude(OPTIONS, findings(), steps)
    assert report.working_profiles == (Profile.WEBSOCKET,)
    assert exit_code(report) == 0
    sse = report.transport(SSE)
    assert sse is not None and sse.problem is not None
    assert "the websocket profile is configured" in sse.problem.cause


@pytest.mark.parametrize(
    ("works", "profiles"),
    [
        ((Works.YES, Works.NO, Works.NO), (Profile.WEBSOCKET,)),
        ((Works.NO, Works.YES, Works.YES), (Profile.SSE_LP,)),
        ((Works.YES, Works.YES, Works.YES), (Profile.WEBSOCKET, Profile.SSE_LP)),
        ((Works.NO, Works.YES, Works.NO), ()),
        ((Works.SERVER_ONLY, Works.NO, Works.NO), ()),
        ((Works.NO, Works.YES, Works.SERVER_ONLY), ()),
    ],
)
def test_working_profiles_need_every_transport_of_the_profile(
    works: tuple[Works, Works, Works], profiles: tuple[Profile, ...]
) -> None:
    transports = tuple(TransportReport(k, w, None, ()) for k, w in zip(ALL_TRANSPORTS, works, strict=True))
    assert working_profiles(transports) == profiles


def test_export_commands_and_service_urls() -> None:
    assert export_command(Profile.WEBSOCKET) == (
        f"apim-gateway export --profile websocket --format bicep --service-url {SERVICE_PLACEHOLDER}"
    )
    assert export_command(Profile.SSE_LP).endswith("--with-delete")
    assert export_command(Profile.SSE_LP, subscription=True).endswith("--with-delete --subscription-required")
    assert service_url_for("https://Res.service.signalr.net/client/?hub=chat") == "https://res.service.signalr.net"
    assert service_url_for("http://127.0.0.1/client/?hub=chat") == SERVICE_PLACEHOLDER
    assert service_url_for("https://evil.example.com/client/") == SERVICE_PLACEHOLDER
    assert service_url_for("http://[::1") == SERVICE_PLACEHOLDER
    assert service_url_for(None) == SERVICE_PLACEHOLDER


def test_origin_of_writes_what_a_browser_sends() -> None:
    assert origin_of("http://LOCALHOST:5000/chat?x=1") == "http://localhost:5000"
    assert origin_of("https://chat.example.com:443/") == "https://chat.example.com"
    assert origin_of("http://[::1]:80/chat") == "http://[::1]"


# --- rendering ------------------------------------------------------------------------------------------------


def every_kind_of_report() -> ProbeReport:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    steps = {
        WS: replaced(healthy(WS), step(WS, Step.CONNECT, False, status=200, method="GET"), cut=True),
        SSE: replaced(
            healthy(SSE),
            step(SSE, Step.CONNECT, False, status=None, error=NetError.TIMEOUT, method="GET", detail="x" * 500),
            cut=True,
        ),
        LP: replaced(
            replaced(healthy(LP), step(LP, Step.DELETE, False, status=404, apim="Resource not found", method="DELETE")),
            step(LP, Step.POLL_PREFLIGHT, False, status=401, apim="Access denied " + token, method="OPTIONS"),
        ),
    }
    long_url = "http://127.0.0.1:5000/" + "a" * 300 + "?subscription-key=s3cr3t-key-value&access_token=" + token
    options = ProbeOptions(url=long_url, subscription_key="s3cr3t-key-value")
    return conclude(options, findings(), steps)


def test_the_table_fits_100_columns_and_prints_no_secret() -> None:
    text = render_table(every_kind_of_report())
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "s3cr3t" not in text and "eyJ" not in text
    assert "WebSockets        no" in text
    assert "LongPolling       server-side only" in text
    assert GUIDE_URL in text
    assert text.endswith("Exit 1.\n")
    # The export command stays copyable: long lines continue with a backslash.
    folded = " ".join(text.replace("\\\n", " ").split())
    assert "apim-gateway export --profile sse-lp --format bicep --service-url" in folded


def test_the_json_document_has_every_verdict_and_the_exit_code() -> None:
    report = every_kind_of_report()
    document = report_json(report)
    text = json.dumps(document)
    assert "s3cr3t" not in text and "eyJ" not in text
    assert document["exit_code"] == 1
    assert document["working_profiles"] == []
    rows = {row["transport"]: row for row in document["transports"]}
    assert rows["WebSockets"]["problem"]["code"] == "websocket-upgrade-refused"
    assert rows["WebSockets"]["failed_step"] == "connect"
    assert rows["ServerSentEvents"]["problem"]["code"] == "sse-buffered"
    assert rows["LongPolling"]["works"] == "server-side only"
    assert rows["LongPolling"]["failed_step"] == "poll preflight"
    assert [n["code"] for n in rows["LongPolling"]["notes"]] == ["no-delete-operation"]
    assert json.loads(text) == document


def test_a_progress_line_names_the_step_and_hides_secrets() -> None:
    from chat.probe import step_line

    token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    sse = step(SSE, Step.CONNECT, False, status=404, apim="Resource not found", method="GET",
               url=f"http://gw/client/?hub=chat&id=abc&access_token={token}")  # fmt: skip
    line = step_line(sse)
    assert line.startswith("ServerSentEvents connect: GET /client/ -> 404 (APIM: Resource not found) in 5.0 ms")
    assert line.endswith("[FAILED]")
    assert "eyJ" not in line
    app = step_line(APP)
    assert app == "app negotiate: POST /chat/negotiate -> 200 in 2.0 ms [ok]"
