// Words and numbers for people: times, durations, confidences, and what a system event
// means (protocol.md, "System events"), including why the router chose an agent.

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

export const clock = (ts) => (ts ? timeFormat.format(new Date(ts)) : "");
export const dateTime = (ts) => (ts ? dateFormat.format(new Date(ts)) : "—");

/** 0:07, 12:03, 1:02:03 — for wait times that tick every second. */
export function duration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/** now, 5m, 3h, 2d — how long ago. */
export function ago(ts) {
  const seconds = Math.max(0, (Date.now() - ts) / 1000);
  if (seconds < 60) return "now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

export const percent = (value) =>
  typeof value === "number" ? `${Math.round(value * 100)}%` : "—";

const HANDOFF_REASONS = {
  requested: "the customer asked for a person",
  bot_unavailable: "the bot did not answer in time",
  low_confidence: "the bot was not confident",
  unanswered: "the bot could not answer several times in a row",
  intent: "the bot recognised a request it does not answer itself",
};

const REQUEUE_REASONS = {
  agent_offline: "the agent went offline",
  reply_deadline: "the agent missed the reply deadline",
};

/** Why the router chose an agent: the assigned event's reason, in words. */
export function routingReason(reason) {
  if (!reason) return "";
  if (reason.by === "accept") return "taken from the queue by hand";
  if (reason.policy === "score") {
    const parts = [`lowest score ${reason.score}`, `load ${reason.load}/${reason.max_chats}`];
    parts.push(reason.response_ms === null || reason.response_ms === undefined
      ? "no response time yet"
      : `responds in ${(reason.response_ms / 1000).toFixed(1)} s`);
    return `routed: ${parts.join(" · ")}`;
  }
  return JSON.stringify(reason);
}

/**
 * A system message as {title, detail}: title is what happened, detail the why.
 * name(id) gives an agent's display name.
 */
export function describeEvent(message, name) {
  const event = message.event || {};
  switch (event.kind) {
    case "opened":
      return { title: "Conversation opened", detail: event.status === "bot" ? "the bot answers first" : "" };
    case "queued":
      if (event.reason) {
        return {
          title: `Back in the queue from ${name(event.from_agent)}`,
          detail: [REQUEUE_REASONS[event.reason] || event.reason, event.skill && `skill ${event.skill}`]
            .filter(Boolean).join(" · "),
        };
      }
      return { title: "Waiting for an agent", detail: event.skill ? `skill ${event.skill}` : "any agent" };
    case "assigned":
      return { title: `Assigned to ${name(event.agent_id)}`, detail: routingReason(event.reason) };
    case "transferred":
      return {
        title: event.to_agent
          ? `Transferred from ${name(event.from_agent)} to ${name(event.to_agent)}`
          : `Transferred from ${name(event.from_agent)} to skill ${event.to_skill}`,
        detail: "",
      };
    case "handoff": {
      const bits = [HANDOFF_REASONS[event.reason] || event.reason, `confidence ${percent(event.confidence)}`];
      if (event.intent) bits.push(`intent ${event.intent}`);
      if (event.model_version) bits.push(`model ${event.model_version}`);
      return { title: "Bot handed off to the agents", detail: bits.filter(Boolean).join(" · ") };
    }
    case "closed":
      return { title: "Conversation closed", detail: event.by ? `by ${closer(event.by, name)}` : "" };
    default:
      return { title: message.text, detail: "" };
  }
}

function closer(id, name) {
  if (id.startsWith("v_")) return "the customer";
  if (id.startsWith("a_")) return name(id);
  return id;
}

/** A bot message's analysis: "FAQ reset · 92% · minilm-1". */
export function botSummary(bot) {
  if (!bot) return "";
  const bits = [];
  if (bot.faq_id) bits.push(`FAQ ${bot.faq_id}`);
  if (bot.intent) bits.push(`intent ${bot.intent}`);
  bits.push(`confidence ${percent(bot.confidence)}`);
  if (bot.model_version) bits.push(bot.model_version);
  return bits.join(" · ");
}

/** A short browser name from a User-Agent string, with the full string kept for a title. */
export function browserName(ua) {
  if (!ua) return "—";
  const checks = [[/Edg\/(\d+)/, "Edge"], [/OPR\/(\d+)/, "Opera"], [/Firefox\/(\d+)/, "Firefox"],
    [/Chrom(?:e|ium)\/(\d+)/, "Chrome"], [/Version\/(\d+).*Safari/, "Safari"]];
  let browser = "";
  for (const [pattern, label] of checks) {
    const match = ua.match(pattern);
    if (match) {
      browser = `${label} ${match[1]}`;
      break;
    }
  }
  const os = [[/Windows/, "Windows"], [/Android/, "Android"], [/iPhone|iPad/, "iOS"],
    [/Mac OS X/, "macOS"], [/Linux/, "Linux"]].find(([pattern]) => pattern.test(ua));
  return [browser, os && os[1]].filter(Boolean).join(" on ") || ua.slice(0, 60);
}
