// The right column: who the customer is (GET /v1/visitors/{id}): name, email, the
// attributes the site passed, the page, browser and address they wrote from, and their
// earlier conversations.

import { h, fill, linkify } from "./dom.js";
import { browserName, dateTime } from "./format.js";

const FRESH_MS = 15_000; // visitor details are read again when older than this

export function createVisitorPanel(store, api, { onOpen }) {
  let current = null; // conversation id
  const cache = new Map(); // visitor id -> {at, data}
  const loading = new Set(); // visitor ids being read
  const body = h("div", { class: "panel-body" });
  const root = h("aside", { class: "visitor", "aria-label": "Visitor", "data-testid": "visitor-panel" },
    h("h2", { class: "panel-title" }, "Visitor"), body);

  function row(label, value, testid) {
    return [h("dt", null, label), h("dd", { "data-testid": testid }, value ?? "—")];
  }

  function render(conv, visitor, error) {
    if (!conv) {
      fill(body, h("p", { class: "empty" }, "No conversation open."));
      return;
    }
    const known = store.visitors.get(conv.customer) || {};
    const v = visitor || { name: known.name, email: known.email, attributes: known.attributes || {} };
    const attributes = Object.entries(v.attributes || {});
    fill(body,
      h("p", { class: "visitor-name", "data-testid": "visitor-name" }, v.name || store.visitorName(conv)),
      h("dl", { class: "facts" },
        row("Email", v.email ? h("a", { href: `mailto:${v.email}` }, v.email) : null, "visitor-email"),
        row("Page", v.page ? linkify(v.page) : null, "visitor-page"),
        row("Browser", v.browser ? h("span", { title: v.browser }, browserName(v.browser)) : null, "visitor-browser"),
        row("IP", v.ip, "visitor-ip"),
        row("Inbox", v.inbox, "visitor-inbox"),
        row("Skill", v.skill, "visitor-skill"),
        row("First seen", v.created_ts ? dateTime(v.created_ts) : null, "visitor-created")),
      h("h3", null, "Attributes"),
      attributes.length
        ? h("dl", { class: "facts", "data-testid": "visitor-attributes" }, ...attributes.map(([k, val]) => row(k, linkify(val))))
        : h("p", { class: "empty" }, "None."),
      h("h3", null, "Conversations"),
      visitor ? conversations(visitor, conv) : h("p", { class: "empty" }, error || "Loading…"),
      h("h3", null, "This conversation"),
      h("dl", { class: "facts" },
        row("Id", h("code", null, conv.conversation_id), "conversation-id"),
        row("Status", conv.status),
        row("Skill", conv.skill),
        row("Agent", conv.assignee ? store.agentName(conv.assignee) : null),
        row("Messages", String(conv.last_seq || 0))));
  }

  function conversations(visitor, conv) {
    const list = visitor.conversations || [];
    if (!list.length) return h("p", { class: "empty" }, "None.");
    return h("ul", { class: "history", "data-testid": "visitor-conversations" }, ...list.map((c) => h("li", null,
      c.conversation_id === conv.conversation_id
        ? h("span", { class: "history-current" }, `${dateTime(c.created_ts)} · ${c.status} · this one`)
        : h("button", { type: "button", class: "link", "data-conversation-id": c.conversation_id, onClick: () => onOpen(c.conversation_id) },
          `${dateTime(c.created_ts)} · ${c.status} · ${c.last_seq} messages`))));
  }

  // The cached history is out of date once this conversation's status differs from it.
  const stale = (cached, conv) => !cached || Date.now() - cached.at >= FRESH_MS
    || cached.data.conversations.some((c) => c.conversation_id === conv.conversation_id && c.status !== conv.status);

  async function load(conv) {
    if (!conv.customer) {
      render(conv, null, "Unknown visitor.");
      return;
    }
    const cached = cache.get(conv.customer);
    render(conv, cached?.data || null);
    if (!stale(cached, conv) || loading.has(conv.customer)) return;
    loading.add(conv.customer);
    try {
      const data = await api.visitor(conv.customer);
      cache.set(conv.customer, { at: Date.now(), data });
      if (current === conv.conversation_id) render(store.conversations.get(current), data);
    } catch (error) {
      if (current === conv.conversation_id) render(store.conversations.get(current), cached?.data || null, error.message);
    } finally {
      loading.delete(conv.customer);
    }
  }

  store.addEventListener("conversation", (event) => {
    if (event.detail !== current) return;
    const conv = store.conversations.get(current);
    if (!conv || !conv.customer) return;
    const cached = cache.get(conv.customer);
    if (stale(cached, conv)) load(conv);
    else render(conv, cached.data);
  });

  render(null);
  return {
    el: root,
    show(id) {
      current = id;
      const conv = id && store.conversations.get(id);
      if (!conv) render(null);
      else load(conv);
    },
  };
}
