// The official @azure/web-pubsub-client's JSON protocol code as a codec peer for tests/webpubsub/test_codec_js.py.
// stdin: {"protocol": "json" | "reliable", "write": [message...], "parse": [frame...]}
// stdout: {"name": ..., "reliable": bool, "written": [frame...], "parsed": [message | null | {"error": text}...]}
// Binary data crosses as {"$bytes": "<base64>"} (an ArrayBuffer on the JS side).
import { WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } from "@azure/web-pubsub-client";

function toJs(value) {
  if (value && typeof value === "object" && typeof value.$bytes === "string") {
    const bytes = Buffer.from(value.$bytes, "base64");
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }
  return value;
}

function fromJs(value) {
  if (value instanceof ArrayBuffer) {
    return { $bytes: Buffer.from(new Uint8Array(value)).toString("base64") };
  }
  return value;
}

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const protocol = input.protocol === "reliable" ? WebPubSubJsonReliableProtocol() : WebPubSubJsonProtocol();
const written = input.write.map((message) => protocol.writeMessage({ ...message, data: toJs(message.data) }));
const parsed = input.parse.map((frame) => {
  try {
    const message = protocol.parseMessages(frame);
    if (message === null) return null;
    return { ...message, data: fromJs(message.data) };
  } catch (err) {
    return { error: String(err) };
  }
});
process.stdout.write(JSON.stringify({ name: protocol.name, reliable: protocol.isReliableSubProtocol, written, parsed }));
