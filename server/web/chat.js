// The Chatroom page: the ASP.NET sample's index.html behaviour (docs/protocol.md §5) on the official
// @microsoft/signalr browser client, with a selectable transport, a selectable hub protocol (?protocol=json or
// messagepack, the latter through @microsoft/signalr-protocol-msgpack) and a status line naming the gateway.
// The same chat runs on Azure Web PubSub when the app server's negotiate answer says so ({"service": "webpubsub",
// "url": <client access URL>}): then the page talks through the official @azure/web-pubsub-client (reliable JSON
// subprotocol), sends the events broadcastMessage/echo with {name, message} and shows the server's
// {name, message, target} messages as the SignalR hub's calls.
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
    connection.invoke(target, username, text).catch(function (e) {
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
    connection.on("broadcastMessage", messageCallback);
    connection.on("echo", messageCallback);
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
  function deliverWebPubSub(target, text) {
    wpsClient.sendEvent(target, { name: username, message: text }, "json").catch(function (e) {
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
    client.on("connected", function () {
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
      .sendEvent("broadcastMessage", { name: "_SYSTEM_", message: username + " JOINED" }, "json")
      .catch(function (e) {
        console.warn("[web-pubsub] " + redact((e && e.message) || String(e)));
      });
  }

  start();
})();
