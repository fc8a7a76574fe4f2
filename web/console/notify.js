// Telling an agent about new conversations and messages while the console's tab is in
// the background: a system notification (only if the agent granted permission, asked
// from a button, never on load) and a short beep made with WebAudio (no sound files).

const BEEP_HZ = 880;
const BEEP_S = 0.12;
// Several events in a burst (a sync after a reconnect) give one beep, not a chord.
const QUIET_MS = 1500;

export class Notifier {
  constructor() {
    this.audio = null;
    this.lastAt = 0;
    // Browsers start an AudioContext only after a user gesture: make it on the first one.
    const unlock = () => {
      this.context();
      window.removeEventListener("pointerdown", unlock);
      window.removeEventListener("keydown", unlock);
    };
    window.addEventListener("pointerdown", unlock);
    window.addEventListener("keydown", unlock);
  }

  get supported() {
    return "Notification" in window;
  }

  get permission() {
    return this.supported ? Notification.permission : "unsupported";
  }

  /** Ask for permission: call only from a click. */
  async ask() {
    if (!this.supported) return "unsupported";
    try {
      return await Notification.requestPermission();
    } catch {
      return Notification.permission;
    }
  }

  context() {
    if (!this.audio) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return null;
      try {
        this.audio = new Context();
      } catch {
        return null;
      }
    }
    return this.audio;
  }

  beep() {
    const audio = this.context();
    if (!audio || audio.state !== "running") return;
    const now = audio.currentTime;
    const tone = audio.createOscillator();
    const gain = audio.createGain();
    tone.type = "sine";
    tone.frequency.value = BEEP_HZ;
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.2, now + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + BEEP_S);
    tone.connect(gain).connect(audio.destination);
    tone.start(now);
    tone.stop(now + BEEP_S + 0.02);
  }

  alert(title, body) {
    if (!document.hidden) return;
    const now = Date.now();
    if (now - this.lastAt > QUIET_MS) this.beep();
    this.lastAt = now;
    if (this.permission !== "granted") return;
    try {
      const note = new Notification(title, { body: body.slice(0, 200), tag: "raydesk" });
      note.addEventListener("click", () => {
        window.focus();
        note.close();
      });
    } catch {
      // Some browsers allow notifications only from a service worker: the beep is enough.
    }
  }

  message(who, text) {
    this.alert(`New message from ${who}`, text);
  }

  conversation(who, what) {
    this.alert(`${who} ${what}`, "raydesk console");
  }
}
