// The Chatroom page: the ASP.NET sample's index.html behaviour (docs/protocol.md §5) on the official
// @microsoft/signalr browser client, with a selectable transport, a selectable hub protocol (?protocol=json or
// messagepack, the latter through @microsoft/signalr-protocol-msgpack) and a status line naming the gateway.
// The same chat runs on Azure Web PubSub when the app server's negotiate answer says so ({"service": "webpubsub",
// "url": <client access URL>}): then the page talks through the official @azure/web-pubsub-client (reliable JSON
// subprotocol), sends the events broadcastMessage/echo with {name, message} and shows the server's
// {name, message, target} messages as the SignalR hub's calls.
// When the app server streams hop events (GET /flow/info, GET /flow: chat-demo's local stack), the page draws its own
// latest message's journey as a Mermaid sequence diagram under the chat (see "Flow" below).
"use strict";

(function () {
  const params = new URLSearchParams(window.location.search);
  const hub = document.body.dataset.hub || "chat";
  // Set by the server: clients reach the service through a ClientEndpoint (an APIM gateway or another proxy).
  const viaGateway = document.body.dataset.gateway === "true";
  const messages = document.getElementById("messages");
  const input = document.getElementById("message");
  const statusLine = document.getElementById("status");
  let username = "";
  let connection = null;
  // On Web PubSub: the WebPubSubClient (connection stays null).
  let wpsClient = null;
  // What the client logged while connecting: the last negotiate host (the gateway after the redirect) and the
  // transport it selected. Log messages are stable text, unlike the minified class names.
  let lastHost = "";
  let lastTransport = "";
  // The next invocationId of connection.invoke (SignalR) and ackId of sendEvent (Web PubSub): the flow id's parts.
  let nextInvocationId = 0;
  let nextAckId = 1;
  let wpsConnectionId = null;

  // Secrets must never reach the screen or the console (subscription key, access token).
  function redact(text) {
    return String(text).replace(/([?&](?:subscription-key|access_token|awps_reconnection_token)=)[^&#\s'"]*/gi, "$1***");
  }

  function setStatus(text, kind) {
    statusLine.textContent = redact(text);
    statusLine.className = "status" + (kind ? " " + kind : "");
  }

  // A connection that could not start: one short line a user can act on, the client's full text folded below it,
  // and the composer switched off (sending on a connection that never started only says "Cannot send data…").
  // `parts` are the page's own texts (hosts, no secrets) and links; the client's text is redacted here.
  function showConnectError(parts, fullText) {
    const line = document.getElementById("connect-error-text");
    line.textContent = "";
    for (const part of parts) {
      line.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
    }
    const details = document.getElementById("connect-error-details");
    details.hidden = !fullText;
    document.getElementById("connect-error-full").textContent = fullText ? redact(fullText) : "";
    document.getElementById("connect-error").hidden = false;
    setStatus("Could not connect", "error");
    setComposerEnabled(false, "Not connected: see the error above");
  }

  function setComposerEnabled(enabled, placeholder) {
    for (const id of ["message", "sendmessage", "echo"]) {
      document.getElementById(id).disabled = !enabled;
    }
    input.placeholder = placeholder;
  }

  // A link to this page with ?<key>= replaced, every other parameter kept (name, subscription key).
  function queryLink(key, value) {
    const query = new URLSearchParams(window.location.search);
    query.set(key, value);
    const link = document.createElement("a");
    link.href = "?" + query.toString();
    link.textContent = "?" + key + "=" + value;
    return link;
  }

  function transportLink(transport) {
    return queryLink("transport", transport);
  }

  // The transports that were tried and failed (FailedToStartTransportError), not those disabled by ?transport=.
  function failedTransports(error) {
    const names = [];
    for (const inner of (error && error.innerErrors) || []) {
      const match = inner && inner.errorType === "FailedToStartTransportError" && /^(\w+) failed:/.exec(inner.message);
      if (match) {
        names.push(match[1]);
      }
    }
    return names;
  }

  // Why start() failed, in terms of what to change. `lastHost` is where the last negotiate went: the app server,
  // or after the redirect the ClientEndpoint (gateway) or the service.
  function explainStartFailure(error) {
    const full = String((error && error.message) || error);
    const host = lastHost || window.location.host;
    const failed = failedTransports(error);
    if (failed.length > 0 && viaGateway) {
      // APIM serves one family per instance on client/ (docs/apim.md §2); the JS client has no fallback from WS.
      const other = failed.indexOf("WebSockets") === -1 ? "websockets" : "sse-lp";
      return [
        [
          failed.join(" and ") + " could not connect through the gateway " + host + ". API Management serves " +
            "either WebSockets (profile websocket) or SSE/LongPolling (profile sse-lp) on client/, not both: try ",
          transportLink(other),
          ".",
        ],
        full,
      ];
    }
    if (failed.length > 0) {
      return [[failed.join(" and ") + " could not connect to " + host + "."], full];
    }
    // fetch() rejects with a bare TypeError when nothing answered, and also when the answer had no CORS headers,
    // which is how an APIM 401 for the subscription key looks to a page (docs/apim.md §5).
    if (/Failed to fetch|NetworkError|Load failed/.test(full)) {
      if (host === window.location.host) {
        return [["The app server " + host + " is unreachable: is chat-server running?"], full];
      }
      if (viaGateway) {
        const advice = params.get("subscription-key")
          ? "check ?subscription-key=… in the page URL."
          : "add ?subscription-key=… to the page URL.";
        return [
          [
            "The gateway " + host + " refused the request or is unreachable. A gateway refuses a missing or " +
              "invalid subscription key: " + advice,
          ],
          full,
        ];
      }
      return [["The service " + host + " is unreachable or refused the request."], full];
    }
    return [["Could not connect through " + host + "."], full];
  }

  function generateRandomName() {
    return Math.random().toString(36).substring(2, 10);
  }

  // The sample's rule: not empty, no leading "_" (reserved for _SYSTEM_/_BROADCAST_), no "<" or ">".
  function isValidName(name) {
    return !!name && !name.startsWith("_") && name.indexOf("<") === -1 && name.indexOf(">") === -1;
  }

  // The sample asks with window.prompt in a loop; an in-page form keeps the same texts and can be driven by tests.
  function askName() {
    const preset = params.get("name");
    if (preset !== null && isValidName(preset)) {
      return Promise.resolve(preset);
    }
    const modal = document.getElementById("name-modal");
    const form = document.getElementById("name-form");
    const label = document.getElementById("name-label");
    const field = document.getElementById("name-input");
    label.textContent = preset === null ? "Enter your name:" : "Invalid input. Enter your name:";
    field.value = preset === null ? generateRandomName() : "";
    modal.hidden = false;
    field.focus();
    field.select();
    return new Promise(function (resolve) {
      form.addEventListener("submit", function onSubmit(event) {
        event.preventDefault();
        const name = field.value;
        if (!isValidName(name)) {
          label.textContent = "Invalid input. Enter your name:";
          field.value = "";
          field.focus();
          return;
        }
        form.removeEventListener("submit", onSubmit);
        modal.hidden = true;
        resolve(name);
      });
    });
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    node.className = className;
    if (text !== undefined) {
      node.textContent = text; // textContent escapes everything, the name included (the sample escapes only the message)
    }
    return node;
  }

  function appendMessage(name, message) {
    const entry = element("div", "message-entry");
    if (name === "_SYSTEM_") {
      entry.classList.add("system-message");
      entry.textContent = message;
    } else if (name === "_BROADCAST_") {
      entry.classList.add("text-center");
      entry.appendChild(element("div", "broadcast-message", message));
    } else {
      entry.classList.add(name === username ? "mine" : "theirs");
      entry.appendChild(element("div", "message-avatar", name));
      entry.appendChild(element("div", "message-content", message));
    }
    messages.appendChild(entry);
    messages.scrollTop = messages.scrollHeight;
  }

  // One callback for both targets, as in the sample: nothing is shown for an empty message.
  function messageCallback(name, message) {
    if (!message) {
      return;
    }
    appendMessage(String(name), String(message));
  }

  function showClosedModal() {
    document.getElementById("closed-modal").hidden = false;
  }

  // A message counts as delivered when the hub's completion arrives (invoke, not the sample's fire-and-forget send):
  // one that never reached the hub is shown with what was typed and a Resend button, never dropped silently.
  function deliver(target, text) {
    if (wpsClient) {
      deliverWebPubSub(target, text);
      return;
    }
    if (!connection) {
      showUndelivered(target, text, "Not connected.");
      return;
    }
    // The client numbers its invocations "0", "1", … per HubConnection (HubConnection._createInvocation); the page
    // makes one HubConnection and calls nothing else that takes a number, so this is the invocationId on the wire.
    const invocationId = String(nextInvocationId++);
    flowSent(target, text, connection.connectionId, invocationId);
    connection
      .invoke(target, username, text)
      .then(function () {
        flowCompleted(invocationId);
      })
      .catch(function (e) {
        showUndelivered(target, text, redact(e.message));
      });
  }

  function showUndelivered(target, text, reason) {
    const entry = element("div", "message-entry undelivered");
    const what = target === "echo" ? "Echo" : "Message";
    entry.appendChild(element("span", "undelivered-text", what + " not delivered: \u201c" + text + "\u201d \u2014 " + reason));
    const resend = element("button", "resend", "Resend");
    resend.type = "button";
    resend.addEventListener("click", function () {
      entry.remove();
      deliver(target, text);
    });
    entry.appendChild(resend);
    messages.appendChild(entry);
    messages.scrollTop = messages.scrollHeight;
  }

  function sendBroadcast() {
    if (input.value) {
      deliver("broadcastMessage", input.value);
    }
    input.value = "";
    input.focus();
  }

  function sendEcho() {
    // No empty check, as in the sample: an empty echo comes back as " (echo from server)".
    deliver("echo", input.value);
    input.value = "";
    input.focus();
  }

  function transportOption() {
    const T = signalR.HttpTransportType;
    const choices = {
      websockets: T.WebSockets,
      sse: T.ServerSentEvents,
      longpolling: T.LongPolling,
      "sse-lp": T.ServerSentEvents | T.LongPolling,
    };
    const wanted = params.get("transport");
    if (wanted === null || wanted === "") {
      return { ok: true, value: undefined }; // the sample's default: let the client choose
    }
    const value = choices[wanted.toLowerCase()];
    return value === undefined ? { ok: false, value: wanted } : { ok: true, value: value };
  }

  // The hub protocols the page speaks, by ?protocol= value; JSON is the sample's (and the client's) default.
  const PROTOCOLS = { json: "JSON", messagepack: "MessagePack" };
  const MSGPACK_BUNDLE = "/lib/signalr-protocol-msgpack.min.js";

  function protocolOption() {
    const wanted = params.get("protocol");
    if (wanted === null || wanted === "") {
      return { ok: true, value: "json" };
    }
    const name = wanted.trim().toLowerCase();
    return Object.prototype.hasOwnProperty.call(PROTOCOLS, name) ? { ok: true, value: name } : { ok: false, value: wanted };
  }

  function showProtocol(name) {
    document.getElementById("protocol-name").textContent = PROTOCOLS[name];
    document.getElementById("protocol").hidden = false;
  }

  // The MessagePack protocol is a second bundle (it adds signalR.protocols.msgpack): loaded only when asked for.
  function loadScript(src) {
    return new Promise(function (resolve) {
      const script = document.createElement("script");
      script.src = src;
      script.onload = function () {
        resolve(true);
      };
      script.onerror = function () {
        resolve(false);
      };
      document.head.appendChild(script);
    });
  }

  async function hubProtocol(name) {
    if (name !== "messagepack") {
      return { ok: true, value: undefined }; // the client's own JSON protocol
    }
    const loaded = await loadScript(MSGPACK_BUNDLE);
    const msgpack = loaded && signalR.protocols && signalR.protocols.msgpack;
    if (!msgpack || typeof msgpack.MessagePackHubProtocol !== "function") {
      return { ok: false, value: undefined };
    }
    return { ok: true, value: new msgpack.MessagePackHubProtocol() };
  }

  function hubUrl() {
    // The query reaches the negotiate request, and the server copies it into the redirect URL: this is how a
    // browser gets a subscription key to APIM (docs/apim.md §3).
    const query = new URLSearchParams();
    for (const key of ["subscription-key", "userId"]) {
      const value = params.get(key);
      if (value) {
        query.set(key, value);
      }
    }
    const text = query.toString();
    return "/" + hub + (text ? "?" + text : "");
  }

  const logger = {
    log: function (level, message) {
      const text = String(message);
      let match = /^Sending negotiation request: (\S+?)\.?$/.exec(text);
      if (match) {
        try {
          lastHost = new URL(match[1], window.location.href).host;
        } catch (e) {
          lastHost = "";
        }
      }
      match = /^Selecting transport '(\w+)'/.exec(text);
      if (match) {
        lastTransport = match[1];
      }
      if (level >= signalR.LogLevel.Warning) {
        console.warn("[signalr] " + redact(text));
      }
    },
  };

  async function start() {
    document.getElementById("composer").addEventListener("submit", function (event) {
      event.preventDefault();
      sendBroadcast();
    });
    document.getElementById("echo").addEventListener("click", function (event) {
      event.preventDefault();
      sendEcho();
    });
    document.getElementById("closed-dismiss").addEventListener("click", function () {
      document.getElementById("closed-modal").hidden = true;
    });

    const service = await probeService();
    if (service.webpubsub) {
      await startWebPubSub();
      return;
    }

    if (typeof signalR === "undefined") {
      document.getElementById("library-error").hidden = false;
      setStatus("The SignalR client library is missing: run make node, then reload.", "error");
      setComposerEnabled(false, "Not connected: see the message above");
      return;
    }
    const transport = transportOption();
    if (!transport.ok) {
      const wanted = redact(transport.value);
      showConnectError(["Unknown transport '" + wanted + "': use websockets, sse, longpolling or sse-lp."]);
      return;
    }
    const protocol = protocolOption();
    if (!protocol.ok) {
      showConnectError(["Unknown protocol '" + redact(protocol.value) + "': use json or messagepack."]);
      return;
    }
    showProtocol(protocol.value);
    if (protocol.value === "messagepack" && transport.value === signalR.HttpTransportType.ServerSentEvents) {
      // An event stream carries only text (docs/protocol.md §4.1); the client would refuse the transport.
      showConnectError([
        "MessagePack is binary and ServerSentEvents carries only text: use ",
        transportLink("websockets"),
        ", ",
        transportLink("longpolling"),
        " or ",
        transportLink("sse-lp"),
        ", or ",
        queryLink("protocol", "json"),
        " for ServerSentEvents.",
      ]);
      return;
    }
    const hubProtocolChoice = await hubProtocol(protocol.value);
    if (!hubProtocolChoice.ok) {
      showConnectError([
        "The MessagePack protocol library is missing: run make node in the project directory (it installs the " +
          "@microsoft/signalr-protocol-msgpack npm package), then reload this page, or use ",
        queryLink("protocol", "json"),
        ".",
      ]);
      return;
    }

    username = await askName();
    input.focus();

    const options = transport.value === undefined ? {} : { transport: transport.value };
    let builder = new signalR.HubConnectionBuilder().withUrl(hubUrl(), options).configureLogging(logger);
    if (hubProtocolChoice.value !== undefined) {
      builder = builder.withHubProtocol(hubProtocolChoice.value);
    }
    connection = builder.build();
    connection.on("broadcastMessage", function (name, message) {
      flowReceived("broadcastMessage", name, message);
      messageCallback(name, message);
    });
    connection.on("echo", function (name, message) {
      flowReceived("echo", name, message);
      messageCallback(name, message);
    });
    connection.onclose(function (error) {
      if (error && error.message) {
        console.error(redact(error.message));
      }
      setStatus("Disconnected", "error");
      showClosedModal();
    });

    setStatus("Connecting to /" + hub + "…");
    try {
      await connection.start();
    } catch (error) {
      // The sample only logs a failed start; the page says what to change, with the client's text folded below.
      console.error(redact(error.message));
      const explained = explainStartFailure(error);
      connection = null;
      showConnectError(explained[0], explained[1]);
      return;
    }
    setStatus("Connected as " + username + " · " + (lastTransport || "unknown transport") + " via " + lastHost, "ok");
    connection.send("broadcastMessage", "_SYSTEM_", username + " JOINED");
    startFlow("signalr");
  }

  // ---- Azure Web PubSub ----------------------------------------------------------------------------------------
  // https://learn.microsoft.com/azure/azure-web-pubsub/reference-client-sdk-javascript and
  // https://learn.microsoft.com/azure/azure-web-pubsub/reference-json-reliable-webpubsub-subprotocol

  const WPS_BUNDLE = "/lib/web-pubsub-client.js";
  let wpsHost = "";

  // Which service the app server answers for: only {"service": "webpubsub"} leaves the SignalR path, and anything
  // else (an error, a timeout, a SignalR answer) goes on exactly as before, where the SignalR client negotiates itself
  // and explains its own failures.
  async function probeService() {
    const abort = new AbortController();
    const timer = setTimeout(function () {
      abort.abort();
    }, 5000);
    try {
      const response = await fetch("/" + hub + "/negotiate", { method: "POST", signal: abort.signal });
      if (!response.ok) {
        return { webpubsub: false };
      }
      const answer = await response.json();
      return { webpubsub: !!answer && answer.service === "webpubsub" };
    } catch (e) {
      return { webpubsub: false };
    } finally {
      clearTimeout(timer);
    }
  }

  // A fresh client access URL from the app server, for the first start and every reconnect (a token expires). As on
  // SignalR, the page's ?userId= (if any) names the user; the chat name is not a user id (it may hold spaces or any
  // letter). A ?subscription-key= of the page goes on the URL, the only way a browser's WebSocket can carry it to an
  // APIM gateway (docs/apim.md §3).
  async function clientAccessUrl() {
    const userId = params.get("userId");
    const query = userId ? "?" + new URLSearchParams({ userId: userId }).toString() : "";
    const response = await fetch("/" + hub + "/negotiate" + query, { method: "POST" });
    if (!response.ok) {
      let text = (await response.text()).slice(0, 300);
      try {
        text = JSON.parse(text).error || text;
      } catch (e) {
        // not JSON: shown as it came
      }
      throw new WebPubSubStartError("refused to negotiate (" + response.status + "): " + text);
    }
    const answer = await response.json();
    if (!answer || answer.service !== "webpubsub" || typeof answer.url !== "string") {
      throw new WebPubSubStartError("answered negotiate without a Web PubSub URL.");
    }
    const url = new URL(answer.url);
    const key = params.get("subscription-key");
    if (key && !url.searchParams.has("subscription-key")) {
      url.searchParams.set("subscription-key", key);
    }
    wpsHost = url.host;
    return url.toString();
  }

  // The app server answered negotiate, but not with a client access URL: what it said, after "The app server <host> ".
  function WebPubSubStartError(message) {
    this.message = message;
  }

  function explainWebPubSubFailure(error) {
    const appServer = window.location.host;
    if (error instanceof WebPubSubStartError) {
      return [["The app server " + appServer + " " + redact(error.message)], ""];
    }
    // fetch() rejects with a bare TypeError when nothing answered.
    const full = error && error.message ? String(error.message) : "";
    if (!wpsHost) {
      return [["The app server " + appServer + " is unreachable: is chat-server running?"], full];
    }
    // A browser's WebSocket says nothing about why it failed (no status code): name the host and the likely cause.
    const detail = full || "The WebSocket to " + wpsHost + " closed before it opened.";
    if (viaGateway) {
      const advice = params.get("subscription-key")
        ? "check ?subscription-key=… in the page URL."
        : "add ?subscription-key=… to the page URL if the gateway requires one.";
      return [
        [
          "The gateway " + wpsHost + " refused the WebSocket or is unreachable. A gateway refuses a missing or " +
            "invalid subscription key: " + advice,
        ],
        detail,
      ];
    }
    return [["The Web PubSub service " + wpsHost + " refused the WebSocket or is unreachable."], detail];
  }

  function showWebPubSubLooks() {
    const title = "Azure Web PubSub Group Chat";
    document.title = title;
    document.querySelector(".topbar h1").textContent = title;
    const pill = document.getElementById("protocol");
    pill.title = "The Web PubSub subprotocol: json.reliable.webpubsub.azure.v1";
    pill.firstChild.textContent = "Subprotocol: ";
    document.getElementById("protocol-name").textContent = "reliable JSON";
    pill.hidden = false;
  }

  // A message counts as delivered when the service acknowledged the event (the event handler took it); one that
  // was not is shown with what was typed and a Resend button, as on SignalR.
  // The page gives each event its ackId (the client's own would be the same 1, 2, …): the flow id needs it before the
  // ack comes back. https://learn.microsoft.com/javascript/api/@azure/web-pubsub-client/sendeventoptions
  function deliverWebPubSub(target, text) {
    const ackId = nextAckId++;
    flowSent(target, text, wpsConnectionId, String(ackId));
    wpsClient
      .sendEvent(target, { name: username, message: text }, "json", { ackId: ackId })
      .then(function () {
        flowCompleted(String(ackId));
      })
      .catch(function (e) {
        const detail = e && e.errorDetail ? " " + e.errorDetail.name + ": " + e.errorDetail.message : "";
        showUndelivered(target, text, redact(((e && e.message) || String(e)) + detail));
      });
  }

  // The server's messages: JSON {name, message, target} with target broadcastMessage or echo and two strings, shown
  // as the hub's calls. Anything else (text, binary, another shape) is not chat and is left out.
  function onServerMessage(event) {
    const message = event && event.message;
    const data = message && message.dataType === "json" ? message.data : null;
    if (!data || typeof data !== "object" || (data.target !== "broadcastMessage" && data.target !== "echo")) {
      return;
    }
    if (typeof data.name !== "string" || typeof data.message !== "string") {
      return;
    }
    flowReceived(data.target, data.name, data.message);
    messageCallback(data.name, data.message);
  }

  async function startWebPubSub() {
    showWebPubSubLooks();
    if (typeof window.WebPubSubClient !== "function") {
      await loadScript(WPS_BUNDLE);
    }
    if (typeof window.WebPubSubClient !== "function" || typeof window.WebPubSubJsonReliableProtocol !== "function") {
      document.getElementById("wps-library-error").hidden = false;
      setStatus("The Web PubSub client library is missing: run make node, then reload.", "error");
      setComposerEnabled(false, "Not connected: see the message above");
      return;
    }

    username = await askName();
    input.focus();

    const client = new window.WebPubSubClient(
      { getClientAccessUrl: clientAccessUrl },
      {
        protocol: window.WebPubSubJsonReliableProtocol(),
        // A lost connection is recovered by the reliable subprotocol first; then a few new connections are tried.
        reconnectRetryOptions: { maxRetries: 3, retryDelayInMs: 1000, maxRetryDelayInMs: 5000 },
        // A failed event is shown with a Resend button, never sent again on its own: the client's default retries
        // would broadcast twice when only the ack was lost.
        messageRetryOptions: { maxRetries: 0 },
      }
    );
    client.on("server-message", onServerMessage);
    client.on("connected", function (event) {
      wpsConnectionId = event && typeof event.connectionId === "string" ? event.connectionId : null;
      setStatus("Connected as " + username + " · Web PubSub via " + wpsHost, "ok");
    });
    client.on("disconnected", function (event) {
      if (event && event.message && event.message.message) {
        console.warn("[web-pubsub] " + redact(event.message.message));
      }
      if (wpsClient) {
        setStatus("Reconnecting…", "error");
      }
    });
    client.on("stopped", function () {
      if (wpsClient) {
        setStatus("Disconnected", "error");
        showClosedModal();
      }
    });

    setStatus("Connecting to /" + hub + "…");
    try {
      await client.start();
    } catch (error) {
      const explained = explainWebPubSubFailure(error);
      console.error(redact(explained[1] || explained[0][0]));
      showConnectError(explained[0], explained[1]);
      return;
    }
    wpsClient = client;
    setStatus("Connected as " + username + " · Web PubSub via " + wpsHost, "ok");
    client
      .sendEvent("broadcastMessage", { name: "_SYSTEM_", message: username + " JOINED" }, "json", { ackId: nextAckId++ })
      .catch(function (e) {
        console.warn("[web-pubsub] " + redact((e && e.message) || String(e)));
      });
    startFlow("webpubsub");
  }

  // ---- Flow: the journey of the page's latest message ------------------------------------------------------------
  // The app server of the local stack (chat-demo) collects every role's hop events and streams them: GET /flow/info
  // answers when it does, GET /flow is an event stream of hops (JSON, one per event). The page keeps the hops whose
  // flow id is its latest message's, plus the gateway's hops of its connection while the message travels, adds its
  // own (the send, the delivery back, the completion), and draws them as a Mermaid sequence diagram: the five
  // lifelines in a fixed order, one arrow per hop. The flow id is the first 16 hex digits of
  // SHA-256("<connectionId>:<invocationId or ackId>"), as every role computes it (flow/ids.py; docs/server.md, "The
  // journey of your latest message").

  const MERMAID_BUNDLE = "/lib/mermaid.min.js";
  const LIFELINES = [
    ["client", "Client"],
    ["app", "App server"],
    ["apim", "APIM"],
    ["service", "Service"],
    ["others", "Other clients"],
  ];
  const LIFELINE_IDS = LIFELINES.map(function (pair) {
    return pair[0];
  });
  const HOP_KINDS = [
    "negotiate",
    "redirect",
    "connect",
    "upgrade",
    "send",
    "relay",
    "invoke",
    "upstream",
    "server-connection",
    "rest",
    "fan-out",
    "deliver",
    "poll",
  ];
  // Bounds: hops kept from the stream, the largest event read, a label's length, hops drawn for one message.
  const MAX_HOPS = 2000;
  const MAX_EVENT = 8192;
  const MAX_LABEL = 120;
  const MAX_DRAWN = 60;
  const NO_LOCAL_STACK = "Server hops need the local stack (chat-demo): a real Azure service and APIM do not report them.";

  const flow = {
    enabled: false,
    service: "signalr",
    hops: [], // from the stream, validated, oldest first
    seen: new Set(), // the event texts of those hops
    mine: null, // the latest message: {target, text, connectionId, messageId, flowId, sentAt, doneAt, own: [hops]}
    mermaid: null, // a promise of the Mermaid API once loaded
    drawing: false,
    dirty: false,
    renders: 0,
  };

  function nowSeconds() {
    return Date.now() / 1000;
  }

  async function flowIdOf(connectionId, messageId) {
    const bytes = new TextEncoder().encode(connectionId + ":" + messageId);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    let hex = "";
    for (let i = 0; i < 8; i++) {
      hex += digest[i].toString(16).padStart(2, "0");
    }
    return hex;
  }

  // A hop from the stream as the page uses it, or null when it is not one (anything malformed is dropped).
  function readHop(text) {
    if (typeof text !== "string" || text.length > MAX_EVENT) {
      return null;
    }
    let hop;
    try {
      hop = JSON.parse(text);
    } catch (e) {
      return null;
    }
    if (!hop || typeof hop !== "object" || Array.isArray(hop)) {
      return null;
    }
    if (typeof hop.at !== "number" || !isFinite(hop.at) || typeof hop.label !== "string") {
      return null;
    }
    if (LIFELINE_IDS.indexOf(hop.source) === -1 || LIFELINE_IDS.indexOf(hop.target) === -1) {
      return null;
    }
    if (HOP_KINDS.indexOf(hop.kind) === -1) {
      return null;
    }
    const optional = {
      status: "number",
      duration_ms: "number",
      count: "number",
      bytes: "number",
      flow_id: "string",
      connection_id: "string",
      transport: "string",
      mode: "string",
      service: "string",
      role: "string",
    };
    const out = { at: hop.at, source: hop.source, target: hop.target, kind: hop.kind, label: hop.label.slice(0, MAX_LABEL) };
    for (const key of Object.keys(optional)) {
      const value = hop[key];
      if (value === undefined || value === null) {
        out[key] = null;
      } else if (typeof value !== optional[key] || (typeof value === "number" && !isFinite(value))) {
        return null;
      } else {
        out[key] = typeof value === "string" ? value.slice(0, 200) : value;
      }
    }
    return out;
  }

  function showFlowNote(text) {
    const note = document.getElementById("flow-note");
    note.textContent = text;
    note.hidden = !text;
    document.getElementById("flow").hidden = false;
  }

  // Asks the app server whether it streams hops; subscribes when it does, says why there is no diagram when not.
  // The page says beforehand (data-flow="on", set by the app server started with --flow-port): a page of a server
  // without the stream never asks, so its console shows no failed request.
  async function startFlow(service) {
    flow.service = service;
    if (document.body.dataset.flow !== "on") {
      showFlowNote(NO_LOCAL_STACK);
      return;
    }
    let info = null;
    try {
      const response = await fetch("/flow/info", { cache: "no-store" });
      info = response.ok ? await response.json() : null;
    } catch (e) {
      info = null;
    }
    if (!info || info.enabled !== true || typeof EventSource !== "function") {
      showFlowNote(NO_LOCAL_STACK);
      return;
    }
    flow.enabled = true;
    document.getElementById("flow").hidden = false;
    showFlowNote("Send a message to see its journey.");
    const stream = new EventSource("/flow");
    // The stream starts with the last hops the server kept, again after each reconnect: a hop seen before (the same
    // event text) is not taken twice.
    stream.onmessage = function (event) {
      if (flow.seen.has(event.data)) {
        return;
      }
      const hop = readHop(event.data);
      if (!hop) {
        return;
      }
      hop.key = event.data;
      flow.seen.add(hop.key);
      flow.hops.push(hop);
      if (flow.hops.length > MAX_HOPS) {
        for (const old of flow.hops.splice(0, flow.hops.length - MAX_HOPS)) {
          flow.seen.delete(old.key);
        }
      }
      const mine = flow.mine;
      if (mine && (hop.flow_id ? hop.flow_id === mine.flowId : hop.at >= mine.sentAt - LEAD_S)) {
        scheduleDraw();
      }
    };
  }

  // One of the page's own hops (role client), ending now. Like the terminal chat's (chat/client_hops.py), a message
  // coming back says in its label how long after the send it came; the hop itself has no duration.
  function clientHop(source, target, kind, label) {
    return {
      at: nowSeconds(),
      role: "client",
      source: source,
      target: target,
      kind: kind,
      label: label,
      status: null,
      duration_ms: null,
      flow_id: null,
      connection_id: null,
      transport: flow.service === "webpubsub" ? "WebSockets" : lastTransport || null,
      mode: null,
      service: flow.service,
      count: null,
      bytes: null,
    };
  }

  // Where the client's frames go first: the gateway when there is one (a ClientEndpoint), else the service.
  function firstStop() {
    return viaGateway ? "apim" : "service";
  }

  function sinceSent(mine) {
    return ", " + ((nowSeconds() - mine.sentAt) * 1000).toFixed(1) + " ms after it was sent";
  }

  // The page sent a message: it becomes the one drawn. `messageId` is its invocationId (SignalR) or ackId (Web PubSub).
  function flowSent(target, text, connectionId, messageId) {
    if (!flow.enabled) {
      return;
    }
    const how = flow.service === "webpubsub" ? "sendEvent" : "invoke";
    const sent = clientHop("client", firstStop(), "send", target + " #" + messageId + " (" + how + ")");
    const mine = {
      target: target,
      text: text,
      connectionId: connectionId,
      messageId: messageId,
      flowId: null,
      sentAt: sent.at,
      doneAt: null,
      own: [sent],
    };
    flow.mine = mine;
    const section = document.getElementById("flow");
    section.dataset.connectionId = connectionId || "";
    section.dataset.messageId = messageId;
    delete section.dataset.flowId;
    if (!connectionId) {
      showFlowNote("No connection id: this message's server hops cannot be matched.");
      scheduleDraw();
      return;
    }
    flowIdOf(connectionId, messageId).then(
      function (id) {
        mine.flowId = id;
        if (flow.mine === mine) {
          document.getElementById("flow").dataset.flowId = id;
          scheduleDraw();
        }
      },
      function () {
        // crypto.subtle exists only in a secure context: https, or this machine (127.0.0.1, localhost).
        showFlowNote("This page cannot compute the flow id here: open it as http://127.0.0.1 or over https.");
      }
    );
  }

  // The page's own message came back (the broadcast, or the echo to its caller).
  function flowReceived(target, name, message) {
    const mine = flow.mine;
    if (!flow.enabled || !mine || mine.doneAt !== null || name !== username || target !== mine.target) {
      return;
    }
    const expected = target === "echo" ? mine.text + " (echo from server)" : mine.text;
    if (message !== expected) {
      return;
    }
    const hop = clientHop(firstStop(), "client", "deliver", target + " arrived back" + sinceSent(mine));
    mine.doneAt = hop.at;
    mine.own.push(hop);
    scheduleDraw();
  }

  // The hub's completion (SignalR) or the service's ack (Web PubSub) of the latest message.
  function flowCompleted(messageId) {
    const mine = flow.mine;
    if (!flow.enabled || !mine || mine.messageId !== messageId) {
      return;
    }
    const what = flow.service === "webpubsub" ? "ack of #" : "completion of #";
    mine.own.push(clientHop(firstStop(), "client", "deliver", what + messageId + sinceSent(mine)));
    scheduleDraw();
  }

  // Hops that set a connection up never join a message's journey (flow/journey.py CONNECTION_KINDS).
  const CONNECTION_KINDS = ["negotiate", "redirect", "connect", "upgrade"];
  // Hops whose connection id is the sender's (a deliver hop names a recipient), and the lifelines towards clients.
  const SENDER_KINDS = ["send", "invoke", "upstream", "server-connection"];
  const OUTBOUND = ["client", "others"];
  // Seconds a hop without a flow id may precede the journey's first hop, and follow its last (flow/journey.py).
  const LEAD_S = 0.5;
  const LINGER_S = 2.0;
  // The page knows when it sent: a hop without a flow id that ended before then is not this message's (the
  // connection's set-up just before, an earlier line). Hops are timed by this machine's clock, as the page is.
  const CLOCK_SLOP_S = 0.005;

  // When a hop began: its end less its duration (flow/hops.py Hop.started). Journeys are drawn in that order.
  function startedAt(hop) {
    return hop.duration_ms ? hop.at - hop.duration_ms / 1000 : hop.at;
  }

  // The latest message's hops, as flow/journey.py files them: those with its flow id; then hops without a flow id
  // (the gateway's relays) that happened while it travelled (not before the page sent it), of its connection or of
  // none known, not the set-up of a connection, and not of a connection that sent another message. The page's own
  // hops join them.
  function journeyHops() {
    const mine = flow.mine;
    if (!mine) {
      return [];
    }
    const hops = mine.own.slice();
    const ours = new Set(mine.connectionId ? [mine.connectionId] : []);
    if (mine.flowId) {
      const theirs = new Set();
      for (const hop of flow.hops) {
        if (hop.flow_id && hop.connection_id && SENDER_KINDS.indexOf(hop.kind) !== -1) {
          (hop.flow_id === mine.flowId ? ours : theirs).add(hop.connection_id);
        }
      }
      const flowHops = flow.hops.filter(function (hop) {
        return hop.flow_id === mine.flowId;
      });
      const timed = hops.concat(flowHops);
      const first = Math.min.apply(null, timed.map(startedAt));
      const last = Math.max.apply(null, timed.map(function (hop) {
        return hop.at;
      }));
      for (const hop of flow.hops) {
        if (hop.flow_id === mine.flowId) {
          hops.push(hop);
        } else if (
          !hop.flow_id &&
          CONNECTION_KINDS.indexOf(hop.kind) === -1 &&
          hop.at >= Math.max(first - LEAD_S, mine.sentAt - CLOCK_SLOP_S) &&
          // Towards the clients until a while after the journey's last hop; on the way in only near its start, so
          // the page's next message never joins this one.
          hop.at <= (OUTBOUND.indexOf(hop.target) !== -1 ? last + LINGER_S : first + LEAD_S) &&
          (!hop.connection_id || ours.has(hop.connection_id) || !theirs.has(hop.connection_id))
        ) {
          hops.push(hop);
        }
      }
    }
    // A stable sort: hops that began together stay in the order they came.
    const order = hops.map(function (hop, i) {
      return [startedAt(hop), i, hop];
    });
    order.sort(function (a, b) {
      return a[0] - b[0] || a[1] - b[1];
    });
    return arrows(order.map(function (entry) {
      return entry[2];
    }), ours).slice(0, MAX_DRAWN);
  }

  // One arrow per hop, as flow/journey.py Journey.arrows draws them: a hop both ends report (an upstream POST and
  // its receipt, a REST call and its receipt) once, from the sender's report; the answer to the sender's own poll
  // towards the client, not the other clients.
  function arrows(hops, senderConnections) {
    const key = function (hop) {
      return hop.source + ">" + hop.target + ">" + hop.kind;
    };
    const sent = new Map();
    for (const hop of hops) {
      if (hop.role === hop.source) {
        sent.set(key(hop), (sent.get(key(hop)) || 0) + 1);
      }
    }
    const drawn = [];
    for (let hop of hops) {
      const k = key(hop);
      if (hop.role === hop.target && hop.role !== hop.source && (sent.get(k) || 0) > 0) {
        sent.set(k, sent.get(k) - 1);
        continue;
      }
      if (hop.target === "others" && hop.kind !== "fan-out" && senderConnections.has(hop.connection_id)) {
        hop = Object.assign({}, hop, { target: "client" });
      }
      drawn.push(hop);
    }
    return drawn;
  }

  // Text inside a Mermaid statement, as flow/mermaid.py escape_text writes it: letters, digits and a few harmless
  // marks as they are, every other character as the entity code #<code point>; so that user text can never end a
  // statement (; or a newline), open a comment or directive (%%, {}), or start markup (<) or an entity (#).
  // https://mermaid.js.org/syntax/sequenceDiagram.html#entity-codes-to-escape-characters
  // No ":" among them: Mermaid reads a leading "wrap:" as a directive and its entity pass cuts text after ":" + ";".
  const SAFE_MARKS = " .,/()[]'?!@$*+=~|^_-\u00b7\u2026\u2192\u2190\u00d7";
  const MAX_TEXT = 200;

  function escapeText(text) {
    let chars = Array.from(String(text));
    if (chars.length > MAX_TEXT) {
      chars = chars.slice(0, MAX_TEXT - 1).concat(["\u2026"]);
    }
    let out = "";
    for (const ch of chars) {
      const plain = /^[\p{L}\p{N}]$/u.test(ch) || SAFE_MARKS.indexOf(ch) !== -1;
      out += plain ? ch : "#" + ch.codePointAt(0) + ";";
    }
    return out;
  }

  // An arrow's text (flow/mermaid.py arrow_text): the label, then the status, latency, recipients and size.
  function arrowText(hop) {
    const parts = [hop.label || hop.kind];
    if (hop.status !== null && hop.label.indexOf(String(hop.status)) === -1) {
      parts.push(String(hop.status));
    }
    if (hop.duration_ms !== null) {
      parts.push(hop.duration_ms.toFixed(1) + " ms");
    }
    if (hop.count !== null) {
      parts.push("\u00d7" + hop.count);
    }
    if (hop.bytes !== null) {
      parts.push(hop.bytes + " B");
    }
    return parts.join(" \u00b7 ");
  }

  const SERVICE_NAMES = { signalr: "Azure SignalR", webpubsub: "Azure Web PubSub" };
  const MODE_NAMES = { default: "Default mode", serverless: "Serverless mode" };

  // The note over all lifelines: service, mode, transport, flow id and the time end to end.
  function factsText(hops, flowId) {
    const seen = { service: [], mode: [], transport: [] };
    for (const hop of hops) {
      for (const key of ["service", "mode", "transport"]) {
        if (hop[key] && seen[key].indexOf(hop[key]) === -1) {
          seen[key].push(hop[key]);
        }
      }
    }
    const words = seen.service
      .map(function (s) {
        return SERVICE_NAMES[s] || s;
      })
      .concat(
        seen.mode.map(function (m) {
          return MODE_NAMES[m] || m;
        })
      )
      .concat(seen.transport);
    if (flowId) {
      words.push("flow " + flowId);
    }
    if (hops.length > 1) {
      const first = Math.min.apply(null, hops.map(startedAt));
      const last = Math.max.apply(null, hops.map(function (hop) {
        return hop.at;
      }));
      words.push(Math.max(0, (last - first) * 1000).toFixed(1) + " ms end to end");
    }
    return words.join(" \u00b7 ");
  }

  // The journey as Mermaid sequenceDiagram text, as flow/mermaid.py sequence_diagram draws it: the chat line as the
  // title, the five lifelines in their fixed order, the facts as a note, one arrow per hop (the service's pushes to
  // clients as asynchronous arrows).
  function sequenceDiagram(hops, title, flowId) {
    const lines = ["sequenceDiagram"];
    if (title) {
      lines.push("    title " + escapeText(title));
    }
    for (const pair of LIFELINES) {
      lines.push("    participant " + pair[0] + " as " + pair[1]);
    }
    const facts = factsText(hops, flowId);
    if (facts) {
      lines.push("    Note over client,others: " + escapeText(facts));
    }
    for (const hop of hops) {
      const arrow = hop.kind === "fan-out" || hop.kind === "deliver" ? "-)" : "->>";
      lines.push("    " + hop.source + arrow + hop.target + ": " + escapeText(arrowText(hop)));
    }
    if (!hops.length) {
      lines.push("    Note over client: no hop reported yet");
    }
    return lines.join("\n") + "\n";
  }

  function loadMermaid() {
    if (!flow.mermaid) {
      flow.mermaid = (typeof window.mermaid === "object" ? Promise.resolve(true) : loadScript(MERMAID_BUNDLE)).then(
        function (loaded) {
          if (!loaded || !window.mermaid || typeof window.mermaid.render !== "function") {
            return null;
          }
          window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
          return window.mermaid;
        }
      );
    }
    return flow.mermaid;
  }

  // The page's Content-Security-Policy refuses inline styles (style-src 'self'), and Mermaid's SVG carries a <style>
  // element and style attributes: they are applied through the CSSOM instead (a constructed style sheet and
  // element.style), which the policy allows, and the SVG is imported as nodes, never as HTML.
  function placeSvg(container, svgText) {
    const parsed = new DOMParser().parseFromString(svgText, "image/svg+xml");
    const svg = parsed.documentElement;
    if (!svg || svg.nodeName !== "svg") {
      return false;
    }
    let css = "";
    for (const style of Array.from(svg.querySelectorAll("style"))) {
      css += style.textContent;
      style.remove();
    }
    for (const script of Array.from(svg.querySelectorAll("script, foreignObject script"))) {
      script.remove();
    }
    const originals = [svg].concat(Array.from(svg.querySelectorAll("*")));
    const inline = originals.map(function (node) {
      const value = node.getAttribute("style");
      node.removeAttribute("style");
      return value;
    });
    const node = document.importNode(svg, true);
    const copies = [node].concat(Array.from(node.querySelectorAll("*")));
    copies.forEach(function (copy, i) {
      if (inline[i]) {
        copy.style.cssText = inline[i];
      }
    });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    document.adoptedStyleSheets = [sheet];
    container.replaceChildren(node);
    return true;
  }

  function scheduleDraw() {
    if (flow.drawing) {
      flow.dirty = true;
      return;
    }
    flow.drawing = true;
    setTimeout(draw, 50);
  }

  async function draw() {
    flow.dirty = false;
    const hops = journeyHops();
    const container = document.getElementById("flow-diagram");
    const mine = flow.mine;
    const text = sequenceDiagram(hops, mine ? username + ": " + mine.text : "", mine ? mine.flowId : null);
    const api = await loadMermaid();
    if (!api) {
      showFlowNote("The diagram library is missing: run make node in the project directory, then reload this page.");
    } else {
      try {
        flow.renders += 1;
        const rendered = await api.render("flow-svg-" + flow.renders, text);
        if (placeSvg(container, rendered.svg)) {
          container.dataset.hops = String(hops.length);
          const waiting = flow.mine && flow.mine.flowId && hops.length === flow.mine.own.length;
          showFlowNote(waiting ? "Waiting for the servers' hops…" : "");
        }
      } catch (e) {
        console.warn("[flow] " + redact((e && e.message) || String(e)));
      }
    }
    flow.drawing = false;
    if (flow.dirty) {
      scheduleDraw();
    }
  }

  start();
})();
