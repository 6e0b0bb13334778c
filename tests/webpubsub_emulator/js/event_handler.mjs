// An independent event handler for the Web PubSub emulator's tests: the official @azure/web-pubsub-express
// WebPubSubEventHandler (it answers the abuse-protection OPTIONS and parses the CloudEvents) under a plain node:http
// server. Usage: node event_handler.mjs <hub> <allowed endpoint>
// Prints {"port": N} once listening, then one JSON line per request it got ({"method", "url", ...}) and per event
// the handler saw ({"event", "context", ...}). What the handler answers depends on the client's connect query
// (?mode=refuse | ?mode=assign) and on the user event's name (echo, fail, silent, state).
import http from "node:http";
import { WebPubSubEventHandler } from "@azure/web-pubsub-express";

const [hub, allowed] = process.argv.slice(2);

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function contextOf(req) {
  const c = req.context;
  return {
    connectionId: c.connectionId,
    userId: c.userId ?? null,
    hub: c.hub,
    eventName: c.eventName,
    signature: c.signature,
    origin: c.origin,
    states: c.states,
  };
}

const handler = new WebPubSubEventHandler(hub, {
  path: "/eventhandler/",
  allowedEndpoints: [allowed],
  handleConnect(req, res) {
    report({ event: "connect", context: contextOf(req), claims: req.claims, query: req.queries,
      subprotocols: req.subprotocols, headers: Object.keys(req.headers ?? {}) });
    const mode = (req.queries?.mode ?? [])[0];
    if (mode === "refuse") {
      res.fail(401, "not you");
    } else if (mode === "assign") {
      res.setState("color", "blue");
      res.success({ userId: "assigned-user", groups: ["from-handler"], roles: ["webpubsub.sendToGroup.from-handler"] });
    } else {
      res.success();
    }
  },
  onConnected(req) {
    report({ event: "connected", context: contextOf(req) });
  },
  onDisconnected(req) {
    report({ event: "disconnected", context: contextOf(req), reason: req.reason ?? null });
  },
  handleUserEvent(req, res) {
    const data = req.dataType === "binary" ? Buffer.from(req.data).toString("base64") : req.data;
    report({ event: "user", name: req.context.eventName, context: contextOf(req), dataType: req.dataType, data });
    switch (req.context.eventName) {
      case "echo":
        res.success(req.dataType === "json" ? JSON.stringify(req.data) : req.data, req.dataType);
        break;
      case "fail":
        res.fail(400, "this event fails");
        break;
      case "state":
        res.setState("seen", true);
        res.success("state set", "text");
        break;
      case "message": // a simple client's frame
        res.success("got " + (req.dataType === "binary" ? "binary" : req.data), "text");
        break;
      default:
        res.success();
    }
  },
});
const middleware = handler.getMiddleware();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  report({ method: req.method, url: req.url, origin: req.headers["webhook-request-origin"] ?? null,
    signature: req.headers["ce-signature"] ?? null, connectionId: req.headers["ce-connectionid"] ?? null });
  req.baseUrl = "";
  req.path = url.pathname;
  middleware(req, res, () => {
    res.statusCode = 404;
    res.end("not an event handler request");
  });
});
server.listen(0, "127.0.0.1", () => report({ port: server.address().port }));
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
