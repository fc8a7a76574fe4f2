// The left column: the queue (with ticking wait times), your conversations, all open
// ones and the closed ones, with unread counts. Items are kept by conversation id and
// updated in place, so a focused item keeps its focus while the lists change.

import { h, fill } from "./dom.js";
import { ago, duration } from "./format.js";

const CLOSED_SHOWN = 100; // the newest closed conversations; the rest are history
const OPEN_SHOWN = 300;

export function createLists(store, { onSelect }) {
  const byRecent = (a, b) => (b.updated_ts || 0) - (a.updated_ts || 0);
  const byQueue = (a, b) => {
    const qa = store.queue.get(a.conversation_id);
    const qb = store.queue.get(b.conversation_id);
    if (qa && qb) return qa.order - qb.order;
    if (qa || qb) return qa ? -1 : 1;
    return store.waitingSince(a) - store.waitingSince(b);
  };
  const sections = [
    { key: "queued", title: "Queue", open: true, sort: byQueue,
      keep: (c) => c.status === "queued", empty: "No one is waiting." },
    { key: "mine", title: "Mine", open: true, sort: byRecent,
      keep: (c) => store.isMine(c), empty: "No conversations assigned to you." },
    { key: "open", title: "All open", open: false, sort: byRecent, limit: OPEN_SHOWN,
      keep: (c) => c.status !== "closed", empty: "No open conversations." },
    { key: "closed", title: "Closed", open: false, sort: byRecent, limit: CLOSED_SHOWN,
      keep: (c) => c.status === "closed", empty: "None yet." },
  ];
  let selected = null;

  for (const section of sections) {
    section.count = h("span", { class: "count", "data-testid": `count-${section.key}` }, "0");
    section.list = h("ul", { class: "conv-list", "data-testid": `list-${section.key}`, "aria-label": section.title });
    section.emptyNote = h("p", { class: "empty" }, section.empty);
    section.more = h("p", { class: "empty", hidden: true });
    section.items = new Map();
    section.el = h("details", { class: "list-section", open: section.open, "data-testid": `section-${section.key}` },
      h("summary", null, h("span", { class: "section-title" }, section.title), section.count),
      section.list, section.emptyNote, section.more);
  }

  const root = h("nav", { class: "lists", "aria-label": "Conversations", "data-testid": "lists" },
    ...sections.map((s) => s.el));

  // Up and Down move between the items of a list.
  root.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const item = event.target.closest?.("[data-conversation-id]");
    if (!item) return;
    const all = [...item.closest("ul").querySelectorAll("button.conv")];
    const next = all[all.indexOf(item) + (event.key === "ArrowDown" ? 1 : -1)];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  });

  // Only items whose conversation changed are repainted (all of them now and then, for
  // the "5m ago" texts and after a change that touches every item).
  const dirty = new Set();
  let repaintAll = true;

  function itemFor(section, conv) {
    let entry = section.items.get(conv.conversation_id);
    const fresh = !entry;
    if (!entry) {
      const button = h("button", {
        type: "button", class: "conv", "data-testid": "conversation-item",
        "data-conversation-id": conv.conversation_id,
        onClick: () => onSelect(conv.conversation_id),
      });
      entry = { li: h("li", null, button), button };
      section.items.set(conv.conversation_id, entry);
    }
    if (fresh || repaintAll || dirty.has(conv.conversation_id)) paint(section, entry.button, conv);
    return entry;
  }

  function paint(section, button, conv) {
    const id = conv.conversation_id;
    // Unread counts where they are the agent's business: the queue and your own chats.
    const counted = section.key === "queued" || store.isMine(conv);
    const unread = id === selected || !counted ? 0 : store.unread(conv);
    const when = section.key === "queued"
      ? h("span", { class: "wait", "data-wait-since": String(store.waitingSince(conv)), title: "Waiting" },
        duration(Date.now() - store.waitingSince(conv)))
      : h("span", { class: "when", title: "Last change" }, ago(conv.updated_ts || Date.now()));
    const preview = store.isTyping(id) ? "typing…" : store.lastText(id);
    fill(button,
      h("span", { class: "conv-top" },
        h("span", { class: "conv-name" }, store.visitorName(conv)),
        when),
      h("span", { class: "conv-bottom" },
        h("span", { class: ["status-dot", `status-${conv.status}`], title: conv.status }),
        conv.skill ? h("span", { class: "tag" }, conv.skill) : null,
        section.key !== "mine" && conv.status === "assigned"
          ? h("span", { class: "conv-assignee" }, store.agentName(conv.assignee)) : null,
        h("span", { class: ["conv-preview", store.isTyping(id) && "typing"] }, preview),
        unread ? h("span", { class: "unread", "data-testid": "unread", "aria-label": `${unread} unread` }, String(unread)) : null));
    if (id === selected) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    button.dataset.status = conv.status;
  }

  function render() {
    const all = [...store.conversations.values()];
    for (const section of sections) {
      const chosen = all.filter(section.keep).sort(section.sort);
      const shown = section.limit ? chosen.slice(0, section.limit) : chosen;
      section.count.textContent = String(chosen.length);
      const wanted = new Set(shown.map((c) => c.conversation_id));
      for (const [id, entry] of section.items) {
        if (!wanted.has(id)) {
          entry.li.remove();
          section.items.delete(id);
        }
      }
      // Move only what is out of place, so the focused item stays where it is.
      shown.forEach((conv, index) => {
        const { li } = itemFor(section, conv);
        if (section.list.children[index] !== li) section.list.insertBefore(li, section.list.children[index] || null);
      });
      section.emptyNote.hidden = chosen.length > 0;
      section.more.hidden = chosen.length <= shown.length;
      section.more.textContent = `and ${chosen.length - shown.length} more`;
    }
    dirty.clear();
    repaintAll = false;
    const mine = all.filter((c) => store.isMine(c));
    const unread = mine.reduce((sum, c) => sum + (c.conversation_id === selected ? 0 : store.unread(c)), 0);
    document.title = unread ? `(${unread}) raydesk console` : "raydesk console";
  }

  let scheduled = 0;
  const schedule = () => {
    if (!scheduled) scheduled = setTimeout(() => {
      scheduled = 0;
      render();
    }, 30);
  };
  const touch = (event) => {
    if (event.detail) dirty.add(event.detail);
    schedule();
  };
  const everything = () => {
    repaintAll = true;
    schedule();
  };
  store.addEventListener("lists", schedule);
  store.addEventListener("conversation", touch);
  store.addEventListener("signals", touch);
  store.addEventListener("messages", touch);
  store.addEventListener("agents", everything);
  store.addEventListener("queue", everything);
  const refresher = setInterval(everything, 30_000);

  // Wait times tick every second without rebuilding anything.
  const ticker = setInterval(() => {
    for (const el of root.querySelectorAll("[data-wait-since]")) {
      el.textContent = duration(Date.now() - Number(el.dataset.waitSince));
    }
  }, 1000);

  return {
    el: root,
    select(id) {
      if (selected) dirty.add(selected);
      if (id) dirty.add(id);
      selected = id;
      schedule();
    },
    destroy() {
      clearInterval(ticker);
      clearInterval(refresher);
      clearTimeout(scheduled);
    },
  };
}
