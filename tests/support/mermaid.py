"""Parse Mermaid diagrams with the real npm ``mermaid`` package (``tests/flow/js/parse_mermaid.mjs`` under Node).

::

    [result] = parse_mermaid(sequence_diagram(journey))
    assert result["ok"], result["error"]
    assert [m["text"] for m in result["messages"]] == [...]

    results = parse_mermaid(mermaid_blocks(Path("flow.md").read_text()))   # every ```mermaid block of a recording

Each result is ``{"ok": True, "type": "sequence", "title", "actors": [[id, name]], "messages": [{"from", "to",
"text", "type"}], "notes": [{"from", "to", "text", "placement"}]}`` with entity codes decoded, or ``{"ok": False,
"error": "..."}``. One Node process parses a whole list (about a second to start); it is killed after ``timeout``
seconds. In async tests use :func:`parse_mermaid_async`, which does not block the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from tests.support.processes import REPO

__all__ = ["PARSE_SCRIPT", "MermaidError", "mermaid_blocks", "parse_mermaid", "parse_mermaid_async"]

PARSE_SCRIPT = REPO / "tests" / "flow" / "js" / "parse_mermaid.mjs"
_FENCE = re.compile(r"^```mermaid[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


class MermaidError(Exception):
    """Node or the mermaid package is missing, or the parse script failed (not a diagram's parse error: those come
    back as ``{"ok": False}``)."""


def mermaid_blocks(markdown: str) -> list[str]:
    """The contents of every ```` ```mermaid ```` fenced block of ``markdown``, in order."""
    return [match.group(1) for match in _FENCE.finditer(markdown)]


def _command() -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise MermaidError("node is not on PATH: install Node.js 20 and run `make node`")
    if not (REPO / "node_modules" / "mermaid" / "package.json").is_file():
        raise MermaidError("node_modules/mermaid is missing: run `make node`")
    return [node, str(PARSE_SCRIPT)]


def _results(stdout: bytes, stderr: bytes, returncode: int | None, count: int) -> list[dict[str, Any]]:
    lines = stdout.decode("utf-8", "replace").strip().split("\n")  # not splitlines(): U+2028 may be in a text
    if returncode != 0 or not lines:
        tail = stderr.decode("utf-8", "replace")[-2000:]
        raise MermaidError(f"parse_mermaid.mjs exited {returncode}: {tail}")
    results: list[dict[str, Any]] = json.loads(lines[-1])
    if len(results) != count:
        raise MermaidError(f"parse_mermaid.mjs answered {len(results)} results for {count} diagrams")
    return results


def parse_mermaid(diagrams: str | Sequence[str], timeout: float = 60) -> list[dict[str, Any]]:
    """Parse each diagram of ``diagrams`` (one text or a list) with the npm ``mermaid`` package; one result each."""
    texts = [diagrams] if isinstance(diagrams, str) else list(diagrams)
    done = subprocess.run(
        _command(), input=json.dumps(texts).encode(), capture_output=True, timeout=timeout, cwd=REPO, check=False
    )
    return _results(done.stdout, done.stderr, done.returncode, len(texts))


async def parse_mermaid_async(diagrams: str | Sequence[str], timeout: float = 60) -> list[dict[str, Any]]:
    """:func:`parse_mermaid` for async tests: the Node process runs while the event loop goes on."""
    texts = [diagrams] if isinstance(diagrams, str) else list(diagrams)
    process = await asyncio.create_subprocess_exec(
        *_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(json.dumps(texts).encode()), timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return _results(stdout, stderr, process.returncode, len(texts))
