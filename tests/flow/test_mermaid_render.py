"""The diagrams flow/mermaid.py writes, drawn by mermaid.min.js in headless Chromium (as the web page and a Markdown
viewer draw them): hostile labels and chat lines render as text, with no element, handler or script of their own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flow.mermaid import arrow_text, sequence_diagram
from tests.flow.test_mermaid import HOSTILE, hostile_journey
from tests.support.browser import CHROMIUM_INSTALLED, DriverFactory, browser  # noqa: F401
from tests.support.processes import REPO

pytestmark = pytest.mark.skipif(
    not CHROMIUM_INSTALLED,
    reason="Chromium is not installed (Debian packages chromium and chromium-driver; `make test` installs them)",
)

MERMAID_JS = REPO / "node_modules" / "mermaid" / "dist" / "mermaid.min.js"
PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<script>window.__alerts = []; window.alert = (m) => window.__alerts.push(String(m));</script>
<script src="MERMAID"></script>
</head><body>
<script>
mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
window.renderAll = async (texts) => {
  const out = [];
  for (const [i, text] of texts.entries()) {
    try {
      const { svg } = await mermaid.render("d" + i, text);
      const div = document.createElement("div");
      div.innerHTML = svg;
      document.body.appendChild(div);
      const all = [...div.querySelectorAll("*")];
      out.push({
        ok: true,
        texts: [...div.querySelectorAll("text, .messageText, .noteText")].map((e) => e.textContent),
        title: (div.querySelector(".sequenceTitleText, text.titleText") || {}).textContent || "",
        scripts: div.querySelectorAll("script, iframe, img, foreignObject a").length,
        handlers: all.filter((e) => [...e.attributes].some((a) => a.name.toLowerCase().startsWith("on"))).length,
        html: all.filter((e) => ["b", "br", "i"].includes(e.localName)).length,
      });
    } catch (error) {
      out.push({ ok: false, error: String(error) });
    }
  }
  return out;
};
</script></body></html>
"""


@pytest.mark.skipif(not MERMAID_JS.is_file(), reason="node_modules/mermaid is missing: run `make node`")
def test_hostile_text_renders_as_text(browser: DriverFactory, tmp_path: Path) -> None:  # noqa: F811
    page = tmp_path / "render.html"
    page.write_text(PAGE.replace("MERMAID", MERMAID_JS.as_uri()), encoding="utf-8")
    driver = browser()
    driver.set_script_timeout(60)
    driver.get(page.as_uri())
    journeys = [hostile_journey(text, n) for n, text in enumerate(HOSTILE)]
    results: list[dict[str, Any]] = driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; window.renderAll(arguments[0]).then(done);",
        [sequence_diagram(j) for j in journeys],
    )
    time.sleep(0.5)  # an injected <img onerror> would fire by now
    assert driver.execute_script("return window.__alerts") == []
    for text, journey, result in zip(HOSTILE, journeys, results, strict=True):
        assert result["ok"], (text, result)
        assert result["scripts"] == 0 and result["handlers"] == 0 and result["html"] == 0, (text, result)
        drawn = [t.strip() for t in result["texts"]]
        arrows = [arrow_text(hop).strip() for hop in journey.hops]
        assert all(arrow in drawn for arrow in arrows), (text, arrows, drawn)  # each label drawn as the text it is
    # The hostile markup itself is drawn, literally.
    script_index = HOSTILE.index("<script>alert(1)</script>")
    assert "<script>alert(1)</script>" in " ".join(results[script_index]["texts"])
