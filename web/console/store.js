// The console's state: conversations, their messages and notes, the queue, agents, and
// the signals (typing, the customer's read cursor). Frames and REST answers go in through
// the apply* methods; views listen for these events (detail: a conversation id or null):
//   "lists"         which conversations exist, their status, unread counts
//   "conversation"  one conversation's summary changed (status, assignee, last_seq)
//   "messages"      one conversation's messages, notes or pending sends changed
//   "signals"       typing or read receipts changed for one conversation
//   "queue"         the queue (positions, wait times) was read again
//   "agents"        the agent list changed
//   "canned"        the canned replies changed

const TYPING_SHOWN_MS = 6_000; // a typing "on" with no "off" fades after this
const UNREAD_SCANNED = 500; // unread() looks at each seq of a stretch up to this long

export class Store extends EventTarget {
  constructor() {
    super();
    this.me = null;
    this.agents = new Map();
    this.conversations = new Map();
    this.queue = new Map(); // conversation_id -> {position, priority, skill, since, order}
    this.messages = new Map(); // conversation_id -> Map(seq -> message)
    this.loaded = new Map(); // conversation_id -> highest seq with every seq below it held
    this.notes = new Map(); // conversation_id -> Map(note_id -> note)
    this.pending = new Map(); // conversation_id -> Map(client_msg_id -> {kind, text, state, error, frame})
    this.customerRead = new Map(); // conversation_id -> the customer's read cursor
    this.typing = new Map(); // conversation_id -> time the indicator expires
    this.visitors = new Map(); // visitor_id -> {name, email, attributes} from assigned frames
    this.canned = [];
    this.cursor = 0;
    this.timers = new Map();
  }

  emit(kind, id = null) {
    this.dispatchEvent(new CustomEvent(kind, { detail: id }));
  }

  // --- reading ------------------------------------------------------------------------

  agentName(id) {
    if (!id) return "nobody";
    if (this.me && id === this.me.agent_id) return "you";
    const agent = this.agents.get(id);
    return agent ? agent.name : `agent …${id.slice(-6)}`;
  }

  isMine(conv) {
    return Boolean(conv && this.me && conv.status === "assigned" && conv.assignee === this.me.agent_id);
  }

  /**
   * Messages after your read cursor that someone wrote (the customer, an agent, the bot):
   * system events (queued, assigned, ...) are not unread. A seq not held here counts, as
   * it may be a message; so does every seq of a very long unread stretch (lists redraw
   * often, and such a badge is large either way).
   */
  unread(conv) {
    const from = conv.read_seq || 0;
    const to = conv.last_seq || 0;
    if (to - from > UNREAD_SCANNED) return to - from;
    const held = this.messages.get(conv.conversation_id);
    let count = 0;
    for (let seq = from + 1; seq <= to; seq += 1) {
      const m = held && held.get(seq);
      if (!m || m.sender.role !== "system") count += 1;
    }
    return count;
  }

  visitorName(conv) {
    const known = this.visitors.get(conv.customer);
    const name = conv.visitor_name || (known && known.name);
    return name || `Visitor …${String(conv.customer || conv.conversation_id).slice(-6)}`;
  }

  /** Messages held for a conversation, in seq order. */
  messageList(id) {
    const held = this.messages.get(id);
    return held ? [...held.values()].sort((a, b) => a.seq - b.seq) : [];
  }

  lastText(id) {
    const held = this.messages.get(id);
    if (!held) return "";
    let best = null;
    for (const m of held.values()) {
      if (m.sender.role !== "system" && (!best || m.seq > best.seq)) best = m;
    }
    return best ? best.text : "";
  }

  isTyping(id) {
    return (this.typing.get(id) || 0) > Date.now();
  }

  // --- conversations ------------------------------------------------------------------

  /** Merge a conversation summary (REST list entry, conversation frame, welcome entry). */
  applyConversation(info) {
    const id = info.conversation_id;
    const before = this.conversations.get(id);
    const conv = { read_seq: 0, ...before };
    // An answer older than an event already applied must not undo it (a REST page read
    // just before a live transfer, say): then only the fields without history are taken.
    const stale = Boolean(before) && (info.last_seq ?? Infinity) < (before.event_seq || 0);
    for (const [key, value] of Object.entries(info)) {
      if (value === undefined || key === "type") continue;
      if (stale && (key === "status" || key === "assignee" || key === "skill")) continue;
      conv[key] = value;
    }
    conv.event_seq = Math.max(before?.event_seq || 0, stale ? 0 : info.last_seq || 0);
    if (info.read_seq !== undefined) conv.server_read_seq = Math.max(before?.server_read_seq || 0, info.read_seq);
    // Counters only move forward: a stale answer must not undo a live message.
    if (before) {
      conv.last_seq = Math.max(before.last_seq || 0, info.last_seq || 0);
      conv.read_seq = Math.max(before.read_seq || 0, info.read_seq || 0);
      conv.updated_ts = Math.max(before.updated_ts || 0, info.updated_ts || 0);
      // A closed conversation never reopens.
      if (before.status === "closed") conv.status = "closed";
    }
    if (conv.status !== "queued") this.queue.delete(id);
    this.conversations.set(id, conv);
    this.emit("lists");
    this.emit("conversation", id);
    return { before, conv };
  }

  applyQueue(entries, fetchedAt) {
    this.queue.clear();
    entries.forEach((entry, order) => {
      this.queue.set(entry.conversation_id, { ...entry, order, since: fetchedAt - entry.waiting_ms });
    });
    this.emit("queue");
    this.emit("lists");
  }

  /** Wait start of a queued conversation: the queue's if known, else its last change. */
  waitingSince(conv) {
    const entry = this.queue.get(conv.conversation_id);
    return entry ? entry.since : conv.updated_ts || Date.now();
  }

  markRead(id, seq) {
    const conv = this.conversations.get(id);
    if (!conv || (conv.read_seq || 0) >= seq) return false;
    conv.read_seq = seq;
    this.emit("conversation", id);
    this.emit("lists");
    return true;
  }

  // --- messages -----------------------------------------------------------------------

  /**
   * Store a message (live, synced or fetched); duplicates by seq are dropped. Returns
   * {fresh, gap}: whether it was new, and whether seqs are missing before it in a
   * conversation whose history was loaded.
   */
  applyMessage(m) {
    const id = m.conversation_id;
    let held = this.messages.get(id);
    if (!held) this.messages.set(id, (held = new Map()));
    if (held.has(m.seq)) return { fresh: false, gap: false };
    held.set(m.seq, m);
    const loadedTo = this.loaded.get(id);
    let gap = false;
    if (loadedTo !== undefined) {
      let through = loadedTo;
      while (held.has(through + 1)) through += 1;
      this.loaded.set(id, through);
      gap = m.seq > through;
    }
    this.settlePending(id, m);
    const conv = this.conversations.get(id) || {
      // Live messages come only for conversations assigned to you: a new one is yours.
      conversation_id: id, status: "assigned", assignee: this.me?.agent_id, last_seq: 0, read_seq: 0,
    };
    conv.last_seq = Math.max(conv.last_seq || 0, m.seq);
    conv.updated_ts = Math.max(conv.updated_ts || 0, m.ts || 0);
    if (m.sender.role === "customer" && !conv.customer) conv.customer = m.sender.id;
    // Events replayed from history (seq at or below what the summary already covers)
    // change nothing: only newer ones move the status.
    if (m.event && m.seq > (conv.event_seq || 0)) {
      this.applyEvent(conv, m.event);
      conv.event_seq = m.seq;
    }
    // Your own message is read by you.
    if (this.me && m.sender.role === "agent" && m.sender.id === this.me.agent_id) {
      conv.read_seq = Math.max(conv.read_seq || 0, m.seq);
    }
    this.conversations.set(id, conv);
    this.emit("messages", id);
    this.emit("conversation", id);
    this.emit("lists");
    return { fresh: true, gap };
  }

  /** A system event changes the conversation's status the way the server did. */
  applyEvent(conv, event) {
    switch (event.kind) {
      case "opened":
        conv.status = event.status || conv.status;
        break;
      case "queued":
      case "handoff":
        if (conv.status !== "closed") {
          conv.status = "queued";
          if (event.kind === "queued") {
            conv.assignee = null;
            if (event.skill !== undefined) conv.skill = event.skill;
          }
        }
        break;
      case "assigned":
        if (conv.status !== "closed") {
          conv.status = "assigned";
          conv.assignee = event.agent_id;
        }
        break;
      case "transferred":
        if (conv.status === "closed") break;
        if (event.to_agent) {
          conv.assignee = event.to_agent;
        } else {
          conv.status = "queued";
          conv.assignee = null;
          conv.skill = event.to_skill;
        }
        break;
      case "closed":
        conv.status = "closed";
        break;
      default:
        break;
    }
  }

  /** Record that seq 1..through are all held (after a full fetch or sync). */
  markLoaded(id, through) {
    const held = this.messages.get(id) || new Map();
    this.messages.set(id, held);
    let upTo = Math.max(this.loaded.get(id) ?? 0, through);
    while (held.has(upTo + 1)) upTo += 1;
    this.loaded.set(id, upTo);
  }

  isLoaded(id) {
    return this.loaded.has(id);
  }

  loadedThrough(id) {
    return this.loaded.get(id) ?? 0;
  }

  // --- notes and pending sends --------------------------------------------------------

  applyNote(note) {
    const id = note.conversation_id;
    let held = this.notes.get(id);
    if (!held) this.notes.set(id, (held = new Map()));
    const fresh = !held.has(note.note_id);
    held.set(note.note_id, note);
    const pending = this.pending.get(id);
    if (pending && note.client_msg_id) pending.delete(note.client_msg_id);
    this.emit("messages", id);
    return fresh;
  }

  noteList(id) {
    const held = this.notes.get(id);
    return held ? [...held.values()].sort((a, b) => a.ts - b.ts) : [];
  }

  addPending(id, frame, kind) {
    let held = this.pending.get(id);
    if (!held) this.pending.set(id, (held = new Map()));
    held.set(frame.client_msg_id, { kind, frame, text: frame.text, state: "sending", error: null });
    this.emit("messages", id);
  }

  pendingList(id) {
    const held = this.pending.get(id);
    return held ? [...held.values()] : [];
  }

  failPending(id, clientMsgId, error) {
    const item = this.pending.get(id)?.get(clientMsgId);
    if (!item) return;
    item.state = "failed";
    item.error = error;
    this.emit("messages", id);
  }

  retryPending(id, clientMsgId) {
    const item = this.pending.get(id)?.get(clientMsgId);
    if (!item) return null;
    item.state = "sending";
    item.error = null;
    this.emit("messages", id);
    return item.frame;
  }

  discardPending(id, clientMsgId) {
    this.pending.get(id)?.delete(clientMsgId);
    this.emit("messages", id);
  }

  settlePending(id, m) {
    const held = this.pending.get(id);
    if (held && m.client_msg_id && this.me && m.sender.id === this.me.agent_id) {
      held.delete(m.client_msg_id);
    }
  }

  // --- signals ------------------------------------------------------------------------

  applyTyping(id, on) {
    if (on) this.typing.set(id, Date.now() + TYPING_SHOWN_MS);
    else this.typing.delete(id);
    clearTimeout(this.timers.get(id));
    if (on) this.timers.set(id, setTimeout(() => this.emit("signals", id), TYPING_SHOWN_MS + 50));
    this.emit("signals", id);
  }

  applyCustomerRead(id, seq) {
    if ((this.customerRead.get(id) || 0) >= seq) return;
    this.customerRead.set(id, seq);
    this.emit("signals", id);
  }

  // --- everything else ----------------------------------------------------------------

  setAgents(list) {
    this.agents = new Map(list.map((a) => [a.agent_id, a]));
    this.emit("agents");
  }

  setCanned(items) {
    this.canned = items;
    this.emit("canned");
  }

  rememberVisitor(visitor) {
    if (visitor && visitor.id) this.visitors.set(visitor.id, visitor);
  }
}
