"""The README's recorded journeys (one message on WebSockets, one on LongPolling) are valid Mermaid diagrams with the
five lifelines, and each shows the path its mode and transport take behind the gateway."""

from __future__ import annotations

from tests.support.mermaid import mermaid_blocks, parse_mermaid
from tests.support.processes import REPO

LIFELINES = ["Client", "App server", "APIM", "Service", "Other clients"]


def test_the_readme_shows_a_recorded_journey_on_websockets_and_one_on_longpolling() -> None:
    blocks = mermaid_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    websockets = [b for b in blocks if "· WebSockets ·" in b]
    longpolling = [b for b in blocks if "· LongPolling ·" in b]
    assert websockets and longpolling, "a recorded diagram of each transport"
    results = parse_mermaid([websockets[0], longpolling[0]])
    for result in results:
        assert result["ok"], result.get("error")
        assert [name for _, name in result["actors"]] == LIFELINES
    ws, lp = ([m["text"] for m in r["messages"]] for r in results)
    # Default mode: the service hands the invocation to the app server's server connection; no HTTP call.
    assert any("ConnectionData" in text for text in ws) and not any("upstream" in text for text in ws)
    # Serverless mode over LongPolling: the upstream POST, the REST send, and the answer to a poll through APIM.
    assert any("POST upstream" in text for text in lp) and any(":send 202" in text for text in lp)
    assert any(text.startswith("GET /client/ 200") for text in lp)
