/*
 * raydesk customer widget.
 *
 * Embedded with one tag:  <script src="https://HOST/widget.js" data-inbox="web" async></script>
 * (optional data-skill, data-name, data-email). A classic script, no imports and no build
 * step: the embed tag is a plain async <script>. Everything lives in this IIFE; the only
 * global is window.RaydeskWidget (open/close for hosts, disconnect/connect for tests).
 *
 * Protocol: docs/reference/protocol.md. Delivery: messages are deduplicated by
 * (conversation_id, seq); unacknowledged sends wait in localStorage with their
 * client_msg_id and are resent after every (re)connect, which the server deduplicates.
 * Security: every piece of text goes in through textContent / createTextNode, never
 * innerHTML; only http(s) URLs become links.
 */
(function () {
  "use strict";

  // document.currentScript is only set while this script runs for the first time, so it
  // is read before anything else (the tag is async: no DOM order to rely on later).
  var script = document.currentScript || findScriptTag();
  if (!script || window.RaydeskWidget || document.getElementById("raydesk-widget")) {
    return;
  }

  var ORIGIN = new URL(script.src, location.href).origin;
  var WS_URL = ORIGIN.replace(/^http/, "ws") + "/v1/ws";

  // Patterns from the protocol: anything else would be refused with bad_request.
  var SKILL_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  var MAX_TEXT_CHARS = 8000; // limits.max_text_chars default; the server has the last word
  var MAX_PAGE_CHARS = 2000; // POST /v1/visitors "page" limit

  var config = {
    inbox: validSkill(script.getAttribute("data-inbox"), "data-inbox"),
    skill: validSkill(script.getAttribute("data-skill"), "data-skill"),
    name: trimmed(script.getAttribute("data-name"), 200),
    email: trimmed(script.getAttribute("data-email"), 320),
  };

  // One visitor per raydesk origin and inbox, shared by every tab of the host site.
  var KEY_SUFFIX = ORIGIN + ":" + (config.inbox || "");
  var VISITOR_KEY = "raydesk:visitor:" + KEY_SUFFIX;
  var OUTBOX_KEY = "raydesk:outbox:" + KEY_SUFFIX;

  // Reconnect backoff: 0.5 s doubling to 15 s, each ±20 %, so a restarted server is not
  // hit by every widget in the same second. The cap is lower than the protocol's 30 s
  // example because a visitor watching the panel should not wait half a minute.
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_CAP_MS = 15000;
  var BACKOFF_JITTER = 0.2;
  // After 4429 (rate limited) the server asks us to send less: wait at least this long.
  var RATE_LIMITED_WAIT_MS = 30000;
  // A connection that stayed up this long was healthy: the next failure starts over at
  // the base delay (the protocol suggests "a while, such as a minute").
  var STABLE_CONNECTION_MS = 60000;
  // Until welcome says otherwise; the server's default heartbeat_s.
  var DEFAULT_HEARTBEAT_S = 30;
  // Typing: "off" after this long without a keystroke. Typing signals are not stored and
  // can be lost, so the agent's indicator also hides itself after TYPING_STALE_MS.
  var TYPING_IDLE_MS = 3000;
  var TYPING_STALE_MS = 8000;
  // A send refused with unavailable/rate_limited is tried again after this long.
  var RESEND_RETRY_MS = 2000;
  // Frames go out through a token bucket a little below the server's defaults
  // (limits.burst 20, limits.messages_per_s 5): a returning visitor's welcome can list 50
  // conversations, and a refused sync gets an error without a ref, so it would be lost.
  var BUCKET_SIZE = 15;
  var BUCKET_PER_S = 4;
  // Read cursors are sent once things settle, not once per message of a sync.
  var READ_DELAY_MS = 200;

  var OFFLINE_TEXT = "No one is available right now. Leave your message and we'll answer here.";
  var SYSTEM_FALLBACK = {
    opened: "Conversation opened",
    queued: "Waiting for an agent…",
    assigned: "An agent joined",
    handoff: "Connecting you to a person…",
    transferred: "Conversation transferred",
    closed: "Conversation closed",
  };

  var store = safeStorage();

  var state = {
    visitor: null, // {visitor_id, token}
    creatingVisitor: false,
    visitorFailures: 0,
    ws: null,
    welcomed: false,
    paused: false, // RaydeskWidget.disconnect(): no socket until connect()
    attempt: 0,
    reconnectTimer: 0,
    pingTimer: 0,
    welcomedAt: 0,
    conversations: new Map(), // conversation_id -> Conversation
    order: [], // conversation ids, oldest first
    storedIds: new Set(), // client_msg_ids the server has stored
    failed: new Map(), // client_msg_id -> {entry, reason}: refused for good
    open: false,
    unread: 0,
    queue: [], // frames waiting for the bucket
    tokens: BUCKET_SIZE,
    tokensAt: 0,
    drainTimer: 0,
    readTimer: 0,
    typingOn: false,
    typingConversation: null,
    typingTimer: 0,
    agentTypingTimer: 0,
  };

  var ui = null;

  // --- boot ---------------------------------------------------------------------------

  function boot() {
    ui = buildUi();
    state.visitor = readVisitor();
    renderPending();
    renderNotices();
    window.addEventListener("storage", onStorage);
    window.addEventListener("online", function () {
      if (!state.ws && state.visitor && !state.paused) {
        reconnectSoon(0);
      }
    });
    document.addEventListener("visibilitychange", scheduleRead);
    // A returning visitor connects at once, so agent replies arrive live and the launcher
    // can show an unread count. A new visitor is created only when the panel is opened:
    // page views alone create no customers.
    if (state.visitor) {
      connect();
    }
  }

  window.RaydeskWidget = Object.freeze({
    open: function () { openPanel(); },
    close: function () { closePanel(false); },
    toggle: function () { if (state.open) { closePanel(false); } else { openPanel(); } },
    /** Close the socket and stay offline until connect() (tests; hosts going idle). */
    disconnect: function () {
      state.paused = true;
      clearTimeout(state.reconnectTimer);
      if (state.ws) {
        var ws = state.ws;
        dropSocket();
        ws.close(1000, "paused");
      }
    },
    /** Connect again at once after disconnect(). */
    connect: function () {
      state.paused = false;
      state.attempt = 0;
      clearTimeout(state.reconnectTimer);
      if (state.visitor) { connect(); }
    },
    get connected() { return state.welcomed; },
  });

  // --- UI -------------------------------------------------------------------------------

  function buildUi() {
    var host = document.createElement("div");
    host.id = "raydesk-widget";
    var root = host.attachShadow({ mode: "open" });

    var css = el("link", { rel: "stylesheet", href: ORIGIN + "/widget.css" });
    root.appendChild(css);

    // Hidden until the stylesheet arrives: an unstyled panel would spill into the page.
    var frame = el("div", { class: "rd", hidden: "" });
    css.addEventListener("load", function () { frame.hidden = false; });
    css.addEventListener("error", function () {
      console.warn("[raydesk] could not load " + ORIGIN + "/widget.css (is it allowed by " +
                   "this page's Content-Security-Policy style-src?); the chat stays hidden");
    });
    root.appendChild(frame);

    var launcher = el("button", {
      type: "button", class: "launcher", "data-testid": "launcher",
      "aria-label": "Open chat", "aria-expanded": "false", "aria-controls": "rd-panel",
    });
    launcher.appendChild(chatIcon());
    var launcherClose = closeIcon();
    launcherClose.classList.add("icon--close");
    launcher.appendChild(launcherClose);
    var badge = el("span", { class: "badge", "data-testid": "unread", hidden: "",
                             "aria-hidden": "true" });
    launcher.appendChild(badge);

    var panel = el("section", {
      id: "rd-panel", class: "panel", role: "dialog", "aria-label": "Chat with us",
      "data-testid": "panel", hidden: "",
    });

    var head = el("header", { class: "head" });
    var titles = el("div", { class: "titles" });
    titles.appendChild(el("h2", { class: "title" }, "Chat with us"));
    var status = el("span", { class: "conn", "data-testid": "connection-status",
                              "data-state": "idle", role: "status" }, "");
    titles.appendChild(status);
    head.appendChild(titles);
    var closeButton = el("button", { type: "button", class: "close",
                                     "aria-label": "Close chat" });
    closeButton.appendChild(closeIcon());
    head.appendChild(closeButton);
    panel.appendChild(head);

    var queueNotice = el("div", { class: "notice notice--queue", "data-testid": "queue-notice",
                                  role: "status", hidden: "" });
    var offlineNotice = el("div", { class: "notice notice--offline",
                                    "data-testid": "offline-notice", role: "status",
                                    hidden: "" }, OFFLINE_TEXT);
    panel.appendChild(queueNotice);
    panel.appendChild(offlineNotice);

    var log = el("div", { class: "log", role: "log", "aria-live": "polite",
                          "aria-label": "Messages", "data-testid": "message-list",
                          tabindex: "0" });
    var intro = el("p", { class: "intro" }, "Hi! Ask us anything, we'll answer right here.");
    var conversations = el("div", { class: "conversations" });
    var pending = el("div", { class: "pending" });
    log.appendChild(intro);
    log.appendChild(conversations);
    log.appendChild(pending);
    panel.appendChild(log);

    var typing = el("div", { class: "typing", "data-testid": "typing-indicator", hidden: "",
                             "aria-live": "polite" }, "Agent is typing…");
    panel.appendChild(typing);

    var compose = el("div", { class: "compose" });
    compose.appendChild(el("label", { class: "sr-only", for: "rd-input" }, "Your message"));
    var input = el("textarea", {
      id: "rd-input", class: "input", rows: "1", maxlength: String(MAX_TEXT_CHARS),
      placeholder: "Write a message…", "data-testid": "message-input", autocomplete: "off",
    });
    compose.appendChild(input);
    var send = el("button", { type: "button", class: "send", "data-testid": "send-button",
                              "aria-label": "Send" });
    send.appendChild(sendIcon());
    compose.appendChild(send);
    panel.appendChild(compose);

    frame.appendChild(panel);
    frame.appendChild(launcher);
    document.body.appendChild(host);

    launcher.addEventListener("click", function () {
      if (state.open) { closePanel(true); } else { openPanel(); }
    });
    closeButton.addEventListener("click", function () { closePanel(true); });
    panel.addEventListener("keydown", function (event) {
      if (event.key === "Escape") {
        event.preventDefault();
        closePanel(true);
      }
    });
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        submit();
      }
    });
    input.addEventListener("input", function () {
      autosize(input);
      onTyping();
    });
    input.addEventListener("blur", function () { typingOff(); });
    send.addEventListener("click", function () { submit(); input.focus(); });

    return {
      host: host, root: root, frame: frame, launcher: launcher, badge: badge, panel: panel,
      status: status, queueNotice: queueNotice, offlineNotice: offlineNotice, log: log,
      intro: intro, conversations: conversations, pending: pending, typing: typing,
      input: input, send: send,
    };
  }

  function openPanel() {
    if (!ui) { return; }
    state.open = true;
    ui.panel.hidden = false;
    ui.frame.classList.add("rd--open");
    ui.launcher.setAttribute("aria-expanded", "true");
    ui.launcher.setAttribute("aria-label", "Close chat");
    state.unread = 0;
    renderUnread();
    ensureVisitor();
    renderStatus();
    scrollToEnd(true);
    ui.input.focus();
    scheduleRead();
  }

  function closePanel(returnFocus) {
    if (!ui || !state.open) { return; }
    state.open = false;
    typingOff();
    ui.panel.hidden = true;
    ui.frame.classList.remove("rd--open");
    ui.launcher.setAttribute("aria-expanded", "false");
    ui.launcher.setAttribute("aria-label", "Open chat");
    if (returnFocus) { ui.launcher.focus(); }
  }

  function renderStatus() {
    var label, kind;
    if (state.welcomed) {
      label = "Online"; kind = "online";
    } else if (state.ws) {
      label = "Connecting…"; kind = "connecting";
    } else if (state.visitor || state.creatingVisitor) {
      label = state.paused ? "Offline" : "Reconnecting…"; kind = "offline";
    } else {
      label = ""; kind = "idle";
    }
    ui.status.textContent = label;
    ui.status.setAttribute("data-state", kind);
  }

  function renderUnread() {
    ui.badge.hidden = state.unread === 0 || state.open;
    ui.badge.textContent = state.unread > 9 ? "9+" : String(state.unread);
    ui.launcher.setAttribute("aria-label", state.open ? "Close chat" :
      state.unread ? "Open chat, " + state.unread + " new" : "Open chat");
  }

  function renderNotices() {
    var conv = currentConversation();
    var waiting = conv && conv.status === "queued" && conv.queue;
    if (waiting && conv.queue.position) {
      ui.queueNotice.textContent = "You are number " + conv.queue.position + " in the queue";
      ui.queueNotice.hidden = false;
    } else {
      ui.queueNotice.hidden = true;
    }
    ui.offlineNotice.hidden = !(waiting && conv.queue.agentsOnline === 0);
  }

  function renderIntro() {
    ui.intro.hidden = state.order.length > 0 || ui.pending.childElementCount > 0;
  }

  function autosize(input) {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 140) + "px";
  }

  function nearEnd() {
    var log = ui.log;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  function scrollToEnd(force) {
    if (force || nearEnd()) {
      ui.log.scrollTop = ui.log.scrollHeight;
    }
  }

  // --- message rendering ------------------------------------------------------------

  function conversationBox(conv) {
    if (!conv.box) {
      conv.box = el("div", { class: "conversation", "data-conversation": conv.id });
    }
    return conv.box;
  }

  /** Put the conversations' boxes in order, oldest first. */
  function placeConversations() {
    for (var i = 0; i < state.order.length; i++) {
      var box = conversationBox(state.conversations.get(state.order[i]));
      if (ui.conversations.children[i] !== box) {
        ui.conversations.insertBefore(box, ui.conversations.children[i] || null);
      }
    }
    renderIntro();
  }

  function renderMessage(conv, msg) {
    var role = msg.sender && msg.sender.role;
    var node;
    if (role === "system") {
      var kind = msg.event && msg.event.kind;
      node = el("div", { class: "msg msg--system", "data-testid": "message",
                         "data-role": "system", "data-kind": kind || "" },
                msg.text || SYSTEM_FALLBACK[kind] || "");
    } else {
      node = el("div", { class: "msg msg--" + (role === "customer" ? "customer" : "staff") +
                           (role === "bot" ? " msg--bot" : ""),
                         "data-testid": "message", "data-role": role || "unknown" });
      if (role === "bot") {
        node.appendChild(el("span", { class: "label" }, "Bot"));
      }
      var body = el("div", { class: "text" });
      appendLinkified(body, msg.text || "");
      node.appendChild(body);
      var meta = el("div", { class: "meta" });
      if (typeof msg.ts === "number") {
        meta.appendChild(el("time", { datetime: new Date(msg.ts).toISOString() },
                            clock(msg.ts)));
      }
      if (role === "customer") {
        meta.appendChild(el("span", { class: "tick", "data-testid": "message-status" }));
      }
      node.appendChild(meta);
      if (msg.client_msg_id) { node.setAttribute("data-client-msg-id", msg.client_msg_id); }
    }
    node.setAttribute("data-seq", String(msg.seq));
    node.setAttribute("data-conversation", conv.id);
    return node;
  }

  /** Mark a customer message ✓ (stored) or ✓✓ (the agent's read cursor reached it). */
  function setTick(node, read) {
    var tick = node.querySelector(".tick");
    if (!tick) { return; }
    node.setAttribute("data-status", read ? "read" : "sent");
    tick.textContent = read ? "✓✓" : "✓";
    tick.setAttribute("aria-label", read ? "Read" : "Sent");
    tick.setAttribute("title", read ? "Read" : "Sent");
  }

  function insertMessage(conv, msg) {
    var node = renderMessage(conv, msg);
    if (msg.sender && msg.sender.role === "customer") {
      setTick(node, conv.agentRead >= msg.seq);
    }
    var box = conversationBox(conv);
    // Messages arrive in seq order except while a sync and live events interleave.
    var before = null;
    for (var child = box.lastElementChild; child; child = child.previousElementSibling) {
      if (Number(child.getAttribute("data-seq")) > msg.seq) { before = child; } else { break; }
    }
    box.insertBefore(node, before);
    conv.nodes.set(msg.seq, node);
  }

  function updateTicks(conv) {
    conv.nodes.forEach(function (node, seq) {
      if (node.getAttribute("data-role") === "customer") {
        setTick(node, conv.agentRead >= seq);
      }
    });
  }

  /** Unacknowledged sends (from localStorage, so also other tabs' and before a reload)
   *  and refused ones, after the stored messages. */
  function renderPending() {
    if (!ui) { return; }
    var mine = state.visitor ? state.visitor.visitor_id : null;
    var wanted = [];
    readOutbox().forEach(function (entry) {
      if (!state.storedIds.has(entry.id) && (!entry.visitor || !mine || entry.visitor === mine)) {
        wanted.push({ entry: entry, failed: null });
      }
    });
    state.failed.forEach(function (item) { wanted.push({ entry: item.entry, failed: item.reason }); });
    var existing = new Map();
    Array.prototype.forEach.call(ui.pending.children, function (node) {
      existing.set(node.getAttribute("data-client-msg-id"), node);
    });
    var keep = new Set();
    wanted.forEach(function (item) {
      var id = item.entry.id;
      keep.add(id);
      var node = existing.get(id);
      var status = item.failed ? "failed" : "pending";
      if (node && node.getAttribute("data-status") === status) { return; }
      var fresh = el("div", { class: "msg msg--customer msg--" + status, "data-testid": "message",
                              "data-role": "customer", "data-status": status,
                              "data-client-msg-id": id });
      var body = el("div", { class: "text" });
      appendLinkified(body, item.entry.text);
      fresh.appendChild(body);
      var meta = el("div", { class: "meta" });
      meta.appendChild(el("span", { class: "tick", "data-testid": "message-status",
                                    title: item.failed ? item.failed : "Sending" },
                          item.failed ? "Not sent: " + item.failed : "Sending…"));
      fresh.appendChild(meta);
      if (node) { ui.pending.replaceChild(fresh, node); } else { ui.pending.appendChild(fresh); }
    });
    existing.forEach(function (node, id) {
      if (!keep.has(id)) { node.remove(); }
    });
    renderIntro();
  }

  // Strict: a scheme of http or https, then anything up to whitespace or a character that
  // cannot be in a URL written in prose. Trailing punctuation is trimmed below.
  var URL_RE = /\bhttps?:\/\/[^\s<>"'`{}|\\^]+/gi;
  var TRAILING_RE = /[.,;:!?)\]]+$/;

  function appendLinkified(parent, text) {
    var last = 0;
    var match;
    URL_RE.lastIndex = 0;
    while ((match = URL_RE.exec(text)) !== null) {
      var url = match[0].replace(TRAILING_RE, "");
      var href = httpUrl(url);
      if (!href) { continue; }
      if (match.index > last) {
        parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      }
      var link = document.createElement("a");
      link.setAttribute("href", href);
      link.setAttribute("target", "_blank");
      link.setAttribute("rel", "noopener noreferrer nofollow");
      link.textContent = url;
      parent.appendChild(link);
      last = match.index + url.length;
      URL_RE.lastIndex = last;
    }
    if (last < text.length) {
      parent.appendChild(document.createTextNode(text.slice(last)));
    }
  }

  function httpUrl(candidate) {
    try {
      var url = new URL(candidate);
      if ((url.protocol === "http:" || url.protocol === "https:") && url.hostname) {
        return url.href;
      }
    } catch (e) { /* not a URL: stays text */ }
    return null;
  }

  // --- conversations and messages -----------------------------------------------------

  function conversation(id) {
    var conv = state.conversations.get(id);
    if (!conv) {
      conv = {
        id: id,
        status: null,
        statusSeq: 0, // seq of the event (or welcome's last_seq) the status comes from
        messages: new Map(), // seq -> message frame
        nodes: new Map(), // seq -> element
        contiguous: 0, // every seq up to this one is here
        maxSeq: 0,
        syncing: false,
        syncFrom: -1,
        agentRead: 0,
        readSent: 0,
        queue: null, // {position, agentsOnline}
        box: null,
      };
      state.conversations.set(id, conv);
      state.order.push(id); // a conversation we had not heard of is the newest
      placeConversations();
    }
    return conv;
  }

  function currentConversation() {
    var id = state.order[state.order.length - 1];
    return id ? state.conversations.get(id) : null;
  }

  /** Store and show one message (live, from a sync, or built from an ack); ignores a seq
   *  already here, so overlapping deliveries show once. */
  function ingest(frame, live) {
    var conv = conversation(frame.conversation_id);
    var seq = frame.seq;
    if (typeof seq !== "number" || conv.messages.has(seq)) { return; }
    var atEnd = nearEnd();
    conv.messages.set(seq, frame);
    conv.maxSeq = Math.max(conv.maxSeq, seq);
    while (conv.messages.has(conv.contiguous + 1)) { conv.contiguous++; }
    insertMessage(conv, frame);
    if (frame.client_msg_id && frame.sender && frame.sender.role === "customer") {
      markStored(frame.client_msg_id);
    }
    var role = frame.sender && frame.sender.role;
    if (frame.event && seq > conv.statusSeq) {
      applyEvent(conv, frame.event, seq);
    }
    if (role === "agent") { showAgentTyping(conv, false); }
    if (live && !conv.syncing && (role === "agent" || role === "bot") && !state.open) {
      state.unread++;
      renderUnread();
    }
    if (live && !conv.syncing && seq > conv.contiguous + 1) {
      // A gap (saw N, got N+2): fetch what is missing.
      requestSync(conv);
    }
    scrollToEnd(atEnd || role === "customer");
    scheduleRead();
  }

  function applyEvent(conv, event, seq) {
    var next = null;
    switch (event.kind) {
      case "opened": next = event.status || null; break;
      case "handoff": case "queued": next = "queued"; break;
      case "assigned": next = "assigned"; break;
      case "transferred": next = event.to_agent ? "assigned" : "queued"; break;
      case "closed": next = "closed"; break;
      default: return;
    }
    if (next) {
      conv.status = next;
      conv.statusSeq = seq;
      if (next !== "queued") { conv.queue = null; }
      if (next === "closed") { showAgentTyping(conv, false); }
      renderNotices();
    }
  }

  function requestSync(conv) {
    if (conv.syncing && conv.syncFrom === conv.contiguous) { return; }
    if (send({ type: "sync", conversation_id: conv.id, since: conv.contiguous })) {
      conv.syncing = true;
      conv.syncFrom = conv.contiguous;
    }
  }

  function onSynced(frame) {
    var conv = conversation(frame.conversation_id);
    var from = conv.syncFrom;
    conv.syncing = false;
    if (frame.more || conv.contiguous < Math.max(conv.maxSeq, frame.last_seq)) {
      // More pages, or live messages beyond a hole: go on, unless this page brought
      // nothing new (then a later live message or reconnect will try again).
      if (frame.more || conv.contiguous > from) { requestSync(conv); }
    }
    scheduleRead();
  }

  function onAck(frame) {
    var entry = readOutbox().find(function (e) { return e.id === frame.client_msg_id; });
    if (entry && state.visitor) {
      ingest({
        type: "message", conversation_id: frame.conversation_id, seq: frame.seq,
        message_id: frame.message_id, client_msg_id: frame.client_msg_id,
        sender: { role: "customer", id: state.visitor.visitor_id }, text: entry.text,
        ts: frame.ts,
      }, false);
    }
    markStored(frame.client_msg_id);
  }

  function markStored(clientMsgId) {
    state.storedIds.add(clientMsgId);
    removeFromOutbox(clientMsgId);
    renderPending();
  }

  function onRead(frame) {
    if (!frame.sender || frame.sender.role === "customer") { return; }
    var conv = conversation(frame.conversation_id);
    if (frame.seq > conv.agentRead) {
      conv.agentRead = frame.seq;
      updateTicks(conv);
    }
  }

  function onQueue(frame) {
    var conv = conversation(frame.conversation_id);
    if (conv.status === "assigned" || conv.status === "closed" || conv.status === "bot") {
      return; // late: the conversation left the queue already
    }
    conv.status = "queued";
    conv.queue = {
      position: frame.position,
      agentsOnline: typeof frame.agents_online === "number" ? frame.agents_online : null,
    };
    renderNotices();
  }

  function showAgentTyping(conv, on) {
    clearTimeout(state.agentTypingTimer);
    var shown = on && conv === currentConversation() && conv.status !== "closed";
    ui.typing.hidden = !shown;
    if (shown) {
      state.agentTypingTimer = setTimeout(function () { ui.typing.hidden = true; },
                                          TYPING_STALE_MS);
    }
  }

  function scheduleRead() {
    clearTimeout(state.readTimer);
    state.readTimer = setTimeout(maybeSendRead, READ_DELAY_MS);
  }

  /** The agent learns how far the visitor has read: only what the open panel shows in a
   *  visible tab counts. */
  function maybeSendRead() {
    var conv = currentConversation();
    if (!conv || conv.syncing || !state.open || document.visibilityState !== "visible" ||
        !state.welcomed) {
      return;
    }
    if (conv.maxSeq > conv.readSent &&
        send({ type: "read", conversation_id: conv.id, seq: conv.maxSeq })) {
      conv.readSent = conv.maxSeq;
    }
  }

  // --- sending ------------------------------------------------------------------------

  function submit() {
    var text = ui.input.value;
    if (!text.trim()) { return; }
    if (text.length > MAX_TEXT_CHARS) { text = text.slice(0, MAX_TEXT_CHARS); }
    var conv = currentConversation();
    var entry = {
      id: newClientMsgId(),
      text: text,
      conversation_id: conv ? conv.id : null,
      visitor: state.visitor ? state.visitor.visitor_id : null,
      ts: Date.now(),
    };
    // Written down before it goes out: a reload or a dropped socket does not lose it.
    writeOutbox(readOutbox().concat([entry]));
    ui.input.value = "";
    autosize(ui.input);
    typingOff();
    renderPending();
    scrollToEnd(true);
    if (state.visitor) {
      transmit(entry);
    } else {
      ensureVisitor();
    }
  }

  function transmit(entry) {
    var frame = { type: "send", client_msg_id: entry.id, text: entry.text };
    // Naming the conversation lets the server deduplicate a resend even when that
    // conversation was closed meanwhile; a new message sent to a closed conversation
    // goes to the visitor's open (or a new) one, so it is always safe.
    var cid = entry.conversation_id || (currentConversation() || {}).id;
    if (cid) { frame.conversation_id = cid; }
    return send(frame);
  }

  /** After welcome and the syncs: everything still in the outbox goes out again. */
  function resendOutbox() {
    var mine = state.visitor.visitor_id;
    var entries = readOutbox();
    var claimed = false;
    entries.forEach(function (entry) {
      if (!entry.visitor) { entry.visitor = mine; claimed = true; }
    });
    if (claimed) { writeOutbox(entries); }
    entries.forEach(function (entry) {
      if (entry.visitor === mine && !state.storedIds.has(entry.id)) { transmit(entry); }
    });
  }

  function onSendError(frame) {
    var entries = readOutbox();
    var entry = entries.find(function (e) { return e.id === frame.ref; });
    if (!entry) { return; }
    if (frame.code === "unavailable" || frame.code === "rate_limited") {
      setTimeout(function () {
        if (!state.storedIds.has(entry.id)) { transmit(entry); }
      }, RESEND_RETRY_MS);
    } else if (frame.code === "not_found" && entry.conversation_id) {
      // Not our conversation (any more): let the server pick the open one.
      entry.conversation_id = null;
      writeOutbox(entries);
      transmit(entry);
    } else {
      removeFromOutbox(entry.id);
      state.failed.set(entry.id, { entry: entry,
        reason: frame.code === "too_large" ? "too long" : frame.message || frame.code });
      renderPending();
    }
  }

  function onTyping() {
    var conv = currentConversation();
    if (!ui.input.value || !conv || conv.status === "closed") {
      typingOff();
      return;
    }
    if (!state.typingOn && send({ type: "typing", conversation_id: conv.id, on: true })) {
      state.typingOn = true;
      state.typingConversation = conv.id;
    }
    clearTimeout(state.typingTimer);
    state.typingTimer = setTimeout(typingOff, TYPING_IDLE_MS);
  }

  function typingOff() {
    clearTimeout(state.typingTimer);
    if (state.typingOn) {
      state.typingOn = false;
      send({ type: "typing", conversation_id: state.typingConversation, on: false });
    }
  }

  // --- the connection -------------------------------------------------------------------

  /** Queue a frame on the current connection; false when there is none (the caller's
   *  state is rebuilt after the next welcome: syncs, the outbox). */
  function send(frame) {
    if (!state.ws || !state.welcomed || state.ws.readyState !== WebSocket.OPEN) {
      return false;
    }
    state.queue.push(frame);
    drain();
    return true;
  }

  function drain() {
    var now = Date.now();
    state.tokens = Math.min(BUCKET_SIZE,
                            state.tokens + (now - state.tokensAt) / 1000 * BUCKET_PER_S);
    state.tokensAt = now;
    while (state.queue.length && state.tokens >= 1 && state.ws) {
      state.ws.send(JSON.stringify(state.queue.shift()));
      state.tokens -= 1;
    }
    if (state.queue.length && !state.drainTimer) {
      state.drainTimer = setTimeout(function () {
        state.drainTimer = 0;
        drain();
      }, Math.ceil((1 - state.tokens) / BUCKET_PER_S * 1000));
    }
  }

  function connect() {
    if (state.paused || !state.visitor || state.ws) { return; }
    clearTimeout(state.reconnectTimer);
    var token = state.visitor.token;
    var ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch (e) {
      console.warn("[raydesk] cannot open " + WS_URL + ": " + e);
      reconnectSoon(backoffDelay());
      return;
    }
    state.ws = ws;
    state.welcomed = false;
    renderStatus();
    ws.addEventListener("open", function () {
      ws.send(JSON.stringify({ type: "hello", token: token }));
    });
    ws.addEventListener("message", function (event) {
      if (state.ws !== ws) { return; }
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      onFrame(frame);
    });
    ws.addEventListener("close", function (event) {
      if (state.ws !== ws) { return; }
      onClose(event.code, token);
    });
  }

  function dropSocket() {
    var wasWelcomed = state.welcomed;
    state.ws = null;
    state.welcomed = false;
    state.typingOn = false;
    state.queue = [];
    clearTimeout(state.drainTimer);
    state.drainTimer = 0;
    clearInterval(state.pingTimer);
    state.conversations.forEach(function (conv) { conv.syncing = false; });
    if (ui) {
      ui.typing.hidden = true;
      renderStatus();
    }
    return wasWelcomed;
  }

  function onClose(code, token) {
    var upFor = state.welcomedAt ? Date.now() - state.welcomedAt : 0;
    dropSocket();
    state.welcomedAt = 0;
    if (upFor > STABLE_CONNECTION_MS) { state.attempt = 0; }
    if (state.paused) { return; }
    if (code === 4401) {
      // The token is expired or invalid: it will not work again. A new visitor is a new
      // customer; the unsent messages go with it, the old conversations cannot.
      forgetVisitor(token);
      return;
    }
    var delay = backoffDelay();
    if (code === 4429) { delay = Math.max(delay, jitter(RATE_LIMITED_WAIT_MS)); }
    if (code === 1012 && state.attempt <= 1) { delay = jitter(BACKOFF_BASE_MS) / 2; }
    reconnectSoon(delay);
  }

  function backoffDelay() {
    var delay = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, state.attempt));
    state.attempt = Math.min(state.attempt + 1, 16);
    return jitter(delay);
  }

  function jitter(ms) {
    return ms * (1 - BACKOFF_JITTER + 2 * BACKOFF_JITTER * Math.random());
  }

  function reconnectSoon(delay) {
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, delay);
    renderStatus();
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "welcome": onWelcome(frame); break;
      case "message": ingest(frame, true); break;
      case "ack": onAck(frame); break;
      case "synced": onSynced(frame); break;
      case "queue": onQueue(frame); break;
      case "typing":
        if (frame.sender && frame.sender.role !== "customer") {
          showAgentTyping(conversation(frame.conversation_id), frame.on === true);
        }
        break;
      case "read": onRead(frame); break;
      case "error":
        if (frame.ref) { onSendError(frame); }
        break;
      default: break; // pong and frames this widget does not use
    }
  }

  function onWelcome(frame) {
    state.welcomed = true;
    state.welcomedAt = Date.now();
    state.tokens = BUCKET_SIZE; // the server's bucket starts full on each connection
    state.tokensAt = state.welcomedAt;
    state.visitorFailures = 0;
    renderStatus();
    var every = (frame.heartbeat_s || DEFAULT_HEARTBEAT_S) * 1000;
    clearInterval(state.pingTimer);
    state.pingTimer = setInterval(function () { send({ type: "ping" }); }, every);

    // welcome lists the newest first; keep our order oldest first, with conversations we
    // know that fell off welcome's list (it holds 50) before the rest.
    var listed = (frame.conversations || []).slice().reverse();
    var listedIds = listed.map(function (c) { return c.conversation_id; });
    var older = state.order.filter(function (id) { return listedIds.indexOf(id) < 0; });
    listed.forEach(function (c) { conversation(c.conversation_id); });
    state.order = older.concat(listedIds);
    placeConversations();
    listed.forEach(function (c) {
      var conv = conversation(c.conversation_id);
      if (c.last_seq >= conv.statusSeq) {
        conv.status = c.status;
        conv.statusSeq = c.last_seq;
        if (c.status !== "queued") { conv.queue = null; }
      }
    });
    renderNotices();
    // Catch up on the newest conversation first (the one on screen), then resend what
    // was not acknowledged, then the older conversations, newest first.
    var newestFirst = listed.slice().reverse();
    var behind = function (c) {
      var conv = conversation(c.conversation_id);
      if (c.last_seq > conv.contiguous) { requestSync(conv); }
    };
    newestFirst.slice(0, 1).forEach(behind);
    resendOutbox();
    newestFirst.slice(1).forEach(behind);
    scheduleRead();
  }

  // --- the visitor --------------------------------------------------------------------

  function ensureVisitor() {
    if (state.visitor) {
      connect();
      return;
    }
    var stored = readVisitor();
    if (stored) {
      adoptVisitor(stored);
      return;
    }
    createVisitor();
  }

  function createVisitor() {
    if (state.creatingVisitor) { return; }
    state.creatingVisitor = true;
    renderStatus();
    var body = { page: location.href.slice(0, MAX_PAGE_CHARS) };
    if (config.inbox) { body.inbox = config.inbox; }
    if (config.skill) { body.skill = config.skill; }
    if (config.name) { body.name = config.name; }
    if (config.email) { body.email = config.email; }
    fetch(ORIGIN + "/v1/visitors", {
      method: "POST", mode: "cors", credentials: "omit",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().then(function (data) {
        if (response.status !== 201 || !data.visitor_id || !data.token) {
          throw new Error("POST /v1/visitors: " + response.status + " " +
                          JSON.stringify(data.error || data));
        }
        return data;
      });
    }).then(function (data) {
      state.creatingVisitor = false;
      // Another tab may have created one meanwhile: the first one stored wins, so every
      // tab is the same visitor.
      var stored = readVisitor();
      var visitor = stored || { visitor_id: data.visitor_id, token: data.token };
      if (!stored) { store.set(VISITOR_KEY, JSON.stringify(visitor)); }
      adoptVisitor(visitor);
    }).catch(function (error) {
      state.creatingVisitor = false;
      state.visitorFailures++;
      console.warn("[raydesk] " + error.message);
      var wait = jitter(Math.min(BACKOFF_CAP_MS,
                                 BACKOFF_BASE_MS * Math.pow(2, state.visitorFailures)));
      setTimeout(ensureVisitor, wait);
      renderStatus();
    });
  }

  /** Become this visitor: a different one means different conversations. */
  function adoptVisitor(visitor) {
    if (state.visitor && state.visitor.visitor_id === visitor.visitor_id &&
        state.visitor.token === visitor.token) {
      connect();
      return;
    }
    var changed = state.visitor && state.visitor.visitor_id !== visitor.visitor_id;
    if (state.ws) {
      var ws = state.ws;
      dropSocket();
      ws.close(1000, "visitor changed");
    }
    if (changed) { forgetConversations(); }
    state.visitor = visitor;
    state.attempt = 0;
    renderPending();
    connect();
  }

  function forgetVisitor(token) {
    var stored = readVisitor();
    if (stored && stored.token === token) {
      store.remove(VISITOR_KEY);
    }
    var old = state.visitor;
    state.visitor = null;
    forgetConversations();
    // Unsent messages move to the next visitor, without the old conversation.
    var entries = readOutbox();
    entries.forEach(function (entry) {
      if (!old || !entry.visitor || entry.visitor === old.visitor_id) {
        entry.visitor = null;
        entry.conversation_id = null;
      }
    });
    writeOutbox(entries);
    renderStatus();
    if (stored && stored.token !== token) {
      ensureVisitor(); // another tab has already made the next visitor
      return;
    }
    // As at boot: a new customer is made only for someone who opened the chat or wrote.
    if (state.open || entries.length) {
      state.visitorFailures++;
      setTimeout(ensureVisitor, jitter(Math.min(BACKOFF_CAP_MS,
        BACKOFF_BASE_MS * Math.pow(2, state.visitorFailures - 1))));
    }
  }

  function forgetConversations() {
    state.conversations = new Map();
    state.order = [];
    state.storedIds = new Set();
    if (ui) {
      while (ui.conversations.firstChild) { ui.conversations.firstChild.remove(); }
      ui.typing.hidden = true;
      renderNotices();
      renderIntro();
    }
  }

  function onStorage(event) {
    if (event.storageArea !== window.localStorage) { return; }
    if (event.key === VISITOR_KEY && event.newValue) {
      // Another tab created (or replaced) the visitor: be the same one.
      var visitor = parseVisitor(event.newValue);
      if (visitor) { adoptVisitor(visitor); }
    } else if (event.key === OUTBOX_KEY) {
      renderPending();
    }
  }

  // --- storage ------------------------------------------------------------------------

  function readVisitor() {
    return parseVisitor(store.get(VISITOR_KEY));
  }

  function parseVisitor(text) {
    try {
      var value = JSON.parse(text || "null");
      if (value && typeof value.visitor_id === "string" && typeof value.token === "string") {
        return { visitor_id: value.visitor_id, token: value.token };
      }
    } catch (e) { /* unreadable: as if none */ }
    return null;
  }

  function readOutbox() {
    try {
      var value = JSON.parse(store.get(OUTBOX_KEY) || "[]");
      return Array.isArray(value) ? value.filter(function (e) {
        return e && typeof e.id === "string" && typeof e.text === "string";
      }) : [];
    } catch (e) {
      return [];
    }
  }

  function writeOutbox(entries) {
    if (entries.length) {
      store.set(OUTBOX_KEY, JSON.stringify(entries));
    } else {
      store.remove(OUTBOX_KEY);
    }
  }

  function removeFromOutbox(id) {
    var entries = readOutbox();
    var left = entries.filter(function (e) { return e.id !== id; });
    if (left.length !== entries.length) { writeOutbox(left); }
  }

  /** localStorage, or memory where it is missing or refused (private modes, sandboxed
   *  frames): the widget still works, for this page only. */
  function safeStorage() {
    var memory = new Map();
    var ls = null;
    try {
      ls = window.localStorage;
      ls.setItem("raydesk:probe", "1");
      ls.removeItem("raydesk:probe");
    } catch (e) {
      ls = null;
    }
    return {
      get: function (key) {
        try { return ls ? ls.getItem(key) : memory.has(key) ? memory.get(key) : null; }
        catch (e) { return memory.has(key) ? memory.get(key) : null; }
      },
      set: function (key, value) {
        memory.set(key, value);
        try { if (ls) { ls.setItem(key, value); } } catch (e) { /* full: memory only */ }
      },
      remove: function (key) {
        memory.delete(key);
        try { if (ls) { ls.removeItem(key); } } catch (e) { /* ignore */ }
      },
    };
  }

  // --- small helpers ------------------------------------------------------------------

  function findScriptTag() {
    var tags = document.querySelectorAll("script[src]");
    for (var i = tags.length - 1; i >= 0; i--) {
      if (/\/widget\.js(\?|#|$)/.test(tags[i].src)) { return tags[i]; }
    }
    return null;
  }

  function validSkill(value, name) {
    if (value === null || value === "") { return null; }
    if (SKILL_RE.test(value)) { return value; }
    console.warn("[raydesk] " + name + "=\"" + value + "\" is not [A-Za-z0-9_.-]{1,64}; ignored");
    return null;
  }

  function trimmed(value, max) {
    if (!value) { return null; }
    value = value.trim();
    return value ? value.slice(0, max) : null;
  }

  function newClientMsgId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes); // randomUUID needs a secure context; this does not
    var hex = "";
    for (var i = 0; i < bytes.length; i++) { hex += (bytes[i] + 256).toString(16).slice(1); }
    return "w" + hex;
  }

  function clock(ts) {
    try {
      return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    } catch (e) {
      return "";
    }
  }

  /** An element with attributes and, optionally, text (always as a text node). */
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function svg(paths, viewBox) {
    var NS = "http://www.w3.org/2000/svg";
    var icon = document.createElementNS(NS, "svg");
    icon.setAttribute("viewBox", viewBox || "0 0 24 24");
    icon.setAttribute("aria-hidden", "true");
    icon.setAttribute("focusable", "false");
    icon.setAttribute("class", "icon");
    paths.forEach(function (d) {
      var path = document.createElementNS(NS, "path");
      path.setAttribute("d", d);
      icon.appendChild(path);
    });
    return icon;
  }

  function chatIcon() {
    return svg(["M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 " +
                "0 0 1 2-2z"]);
  }

  function closeIcon() {
    return svg(["M6 6l12 12M18 6L6 18"]);
  }

  function sendIcon() {
    return svg(["M3 11l18-8-8 18-2-8-8-2z"]);
  }

  // Last, so that every var above has its value when boot runs.
  if (document.body) {
    boot();
  } else {
    document.addEventListener("DOMContentLoaded", boot, { once: true });
  }
})();
