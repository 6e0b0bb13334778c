// A SignalR peer driven by the official JavaScript client (@microsoft/signalr), for interop tests.
//
// Usage:
//   node tests/interop/js/peer.mjs --url URL [--transport websockets|sse|longpolling|auto]
//        [--header NAME=VALUE]... [--access-token TOKEN] [--on TARGET]...
//        [--log-level none|trace|debug|information|warning|error]
//        [--server-timeout MS] [--keep-alive MS] [--protocol json|messagepack]
//
// It speaks JSON lines. Events on stdout (one JSON object per line):
//   {"event":"started","connectionId":…,"transport":"WebSockets|ServerSentEvents|LongPolling","baseUrl":…}
//   {"event":"message","target":…,"arguments":[…]}
//   {"event":"result","id":N,"result":…}  or  {"event":"result","id":N,"error":"…"}
//   {"event":"closed","error":"…"|null}
//   {"event":"error","message":"…"}            (start failed; the process then exits with code 1)
// Commands on stdin (one JSON object per line):
//   {"op":"send","target":…,"arguments":[…]}          fire-and-forget; with "id":N a result event reports
//                                                      whether the client accepted it (null or the error)
//   {"op":"invoke","id":N,"target":…,"arguments":[…]}  → result event with the same id
//   {"op":"stop"}                                       → stop(), closed event, exit 0
// End of stdin counts as stop, so the peer never outlives the test that started it.
// With a log level other than none the client's log lines go to stderr, e.g.
//   "[Trace] (LongPolling transport) A 404 response was returned from sending a DELETE request."
//
// The package is loaded through require: its CommonJS build is the one that can load the Node
// WebSocket ("ws") and EventSource ("eventsource") modules; the ESM build only uses them when a
// global `require` exists, which ESM modules lack.

import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");

// --protocol: the hub protocol, as a user picks it with withHubProtocol().
const PROTOCOLS = {
  json: () => new signalR.JsonHubProtocol(),
  messagepack: () => new MessagePackHubProtocol(),
};

const TRANSPORTS = {
  websockets: signalR.HttpTransportType.WebSockets,
  sse: signalR.HttpTransportType.ServerSentEvents,
  longpolling: signalR.HttpTransportType.LongPolling,
  auto: undefined,
};

const LOG_LEVELS = {
  none: signalR.LogLevel.None,
  trace: signalR.LogLevel.Trace,
  debug: signalR.LogLevel.Debug,
  information: signalR.LogLevel.Information,
  warning: signalR.LogLevel.Warning,
  error: signalR.LogLevel.Error,
};

// The transport classes' names, mapped to the names used in negotiate's availableTransports.
const TRANSPORT_NAMES = {
  WebSocketTransport: "WebSockets",
  ServerSentEventsTransport: "ServerSentEvents",
  LongPollingTransport: "LongPolling",
};

function usage(message) {
  process.stderr.write(`peer.mjs: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { url: null, transport: "websockets", headers: {}, accessToken: null, on: [], logLevel: "none", protocol: "json" };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${flag} needs a value`);
      return argv[++i];
    };
    switch (flag) {
      case "--url": args.url = value(); break;
      case "--transport": args.transport = value(); break;
      case "--header": {
        const pair = value();
        const eq = pair.indexOf("=");
        if (eq <= 0) usage(`--header expects NAME=VALUE, got ${JSON.stringify(pair.split("=")[0])}`);
        args.headers[pair.slice(0, eq)] = pair.slice(eq + 1);
        break;
      }
      case "--access-token": args.accessToken = value(); break;
      case "--on": args.on.push(value()); break;
      case "--log-level": args.logLevel = value(); break;
      case "--server-timeout": args.serverTimeout = Number(value()); break;
      case "--keep-alive": args.keepAlive = Number(value()); break;
      case "--protocol": args.protocol = value(); break;
      default: usage(`unknown argument ${flag}`);
    }
  }
  if (!args.url) usage("--url is required");
  if (!(args.transport in TRANSPORTS)) usage(`--transport must be one of ${Object.keys(TRANSPORTS).join(", ")}`);
  if (!(args.protocol in PROTOCOLS)) usage(`--protocol must be one of ${Object.keys(PROTOCOLS).join(", ")}`);
  if (!(args.logLevel in LOG_LEVELS)) usage(`--log-level must be one of ${Object.keys(LOG_LEVELS).join(", ")}`);
  if (args.on.length === 0) args.on = ["broadcastMessage", "echo"];
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

class StderrLogger {
  constructor(minimumLevel) {
    this.minimumLevel = minimumLevel;
  }

  log(level, message) {
    if (level >= this.minimumLevel) {
      process.stderr.write(`[${signalR.LogLevel[level]}] ${message}\n`);
    }
  }
}

// The URL the client connected to after following redirects: the connect URL minus its "id=" parameter.
function baseUrlOf(connectUrl) {
  if (!connectUrl) return undefined;
  return connectUrl.replace(/([?&])id=[^&]*(&|$)/, (_, sep, next) => (next ? sep : "")).replace(/[?&]$/, "");
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const options = { headers: args.headers };
  if (TRANSPORTS[args.transport] !== undefined) options.transport = TRANSPORTS[args.transport];
  if (args.accessToken !== null) {
    const token = args.accessToken;
    options.accessTokenFactory = () => token;
  }
  const connection = new signalR.HubConnectionBuilder()
    .withUrl(args.url, options)
    .withHubProtocol(PROTOCOLS[args.protocol]())
    .configureLogging(new StderrLogger(LOG_LEVELS[args.logLevel]))
    .build();
  if (Number.isFinite(args.serverTimeout)) connection.serverTimeoutInMilliseconds = args.serverTimeout;
  if (Number.isFinite(args.keepAlive)) connection.keepAliveIntervalInMilliseconds = args.keepAlive;

  // HubConnection.connection is the HttpConnection (a private field, hence "if reachable"): its
  // _startTransport(url) receives the connect URL after all redirects.
  let connectUrl;
  const http = connection.connection;
  if (http && typeof http._startTransport === "function") {
    const original = http._startTransport.bind(http);
    http._startTransport = (url, format) => {
      connectUrl = url;
      return original(url, format);
    };
  }

  for (const target of args.on) {
    connection.on(target, (...received) => emit({ event: "message", target, arguments: received }));
  }

  let closed = false;
  connection.onclose((error) => {
    if (!closed) {
      closed = true;
      emit({ event: "closed", error: errorText(error) });
    }
  });

  try {
    await connection.start();
  } catch (error) {
    emit({ event: "error", message: errorText(error) });
    process.exit(1);
  }

  const transport = http && http.transport ? TRANSPORT_NAMES[http.transport.constructor.name] : undefined;
  const started = { event: "started", connectionId: connection.connectionId, transport: transport ?? null };
  const baseUrl = baseUrlOf(connectUrl);
  if (baseUrl !== undefined) started.baseUrl = baseUrl;
  emit(started);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await connection.stop();
    } catch (error) {
      process.stderr.write(`peer.mjs: stop failed: ${errorText(error)}\n`);
    }
    if (!closed) {
      closed = true;
      emit({ event: "closed", error: null });
    }
    process.exit(0);
  };

  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  lines.on("line", (line) => {
    if (!line.trim()) return;
    let command;
    try {
      command = JSON.parse(line);
    } catch {
      process.stderr.write(`peer.mjs: ignoring a stdin line that is not JSON\n`);
      return;
    }
    const target = command.target;
    const received = Array.isArray(command.arguments) ? command.arguments : [];
    switch (command.op) {
      case "send":
        connection.send(target, ...received).then(
          () => { if (command.id !== undefined) emit({ event: "result", id: command.id, result: null }); },
          (error) => {
            if (command.id !== undefined) emit({ event: "result", id: command.id, error: errorText(error) });
            else process.stderr.write(`peer.mjs: send failed: ${errorText(error)}\n`);
          },
        );
        break;
      case "invoke":
        connection.invoke(target, ...received).then(
          (result) => emit({ event: "result", id: command.id, result: result === undefined ? null : result }),
          (error) => emit({ event: "result", id: command.id, error: errorText(error) }),
        );
        break;
      case "stop":
        void stop();
        break;
      default:
        process.stderr.write(`peer.mjs: unknown op ${JSON.stringify(command.op)}\n`);
    }
  });
  lines.on("close", () => void stop());
}

main().catch((error) => {
  emit({ event: "error", message: errorText(error) });
  process.exit(1);
});
