// Admin: the live overview: agents online, the queue's length and longest wait, and the
// chats each agent holds (GET /v1/agents and GET /v1/queue), read again every few seconds
// while the page is open.

import { h, fill } from "./dom.js";
import { duration } from "./format.js";

const REFRESH_MS = 3_000;

export function createOverviewPage(api, store, { toast }) {
  const stat = (label, testid) => {
    const value = h("span", { class: "stat-value", "data-testid": testid }, "–");
    return { value, el: h("div", { class: "stat card" }, value, h("span", { class: "stat-label" }, label)) };
  };
  const online = stat("agents online", "overview-online");
  const away = stat("agents away", "overview-away");
  const queued = stat("waiting in the queue", "overview-queue");
  const longest = stat("longest wait", "overview-longest");
  const updated = h("p", { class: "hint", "aria-live": "off", "data-testid": "overview-updated" });
  const agentsBody = h("tbody");
  const queueBody = h("tbody");
  const root = h("main", { id: "main", class: "page", "data-testid": "admin-overview", tabindex: "-1" },
    h("h1", null, "Live overview"), updated,
    h("div", { class: "stats" }, online.el, away.el, queued.el, longest.el),
    h("div", { class: "two-up" },
      h("section", { class: "card", "aria-labelledby": "ov-agents" }, h("h2", { id: "ov-agents" }, "Chats per agent"),
        h("table", { class: "table", "data-testid": "overview-agents" },
          h("thead", null, h("tr", null, ...["Agent", "Presence", "Chats", "Skills"].map((t) => h("th", { scope: "col" }, t)))), agentsBody)),
      h("section", { class: "card", "aria-labelledby": "ov-queue" }, h("h2", { id: "ov-queue" }, "Queue"),
        h("table", { class: "table", "data-testid": "overview-queue-table" },
          h("thead", null, h("tr", null, ...["Position", "Skill", "Priority", "Waiting"].map((t) => h("th", { scope: "col" }, t)))), queueBody))));

  const rank = { online: 0, away: 1, offline: 2 };

  async function refresh() {
    try {
      const [agents, queue] = await Promise.all([api.agents(), api.queue()]);
      store.setAgents(agents.agents);
      const list = [...agents.agents].sort((a, b) => rank[a.presence] - rank[b.presence] || b.load - a.load || a.name.localeCompare(b.name));
      online.value.textContent = String(list.filter((a) => a.presence === "online").length);
      away.value.textContent = String(list.filter((a) => a.presence === "away").length);
      queued.value.textContent = String(queue.queue.length);
      longest.value.textContent = queue.queue.length ? duration(Math.max(...queue.queue.map((q) => q.waiting_ms))) : "–";
      fill(agentsBody, ...list.map((a) => h("tr", { "data-testid": "overview-agent", "data-agent-id": a.agent_id },
        h("td", null, a.name),
        h("td", null, h("span", { class: ["presence", `presence-${a.presence}`] }, a.presence)),
        h("td", null, h("span", { class: "load" }, h("meter", { min: 0, max: a.max_chats, value: a.load, "aria-label": `${a.load} of ${a.max_chats} chats` }), ` ${a.load}/${a.max_chats}`)),
        h("td", null, a.skills.join(", ") || "any"))));
      fill(queueBody, ...(queue.queue.length ? queue.queue.map((q) => h("tr", null,
        h("td", null, String(q.position)), h("td", null, q.skill || "any"),
        h("td", null, q.priority === -1 ? "requeued" : String(q.priority)), h("td", null, duration(q.waiting_ms))))
        : [h("tr", null, h("td", { colspan: 4, class: "empty" }, "No one is waiting."))]));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${REFRESH_MS / 1000} s.`;
    } catch (error) {
      toast(error.message, "error");
    }
  }

  refresh();
  const timer = setInterval(() => {
    if (!document.hidden) refresh();
  }, REFRESH_MS);
  return { el: root, destroy: () => clearInterval(timer) };
}
