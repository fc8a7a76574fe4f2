// The agent's session: the WebSocket and REST calls that keep the Store current, and the
// actions the views call (send, note, accept, transfer, close, typing, read, presence).
//
// Catching up (protocol.md section 9): after every welcome, the conversation list is
// synced from the cursor (GET /v1/conversations?updated_since=, paged until the cursor
// stops moving), assigned conversations are synced on the socket from the last seq held,
// and unacknowledged sends are resent by the socket with their client_msg_id.

import { Socket } from "./socket.js";
import { randomId } from "./dom.js";

// The list is also re-read on this period: conversations you take no part in send no
// live messages, so their last_seq (and the unread counts) move only this way.
const LIST_REFRESH_MS = 20_000;
// How often a typing "on" is repeated while the agent keeps typing, and how long after
// the last keystroke "off" is sent.
const TYPING_REPEAT_MS = 3_000;
const TYPING_IDLE_MS = 4_000;

export class Desk extends EventTarget {
  constructor(api, store, notifier) {
    super();
    this.api = api;
    this.store = store;
    this.notifier = notifier;
    this.socket = null;
    this.presence = "online";
    this.syncing = null;
    this.syncAgain = false;
    this.timers = { list: 0, queue: 0, refresh: 0 };
    this.typingSent = new Map(); // conversation_id -> {at, off timer}
    this.readSent = new Map(); // conversation_id -> the read cursor last sent to the server
    this.selected = null;
  }

  wsUrl() {
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  }

  start(token) {
    this.socket = new Socket(this.wsUrl(), token);
    this.socket.addEventListener("welcome", (e) => this.onWelcome(e.detail));
    this.socket.addEventListener("frame", (e) => this.onFrame(e.detail));
    this.socket.addEventListener("failed", (e) => this.onFailed(e.detail));
    this.socket.addEventListener("state", (e) => this.emit("connection", e.detail));
    this.socket.addEventListener("unauthorized", () => this.emit("unauthorized"));
    this.socket.start();
    this.timers.refresh = setInterval(() => this.syncList(), LIST_REFRESH_MS);
    this.refreshAgents();
    this.refreshCanned();
  }

  stop() {
    clearInterval(this.timers.refresh);
    clearTimeout(this.timers.list);
    clearTimeout(this.timers.queue);
    if (this.socket) {
      // Tell the router at once rather than after the offline grace.
      this.socket.send({ type: "presence", status: "offline" });
      this.socket.stop();
    }
    this.socket = null;
  }

  emit(kind, detail = null) {
    this.dispatchEvent(new CustomEvent(kind, { detail }));
  }

  report(error) {
    this.emit("problem", error.message || String(error));
  }

  // --- the socket ---------------------------------------------------------------------

  onWelcome(welcome) {
    const me = this.store.me.agent_id;
    // A new connection starts with the server's initial presence: say the chosen one.
    this.socket.send({ type: "presence", status: this.presence });
    for (const entry of welcome.conversations || []) {
      this.store.applyConversation({ ...entry, assignee: me });
    }
    this.syncList();
    this.refreshQueue();
    for (const conv of this.store.conversations.values()) {
      if (this.store.isMine(conv) && conv.last_seq > this.store.loadedThrough(conv.conversation_id)) {
        this.syncConversation(conv.conversation_id);
      }
    }
    if (this.selected && !this.store.isMine(this.store.conversations.get(this.selected))) {
      this.loadHistory(this.selected).catch((error) => this.report(error));
    }
  }

  onFrame(frame) {
    const store = this.store;
    switch (frame.type) {
      case "message": {
        const { fresh, gap } = store.applyMessage(frame);
        if (gap) this.syncConversation(frame.conversation_id);
        if (fresh && frame.sender.role === "customer") {
          this.notifier.message(store.visitorName(store.conversations.get(frame.conversation_id)), frame.text);
        }
        if (fresh) this.readIfShown(frame.conversation_id);
        break;
      }
      case "ack": {
        // The message event can come before or after the ack; if it never came (a
        // transfer right after, say), fetch it.
        const held = store.messages.get(frame.conversation_id);
        if (!held || !held.has(frame.seq)) {
          setTimeout(() => {
            if (!store.messages.get(frame.conversation_id)?.has(frame.seq)) this.syncConversation(frame.conversation_id);
          }, 1000);
        }
        break;
      }
      case "synced":
        if (frame.more) this.syncConversation(frame.conversation_id);
        break;
      case "note":
        store.applyNote(frame);
        break;
      case "typing":
        if (frame.sender.role === "customer") store.applyTyping(frame.conversation_id, frame.on);
        break;
      case "read":
        if (frame.sender.role === "customer") store.applyCustomerRead(frame.conversation_id, frame.seq);
        break;
      case "assigned": {
        store.rememberVisitor(frame.visitor);
        store.applyConversation({
          conversation_id: frame.conversation_id, status: "assigned",
          assignee: store.me.agent_id, last_seq: frame.last_seq, customer: frame.visitor?.id,
          visitor_name: frame.visitor?.name ?? undefined,
        });
        this.syncConversation(frame.conversation_id);
        this.notifier.conversation(store.visitorName(store.conversations.get(frame.conversation_id)), "is now yours");
        this.scheduleQueue();
        this.scheduleList();
        break;
      }
      case "conversation": {
        // The feed leaves out assignee and skill when there is none, and its read_seq is
        // not this agent's cursor (protocol.md, the conversation frame).
        const { read_seq: _notMine, ...state } = frame;
        const { before, conv } = store.applyConversation({ ...state, assignee: frame.assignee ?? null, skill: frame.skill ?? null });
        if (!before || before.visitor_name === undefined) this.scheduleList();
        if ((before?.status === "queued") !== (conv.status === "queued")) this.scheduleQueue();
        if (conv.status === "queued" && before?.status !== "queued") {
          this.notifier.conversation(store.visitorName(conv), "is waiting in the queue");
        }
        if (conv.conversation_id === this.selected && !store.isMine(conv)) this.scheduleHistory(conv.conversation_id);
        break;
      }
      case "error":
        if (!frame.ref) this.report(new Error(`${frame.message} (${frame.code})`));
        break;
      default:
        break;
    }
  }

  onFailed({ frame, error }) {
    this.store.failPending(frame.conversation_id, frame.client_msg_id, `${error.message} (${error.code})`);
  }

  /** Ask the socket for a conversation's messages after the last one held. */
  syncConversation(id) {
    if (!this.socket) return;
    if (!this.store.isLoaded(id)) this.store.markLoaded(id, 0);
    this.socket.send({ type: "sync", conversation_id: id, since: this.store.loadedThrough(id) });
  }

  // --- REST catch-up ------------------------------------------------------------------

  scheduleList() {
    clearTimeout(this.timers.list);
    this.timers.list = setTimeout(() => this.syncList(), 250);
  }

  scheduleQueue() {
    clearTimeout(this.timers.queue);
    this.timers.queue = setTimeout(() => this.refreshQueue(), 250);
  }

  scheduleHistory(id) {
    clearTimeout(this.timers.history);
    this.timers.history = setTimeout(() => {
      if (id === this.selected) this.loadHistory(id).catch((error) => this.report(error));
    }, 250);
  }

  /** Incremental conversation list: from the cursor, until it stops moving. */
  async syncList() {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          for (let page = 0; page < 1000; page += 1) {
            const sent = this.store.cursor;
            const answer = await this.api.conversations(sent);
            for (const conv of answer.conversations) {
              this.store.applyConversation(conv);
              if (conv.conversation_id === this.selected && conv.last_seq > this.store.loadedThrough(conv.conversation_id)
                  && !this.store.isMine(conv)) this.scheduleHistory(conv.conversation_id);
            }
            this.store.cursor = answer.cursor;
            if (answer.cursor === sent) break;
          }
        } while (this.syncAgain);
      } catch (error) {
        if (error.status !== 401) this.report(error);
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  async refreshQueue() {
    try {
      const started = Date.now();
      const answer = await this.api.queue();
      this.store.applyQueue(answer.queue, started);
    } catch (error) {
      if (error.status !== 401) this.report(error);
    }
  }

  async refreshAgents() {
    try {
      this.store.setAgents((await this.api.agents()).agents);
    } catch (error) {
      if (error.status !== 401) this.report(error);
    }
  }

  async refreshCanned() {
    try {
      this.store.setCanned((await this.api.canned()).items);
    } catch (error) {
      if (error.status !== 401) this.report(error);
    }
  }

  /** The whole history over REST, paged from the last seq held. */
  async loadHistory(id) {
    const store = this.store;
    if (!store.isLoaded(id)) store.markLoaded(id, 0); // from here on, contiguity is tracked
    for (;;) {
      const since = store.loadedThrough(id);
      const answer = await this.api.messages(id, since);
      for (const m of answer.messages) store.applyMessage(m);
      const through = store.loadedThrough(id);
      if (!answer.messages.length || through >= answer.last_seq || through <= since) break;
    }
    store.emit("messages", id);
  }

  async loadNotes(id) {
    const answer = await this.api.notes(id);
    for (const note of answer.notes) this.store.applyNote(note);
    this.store.emit("messages", id);
  }

  // --- actions ------------------------------------------------------------------------

  select(id) {
    this.selected = id;
    if (!id) return;
    this.loadHistory(id).then(() => this.readIfShown(id)).catch((error) => this.report(error));
    this.loadNotes(id).catch((error) => this.report(error));
  }

  sendReply(id, text) {
    const frame = { type: "send", client_msg_id: randomId("ag-"), conversation_id: id, text };
    this.store.addPending(id, frame, "send");
    this.typing(id, false);
    this.socket.sendReliable(frame);
  }

  addNote(id, text) {
    const frame = { type: "note", conversation_id: id, client_msg_id: randomId("nt-"), text };
    this.store.addPending(id, frame, "note");
    this.socket.sendReliable(frame);
  }

  retry(id, clientMsgId) {
    const frame = this.store.retryPending(id, clientMsgId);
    if (frame) this.socket.retry(frame);
  }

  accept(id) {
    if (!this.socket.send({ type: "accept", conversation_id: id })) this.report(new Error("Not connected: try again in a moment."));
  }

  transfer(id, target) {
    if (!this.socket.send({ type: "transfer", conversation_id: id, ...target })) this.report(new Error("Not connected: try again in a moment."));
  }

  close(id) {
    if (!this.socket.send({ type: "close", conversation_id: id })) this.report(new Error("Not connected: try again in a moment."));
  }

  setPresence(status) {
    this.presence = status;
    this.socket?.send({ type: "presence", status });
  }

  /** Typing signals, throttled: "on" at most every few seconds, "off" when idle. */
  typing(id, on) {
    if (!this.socket || !this.store.isMine(this.store.conversations.get(id))) return;
    const sent = this.typingSent.get(id);
    if (!on) {
      if (sent) {
        clearTimeout(sent.timer);
        this.typingSent.delete(id);
        this.socket.send({ type: "typing", conversation_id: id, on: false });
      }
      return;
    }
    const now = Date.now();
    if (!sent || now - sent.at >= TYPING_REPEAT_MS) {
      this.socket.send({ type: "typing", conversation_id: id, on: true });
    }
    if (sent) clearTimeout(sent.timer);
    this.typingSent.set(id, {
      at: !sent || now - sent.at >= TYPING_REPEAT_MS ? now : sent.at,
      timer: setTimeout(() => this.typing(id, false), TYPING_IDLE_MS),
    });
  }

  /** Move the read cursor when the conversation is on screen (only yours: the server's rule). */
  readIfShown(id) {
    if (id !== this.selected || document.hidden) return;
    const conv = this.store.conversations.get(id);
    if (!conv) return;
    const seq = this.store.loadedThrough(id); // what is on screen
    if (!seq) return;
    // Your own messages count as read locally at once; the server hears it here.
    const sent = Math.max(this.readSent.get(id) || 0, conv.server_read_seq || 0);
    if (this.store.isMine(conv) && sent < seq && this.socket?.send({ type: "read", conversation_id: id, seq })) {
      this.readSent.set(id, seq);
    }
    this.store.markRead(id, seq);
  }
}
