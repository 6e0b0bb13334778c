// A Web PubSub peer driven by the official JavaScript client (@azure/web-pubsub-client), for interop tests.
//
// Usage:
//   node tests/interop/js/wps_peer.mjs (--url CLIENT_ACCESS_URL | --negotiate APP_SERVER_NEGOTIATE_URL)
//        [--protocol json|reliable] [--no-auto-reconnect] [--no-auto-rejoin] [--log-level none|error|warning|info|verbose]
//
// --url connects to a client access URL (wss?://host/client/hubs/<hub>?access_token=…) as it is; --negotiate asks the
// app server for one (POST, answer {"service":"webpubsub","url":…}) before every start and every reconnect.
//
// It speaks JSON lines. Events on stdout (one JSON object per line):
//   {"event":"started","connectionId":…,"userId":…,"url":"<the connected URL, access_token redacted>"}
//   {"event":"connected","connectionId":…,"userId":…}
//   {"event":"disconnected","connectionId":…,"message":"…"|null}
//   {"event":"stopped"}
//   {"event":"server-message","dataType":…,"data":…,"sequenceId":N|null}
//   {"event":"group-message","group":…,"fromUserId":…,"dataType":…,"data":…,"sequenceId":N|null}
//   {"event":"rejoin-group-failed","group":…,"error":"…"}
//   {"event":"result","id":N,"result":{"ackId":N|null,"isDuplicated":bool}}
//   {"event":"result","id":N,"error":"…","errorDetail":{"name":…,"message":…}|null}
//   {"event":"error","message":"…"}              (start failed; the process then exits with code 1)
// Binary data travels as base64 text ("dataType":"binary"), in both directions.
// Commands on stdin (one JSON object per line, "id" numbers the result event):
//   {"op":"joinGroup","id":N,"group":…}           {"op":"leaveGroup","id":N,"group":…}
//   {"op":"sendToGroup","id":N,"group":…,"dataType":"json|text|binary","data":…,"noEcho":bool,"fireAndForget":bool}
//   {"op":"sendEvent","id":N,"event":…,"dataType":…,"data":…,"fireAndForget":bool}
//   {"op":"drop"}    end the WebSocket without a close handshake (as a network failure: the client recovers or reconnects)
//   {"op":"stop"}    client.stop(), then exit 0 once the client reports stopped (or after 5 s)
// End of stdin stops the peer as "stop" does.
import { createInterface } from "node:readline";
import { setLogLevel } from "@azure/logger";
import { WebPubSubClient, WebPubSubJsonProtocol, WebPubSubJsonReliableProtocol } from "@azure/web-pubsub-client";

const PROTOCOLS = {
  json: () => WebPubSubJsonProtocol(),
  reliable: () => WebPubSubJsonReliableProtocol(),
};
const LOG_LEVELS = ["none", "error", "warning", "info", "verbose"];

function usage(message) {
  process.stderr.write(`wps_peer.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { url: null, negotiate: null, protocol: "reliable", autoReconnect: true, autoRejoin: true, logLevel: "none" };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case "--url": args.url = value(); break;
      case "--negotiate": args.negotiate = value(); break;
      case "--protocol": args.protocol = value(); break;
      case "--no-auto-reconnect": args.autoReconnect = false; break;
      case "--no-auto-rejoin": args.autoRejoin = false; break;
      case "--log-level": args.logLevel = value(); break;
      default: usage(`unknown argument ${flag}`);
    }
  }
  if ((args.url === null) === (args.negotiate === null)) usage("give exactly one of --url and --negotiate");
  if (!(args.protocol in PROTOCOLS)) usage(`--protocol must be one of ${Object.keys(PROTOCOLS).join(", ")}`);
  if (!LOG_LEVELS.includes(args.logLevel)) usage(`--log-level must be one of ${LOG_LEVELS.join(", ")}`);
  return args;
}

function emit(event) {
  // Pipes are written synchronously on Linux, so a line is out before any process.exit().
  process.stdout.write(JSON.stringify(event) + "\n");
}

function errorText(error) {
  if (error === undefined || error === null) return null;
  return error instanceof Error ? error.message : String(error);
}

// Access tokens never leave the peer: a URL is reported with its access_token (and subscription-key) replaced.
function redact(url) {
  return String(url).replace(/([?&](?:access_token|subscription-key|awps_reconnection_token)=)[^&#\s]*/gi, "$1***");
}

// Data as JSON can carry it: an ArrayBuffer (binary) as base64 text.
function dataOut(dataType, data) {
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("base64");
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64");
  return data === undefined ? null : data;
}

function dataIn(dataType, data) {
  if (dataType === "binary") {
    const bytes = Buffer.from(String(data), "base64");
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  }
  return data;
}

// The app server's negotiate answer: {"service":"webpubsub","url":…}; anything else is an error that says what came.
async function negotiate(url) {
  const response = await fetch(url, { method: "POST" });
  const text = await response.text();
  if (!response.ok) throw new Error(`negotiate ${redact(url)} answered ${response.status}: ${text.slice(0, 200)}`);
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    throw new Error(`negotiate ${redact(url)} answered with something that is not JSON: ${text.slice(0, 200)}`);
  }
  if (answer.service !== "webpubsub" || typeof answer.url !== "string") {
    throw new Error(`negotiate ${redact(url)} did not answer for Web PubSub: ${JSON.stringify(Object.keys(answer))}`);
  }
  return answer.url;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.logLevel !== "none") setLogLevel(args.logLevel);
  let lastUrl = args.url;
  // A WebPubSubClientCredential: the URL, or the function the client calls before each start and reconnect.
  const credential = args.url !== null
    ? args.url
    : {
        getClientAccessUrl: async () => {
          lastUrl = await negotiate(args.negotiate);
          return lastUrl;
        },
      };
  const client = new WebPubSubClient(credential, {
    protocol: PROTOCOLS[args.protocol](),
    autoReconnect: args.autoReconnect,
    autoRejoinGroups: args.autoRejoin,
    // A test's failures come fast: the default reconnect policy retries for ever.
    reconnectRetryOptions: { maxRetries: 3, retryDelayInMs: 500, maxRetryDelayInMs: 2000 },
    messageRetryOptions: { maxRetries: 0 }, // a failed send or ack is reported as it is, never sent twice
  });

  let firstConnected = null;
  let started = false;
  let stopped = false;
  client.on("connected", (e) => {
    emit({ event: "connected", connectionId: e.connectionId, userId: e.userId ?? null });
    if (firstConnected === null) firstConnected = e;
    maybeStarted();
  });
  client.on("disconnected", (e) => {
    emit({ event: "disconnected", connectionId: e.connectionId ?? null, message: e.message?.message ?? null });
  });
  client.on("stopped", () => {
    stopped = true;
    emit({ event: "stopped" });
  });
  client.on("server-message", (e) => {
    const m = e.message;
    emit({ event: "server-message", dataType: m.dataType, data: dataOut(m.dataType, m.data), sequenceId: m.sequenceId ?? null });
  });
  client.on("group-message", (e) => {
    const m = e.message;
    emit({
      event: "group-message",
      group: m.group,
      fromUserId: m.fromUserId ?? null,
      dataType: m.dataType,
      data: dataOut(m.dataType, m.data),
      sequenceId: m.sequenceId ?? null,
    });
  });
  client.on("rejoin-group-failed", (e) => {
    emit({ event: "rejoin-group-failed", group: e.group, error: errorText(e.error) });
  });

  let startResolved = false;
  function maybeStarted() {
    if (started || !startResolved || firstConnected === null) return;
    started = true;
    emit({ event: "started", connectionId: firstConnected.connectionId, userId: firstConnected.userId ?? null, url: redact(lastUrl) });
  }

  try {
    await client.start();
  } catch (error) {
    emit({ event: "error", message: errorText(error) ?? "start failed" });
    process.exit(1);
  }
  // start() resolves once the WebSocket is open; the "connected" message may come just after.
  startResolved = true;
  maybeStarted();

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    client.stop();
    for (let waited = 0; !stopped && waited < 5000; waited += 50) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    process.exit(0);
  };

  const report = (id, promise) => {
    promise.then(
      (result) => emit({ event: "result", id, result: { ackId: result?.ackId ?? null, isDuplicated: !!result?.isDuplicated } }),
      (error) => emit({ event: "result", id, error: errorText(error), errorDetail: error?.errorDetail ?? null }),
    );
  };

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    if (!line.trim()) return;
    let command;
    try {
      command = JSON.parse(line);
    } catch {
      process.stderr.write("wps_peer.mjs: ignoring a stdin line that is not JSON\n");
      return;
    }
    const dataType = command.dataType ?? "json";
    try {
      switch (command.op) {
        case "joinGroup":
          report(command.id, client.joinGroup(command.group));
          break;
        case "leaveGroup":
          report(command.id, client.leaveGroup(command.group));
          break;
        case "sendToGroup":
          report(command.id, client.sendToGroup(command.group, dataIn(dataType, command.data), dataType, {
            noEcho: !!command.noEcho,
            fireAndForget: !!command.fireAndForget,
          }));
          break;
        case "sendEvent":
          report(command.id, client.sendEvent(command.event, dataIn(dataType, command.data), dataType, {
            fireAndForget: !!command.fireAndForget,
          }));
          break;
        case "drop": {
          // The client's WebSocket (private fields, hence "if reachable"): terminate() ends the TCP connection
          // without a close frame, so the client sees code 1006 as after a network failure.
          const socket = client._wsClient && client._wsClient._socket;
          if (socket && typeof socket.terminate === "function") socket.terminate();
          else process.stderr.write("wps_peer.mjs: drop: the client's socket is not reachable\n");
          break;
        }
        case "stop":
          void stop();
          break;
        default:
          process.stderr.write(`wps_peer.mjs: unknown op ${JSON.stringify(command.op)}\n`);
          if (command.id !== undefined) emit({ event: "result", id: command.id, error: `unknown op ${command.op}` });
      }
    } catch (error) {
      if (command.id !== undefined) emit({ event: "result", id: command.id, error: errorText(error), errorDetail: null });
    }
  });
  lines.on("close", () => void stop());
}

main().catch((error) => {
  emit({ event: "error", message: errorText(error) ?? "failed" });
  process.exit(1);
});
