// Parse Mermaid diagrams with the npm `mermaid` package, the way the web page's mermaid.min.js does.
//
// stdin: a JSON array of diagram texts. stdout: one JSON line, an array with one result per diagram:
//   {"ok": true, "type": "sequence", "title": ..., "actors": [[id, name], ...],
//    "messages": [{"from", "to", "text", "type"}, ...], "notes": [{"from", "to", "text", "placement"}, ...]}
//   {"ok": false, "error": "Parse error on line 3: ..."}
// Texts come back with Mermaid's entity codes decoded (`#35;` → `#`), so a caller can compare them with what it meant
// to show. Mermaid sanitizes titles and labels with DOMPurify, which needs a DOM: jsdom provides the window.
import { JSDOM } from "jsdom";

const { window } = new JSDOM("<!DOCTYPE html><html><body></body></html>");
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false, logLevel: 5, securityLevel: "strict" });

const NAMED = { quot: '"', amp: "&", lt: "<", gt: ">", nbsp: "\u00a0", apos: "'" };

// Mermaid replaces an entity code by a placeholder before it parses (encodeEntities) and by the HTML entity when it
// draws; this turns the placeholders back into the characters.
function decode(text) {
  if (typeof text !== "string") return text;
  return text
    .replace(/ﬂ°°(\d+)¶ß/g, (_, code) => String.fromCodePoint(Number(code)))
    .replace(/ﬂ°(\w+)¶ß/g, (whole, name) => NAMED[name] ?? whole);
}

async function parseOne(text) {
  try {
    await mermaid.parse(text);
    const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
    const db = diagram.db;
    const result = { ok: true, type: diagram.type, title: decode(db.getDiagramTitle?.() ?? "") };
    if (diagram.type === "sequence") {
      result.actors = [...db.getActors().entries()].map(([id, actor]) => [id, decode(actor.description)]);
      const NOTE = db.LINETYPE.NOTE;
      const all = db.getMessages();
      result.messages = all
        .filter((m) => m.type !== NOTE && m.from !== undefined && m.to !== undefined)
        .map((m) => ({ from: m.from, to: m.to, text: decode(m.message), type: m.type }));
      result.notes = all
        .filter((m) => m.type === NOTE)
        .map((m) => ({ from: m.from, to: m.to, text: decode(m.message), placement: m.placement }));
    }
    return result;
  } catch (error) {
    return { ok: false, error: String(error?.message ?? error).slice(0, 2000) };
  }
}

let input = "";
for await (const chunk of process.stdin) input += chunk;
const texts = JSON.parse(input);
if (!Array.isArray(texts)) throw new Error("stdin must be a JSON array of diagram texts");
const results = [];
for (const text of texts) results.push(await parseOne(String(text)));
process.stdout.write(JSON.stringify(results) + "\n");
