// Admin: the questions the bot did not answer (GET /v1/bot/unanswered), each beside the
// first answer an agent gave, a page at a time: material for the next FAQ.

import { h, fill } from "./dom.js";
import { dateTime, percent } from "./format.js";

const PAGE = 50;

export function createUnansweredPage(api, store, { toast, onOpen }) {
  let offset = 0;
  let total = 0;
  const summary = h("p", { class: "hint", "data-testid": "unanswered-summary", "aria-live": "polite" });
  const prev = h("button", { type: "button", "data-testid": "unanswered-prev", onClick: () => go(offset - PAGE) }, "Previous");
  const next = h("button", { type: "button", "data-testid": "unanswered-next", onClick: () => go(offset + PAGE) }, "Next");
  const tbody = h("tbody");
  const table = h("table", { class: "table", "data-testid": "unanswered-table" },
    h("caption", { class: "visually-hidden" }, "Unanswered questions"),
    h("thead", null, h("tr", null, ...["When", "Question", "Bot's guess", "What happened", "An agent's answer"].map((t) => h("th", { scope: "col" }, t)))),
    tbody);
  const root = h("main", { id: "main", class: "page", "data-testid": "admin-unanswered", tabindex: "-1" },
    h("h1", null, "Unanswered questions"),
    h("p", { class: "hint" }, "Questions the bot asked to rephrase or handed off, oldest first, beside the first answer an agent wrote."),
    h("section", { class: "card" }, table, h("div", { class: "pager" }, prev, summary, next)));

  function row(q) {
    const guess = q.faq_id ? `FAQ ${q.faq_id}` : q.intent ? `intent ${q.intent}` : "none";
    return h("tr", { "data-testid": "unanswered-row", "data-conversation-id": q.conversation_id, "data-seq": q.seq },
      h("td", null, dateTime(q.ts)),
      h("td", null, h("button", { type: "button", class: "link", title: "Open the conversation", onClick: () => onOpen(q.conversation_id) }, q.text)),
      h("td", null, `${guess} · ${percent(q.confidence)}`),
      h("td", null, [q.action, q.reason].filter(Boolean).join(": ")),
      h("td", { class: "pre", "data-testid": "unanswered-answer" }, q.answer
        ? [q.answer.text, h("span", { class: "hint" }, ` — ${store.agentName(q.answer.agent_id)}`)]
        : h("span", { class: "hint" }, "not answered yet")));
  }

  async function go(to) {
    offset = Math.max(0, to);
    try {
      const page = await api.unanswered(offset, PAGE);
      const items = page.questions || page.items || [];
      total = page.total;
      fill(tbody, ...(items.length ? items.map(row) : [h("tr", null, h("td", { colspan: 5, class: "empty" }, "Nothing here: the bot answered everything."))]));
      summary.textContent = total ? `${offset + 1}–${offset + items.length} of ${total} questions` : "0 questions";
      prev.disabled = offset === 0;
      next.disabled = offset + items.length >= total;
    } catch (error) {
      toast(error.message, "error");
    }
  }

  go(0);
  return { el: root, destroy() {} };
}
