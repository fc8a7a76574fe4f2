// The agent's WebSocket (protocol.md sections 4, 8, 9): hello, a ping every heartbeat_s,
// reconnect with jittered exponential backoff, and resend of unacknowledged messages and
// notes with their original client_msg_id (the server deduplicates, so nothing is lost
// or doubled).
//
// Events (EventTarget):
//   "state"        detail: "connecting" | "online" | "reconnecting" | "offline"
//   "welcome"      detail: the welcome frame (after every successful hello)
//   "frame"        detail: every other server frame
//   "failed"       detail: {frame, error}: a reliable send the server refused for good
//   "unauthorized" the token was refused (close 4401): log in again

// The protocol's advice (section 9): start at 0.5 s, double up to 30 s, each +-20 %.
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 30_000;
const JITTER = 0.2;
// A connection that stayed up this long was healthy: the next failure starts over.
const STABLE_MS = 60_000;
// After close 4429 (rate limited) wait at least this long: sending less is the point.
const RATE_LIMITED_MS = 10_000;
// The server answers every ping. Nothing received for this many heartbeat periods means
// the connection is dead even if the browser has not noticed (a network change can leave
// a socket open on our side for minutes): drop it and reconnect.
const DEAD_AFTER_BEATS = 2.5;
// unavailable / rate_limited answers to a send: retry after this delay, same id.
const RETRY_MS = 1_000;
const RETRYABLE = new Set(["unavailable", "rate_limited"]);

export class Socket extends EventTarget {
  constructor(url, token) {
    super();
    this.url = url;
    this.token = token;
    this.ws = null;
    this.state = "offline";
    this.welcomed = false;
    this.attempt = 0;
    this.openedAt = 0;
    this.receivedAt = 0;
    this.stopped = true;
    this.timers = { heartbeat: 0, reconnect: 0 };
    // client_msg_id -> frame, in the order sent (a Map keeps insertion order).
    this.unacked = new Map();
    this.onBrowserOnline = () => {
      if (this.state === "reconnecting") this.reconnectNow();
    };
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onBrowserOnline);
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onBrowserOnline);
    clearInterval(this.timers.heartbeat);
    clearTimeout(this.timers.reconnect);
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws) ws.close(1000, "logged out");
    this.setState("offline");
  }

  /** Send a frame if connected; signals (typing, read, presence...) are not queued. */
  send(frame) {
    if (!this.ws || !this.welcomed || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** A send or note: kept until the server confirms it, resent after a reconnect. */
  sendReliable(frame) {
    this.unacked.set(frame.client_msg_id, frame);
    this.send(frame);
  }

  /** Try a failed reliable frame again (same client_msg_id: safe). */
  retry(frame) {
    this.sendReliable(frame);
  }

  isUnacked(clientMsgId) {
    return this.unacked.has(clientMsgId);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
  }

  open() {
    this.setState(this.attempt ? "reconnecting" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect(null);
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    ws.addEventListener("open", () => {
      if (ws === this.ws) ws.send(JSON.stringify({ type: "hello", token: this.token }));
    });
    ws.addEventListener("message", (event) => this.receive(ws, event));
    ws.addEventListener("close", (event) => this.closed(ws, event.code));
  }

  receive(ws, event) {
    if (ws !== this.ws) return;
    this.receivedAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "welcome") {
      this.welcomed = true;
      this.openedAt = Date.now();
      this.startHeartbeat(frame.heartbeat_s);
      this.setState("online");
      this.dispatchEvent(new CustomEvent("welcome", { detail: frame }));
      // Step 5 of the reconnect rules: resend what was not acknowledged, in order.
      for (const pending of this.unacked.values()) ws.send(JSON.stringify(pending));
      return;
    }
    if (frame.type === "ack" || (frame.type === "note" && frame.client_msg_id)) {
      this.unacked.delete(frame.client_msg_id);
    } else if (frame.type === "error" && frame.ref && this.unacked.has(frame.ref)) {
      const pending = this.unacked.get(frame.ref);
      if (RETRYABLE.has(frame.code)) {
        setTimeout(() => {
          if (this.unacked.get(frame.ref) === pending) this.send(pending);
        }, RETRY_MS);
      } else {
        this.unacked.delete(frame.ref);
        this.dispatchEvent(new CustomEvent("failed", { detail: { frame: pending, error: frame } }));
      }
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  startHeartbeat(seconds) {
    clearInterval(this.timers.heartbeat);
    const every = Math.max(1, Number(seconds) || 30) * 1000;
    this.receivedAt = Date.now();
    this.timers.heartbeat = setInterval(() => {
      if (Date.now() - this.receivedAt > DEAD_AFTER_BEATS * every) this.abandon();
      else this.send({ type: "ping" });
    }, every);
  }

  /** Give up on a silent connection without waiting for its closing handshake. */
  abandon() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.welcomed = false;
    clearInterval(this.timers.heartbeat);
    try {
      ws.close(4000, "no answer to pings");
    } catch {
      // already closing
    }
    if (!this.stopped) this.scheduleReconnect(null);
  }

  closed(ws, code) {
    if (ws !== this.ws) return;
    clearInterval(this.timers.heartbeat);
    this.ws = null;
    this.welcomed = false;
    if (this.stopped) return;
    if (code === 4401) {
      // The token is no good: retrying with it would be refused again.
      this.stopped = true;
      this.setState("offline");
      this.dispatchEvent(new CustomEvent("unauthorized"));
      return;
    }
    this.scheduleReconnect(code);
  }

  scheduleReconnect(code) {
    if (this.openedAt && Date.now() - this.openedAt >= STABLE_MS) this.attempt = 0;
    this.openedAt = 0;
    let delay;
    if (code === 1012 && this.attempt === 0) {
      delay = 100; // a restart or redeploy: the first attempt can be quick
    } else {
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
      delay = base * (1 + JITTER * (2 * Math.random() - 1));
    }
    if (code === 4429) delay = Math.max(delay, RATE_LIMITED_MS);
    this.attempt += 1;
    this.setState("reconnecting");
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  reconnectNow() {
    clearTimeout(this.timers.reconnect);
    if (!this.stopped && !this.ws) this.open();
  }

  /** For tests and for the "reconnect" of a stuck connection: drop it and reconnect. */
  drop() {
    if (this.ws) this.ws.close(4000, "client reconnect");
  }
}
