// The centre column: one conversation's header and actions (accept, transfer, close),
// its whole log in seq order (customer, agent, bot and system messages, private notes
// placed by time, sends not yet stored), the typing indicator and read receipts.

import { h, fill, icon, linkify } from "./dom.js";
import { botSummary, clock, dateTime, describeEvent } from "./format.js";
import { createComposer } from "./composer.js";

const NEAR_BOTTOM_PX = 80;

export function createConversationView(store, desk) {
  let current = null;
  let confirming = false; // the close button asked "Close for good?"
  // key ("m:seq", "n:note_id", "p:client_msg_id:state") -> {el, value, make}
  const rendered = new Map();

  const title = h("h1", { class: "conv-title", id: "conv-title", "data-testid": "conversation-title" });
  const facts = h("p", { class: "conv-facts", "data-testid": "conversation-facts" });
  const acceptButton = h("button", { type: "button", class: "primary", "data-testid": "accept", onClick: () => desk.accept(current) }, icon("accept"), "Accept");
  const transferButton = h("button", { type: "button", "data-testid": "transfer-open", "aria-expanded": "false", "aria-controls": "transfer-panel", onClick: () => toggleTransfer() }, icon("transfer"), "Transfer");
  const closeButton = h("button", { type: "button", "data-testid": "close-conversation", onClick: () => askClose(true) }, icon("close"), "Close");
  const closeConfirm = h("span", { class: "confirm", "data-testid": "close-confirm-box", hidden: true },
    h("span", null, "Close for good?"),
    h("button", { type: "button", class: "danger", "data-testid": "close-confirm", onClick: () => { desk.close(current); askClose(false); } }, "Yes, close"),
    h("button", { type: "button", "data-testid": "close-cancel", onClick: () => askClose(false) }, "No"));
  const actions = h("div", { class: "conv-actions" }, acceptButton, transferButton, closeButton, closeConfirm);

  const transferAgent = h("select", { id: "transfer-agent", "data-testid": "transfer-agent" });
  const transferSkill = h("input", { id: "transfer-skill", "data-testid": "transfer-skill", placeholder: "billing", pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off" });
  const transferPanel = h("div", { id: "transfer-panel", class: "transfer-panel", "data-testid": "transfer-panel", hidden: true },
    h("form", { class: "inline-form", onSubmit: (e) => { e.preventDefault(); transferTo({ to_agent: transferAgent.value }); } },
      h("label", { for: "transfer-agent" }, "To an agent"), transferAgent,
      h("button", { type: "submit", "data-testid": "transfer-agent-submit" }, "Transfer")),
    h("form", { class: "inline-form", onSubmit: (e) => { e.preventDefault(); transferTo({ to_skill: transferSkill.value.trim() }); } },
      h("label", { for: "transfer-skill" }, "Or to a skill's queue"), transferSkill,
      h("button", { type: "submit", "data-testid": "transfer-skill-submit" }, "Transfer")),
    h("button", { type: "button", class: "link", onClick: () => toggleTransfer(false) }, "Cancel"));

  const log = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-labelledby": "conv-title", "data-testid": "message-list", tabindex: "0" });
  const typing = h("p", { class: "typing-indicator", "data-testid": "typing-indicator", "aria-live": "polite", hidden: true });
  const composer = createComposer(store, desk);

  const empty = h("div", { class: "conv-empty", "data-testid": "conversation-empty" },
    h("p", null, "Pick a conversation from the lists, or accept one from the queue."));
  const body = h("div", { class: "conv-body", hidden: true },
    h("header", { class: "conv-header" }, h("div", { class: "conv-heading" }, title, facts), actions),
    transferPanel, log, typing, composer.el);
  const root = h("main", { id: "main", class: "conversation", "data-testid": "conversation-view", tabindex: "-1" }, empty, body);

  root.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (!transferPanel.hidden) {
      toggleTransfer(false);
      transferButton.focus();
    } else if (confirming) {
      askClose(false);
    }
  });

  // --- header and actions -------------------------------------------------------------

  function renderHeader() {
    const conv = store.conversations.get(current);
    if (!conv) return;
    title.textContent = store.visitorName(conv);
    const bits = [
      h("span", { class: ["badge", `status-${conv.status}`], "data-testid": "conversation-status" }, conv.status),
      conv.skill ? h("span", { class: "tag" }, conv.skill) : null,
      conv.status === "assigned" ? h("span", null, `with ${store.agentName(conv.assignee)}`) : null,
      conv.created_ts ? h("span", null, `opened ${dateTime(conv.created_ts)}`) : null,
    ];
    fill(facts, ...bits);
    const focused = actions.contains(document.activeElement) ? document.activeElement : null;
    const admin = store.me.role === "admin";
    const canClose = conv.status !== "closed" && (store.isMine(conv) || admin);
    acceptButton.hidden = conv.status !== "queued";
    transferButton.hidden = !(conv.status === "assigned" && (store.isMine(conv) || admin));
    if (!canClose) confirming = false;
    closeButton.hidden = !canClose || confirming;
    closeConfirm.hidden = !canClose || !confirming;
    if (transferButton.hidden) toggleTransfer(false);
    // An action that did its work disappears (Accept, the close question): keep the
    // keyboard focus in the conversation instead of losing it to the page.
    if (focused && focused.closest("[hidden]")) {
      if (store.isMine(conv)) composer.focus();
      else log.focus();
    }
  }

  function askClose(open) {
    const wasOpen = confirming;
    confirming = open;
    if (current) renderHeader();
    if (open) closeConfirm.querySelector("[data-testid=close-confirm]").focus();
    else if (wasOpen && !closeButton.hidden) closeButton.focus();
  }

  function fillAgents() {
    const keep = transferAgent.value;
    const others = [...store.agents.values()].filter((a) => a.agent_id !== store.me.agent_id);
    fill(transferAgent, ...(others.length ? others.map((a) => h("option", {
      value: a.agent_id, disabled: a.presence === "offline" || a.load >= a.max_chats, "data-agent-id": a.agent_id,
    }, `${a.name} — ${a.presence}, ${a.load}/${a.max_chats} chats${a.skills.length ? `, ${a.skills.join(", ")}` : ""}`))
      : [h("option", { value: "", disabled: true }, "No other agents")]));
    if (keep && others.some((a) => a.agent_id === keep)) transferAgent.value = keep;
    else {
      const first = others.find((a) => a.presence !== "offline" && a.load < a.max_chats);
      if (first) transferAgent.value = first.agent_id;
    }
  }

  function toggleTransfer(open = transferPanel.hidden) {
    transferPanel.hidden = !open;
    transferButton.setAttribute("aria-expanded", String(open));
    if (open) {
      fillAgents();
      desk.refreshAgents();
      transferAgent.focus();
    }
  }

  function transferTo(target) {
    if (!current || !(target.to_agent || target.to_skill)) return;
    desk.transfer(current, target);
    toggleTransfer(false);
  }

  // --- the log ------------------------------------------------------------------------

  function messageItem(m) {
    const role = m.sender.role;
    if (role === "system") {
      const { title: what, detail } = describeEvent(m, (id) => store.agentName(id));
      return h("div", { class: ["msg", "msg-system", `event-${m.event?.kind || "other"}`], "data-testid": "message", "data-seq": m.seq, "data-role": role, "data-event": m.event?.kind || "" },
        h("span", { class: "event-title" }, what),
        detail ? h("span", {
          class: "event-detail", "data-testid": "event-detail",
          // The routing weights and the rest of the reason, for whoever wants them.
          title: m.event?.reason && typeof m.event.reason === "object" ? JSON.stringify(m.event.reason) : null,
        }, detail) : null,
        h("time", { class: "msg-time", datetime: new Date(m.ts).toISOString() }, clock(m.ts)));
    }
    const who = role === "customer" ? store.visitorName(store.conversations.get(m.conversation_id) || {})
      : role === "bot" ? "Bot" : store.agentName(m.sender.id);
    const mine = role === "agent" && m.sender.id === store.me.agent_id;
    return h("div", { class: ["msg", `msg-${role}`, mine && "msg-mine"], "data-testid": "message", "data-seq": m.seq, "data-role": role },
      h("div", { class: "msg-meta" }, h("span", { class: "msg-who" }, who), h("time", { class: "msg-time", datetime: new Date(m.ts).toISOString() }, clock(m.ts))),
      h("div", { class: "msg-text" }, linkify(m.text)),
      role === "bot" ? h("div", { class: "bot-meta", "data-testid": "bot-meta" }, botSummary(m.bot)) : null,
      role === "agent" ? h("span", { class: "receipt", "data-testid": "receipt" }) : null);
  }

  function noteItem(n) {
    return h("div", { class: "note", "data-testid": "note", "data-note-id": n.note_id },
      h("div", { class: "msg-meta" },
        h("span", { class: "note-flag" }, icon("note"), "Private note · only agents see this"),
        h("span", { class: "msg-who" }, store.agentName(n.sender.id)),
        h("time", { class: "msg-time", datetime: new Date(n.ts).toISOString() }, clock(n.ts))),
      h("div", { class: "msg-text" }, linkify(n.text)));
  }

  function pendingItem(p) {
    const failed = p.state === "failed";
    return h("div", { class: ["msg", p.kind === "note" ? "note" : "msg-agent msg-mine", "pending", failed && "failed"], "data-testid": "message-pending", "data-state": p.state },
      h("div", { class: "msg-meta" }, h("span", { class: "msg-who" }, p.kind === "note" ? "Private note" : "you"),
        h("span", { class: "msg-time" }, failed ? "not sent" : "sending…")),
      h("div", { class: "msg-text" }, p.text),
      failed ? h("div", { class: "pending-actions" },
        h("span", { class: "error-text" }, p.error),
        h("button", { type: "button", class: "link", onClick: () => desk.retry(current, p.frame.client_msg_id) }, "Retry"),
        h("button", { type: "button", class: "link", onClick: () => store.discardPending(current, p.frame.client_msg_id) }, "Discard")) : null);
  }

  function renderLog() {
    if (!current) return;
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < NEAR_BOTTOM_PX;
    const items = [];
    const notes = store.noteList(current);
    let n = 0;
    for (const m of store.messageList(current)) {
      while (n < notes.length && notes[n].ts < m.ts) items.push(["n:" + notes[n].note_id, notes[n++], noteItem]);
      items.push(["m:" + m.seq, m, messageItem]);
    }
    while (n < notes.length) items.push(["n:" + notes[n].note_id, notes[n++], noteItem]);
    for (const p of store.pendingList(current)) items.push([`p:${p.frame.client_msg_id}:${p.state}`, p, pendingItem]);

    const wanted = new Set(items.map(([key]) => key));
    for (const [key, entry] of rendered) {
      if (!wanted.has(key)) {
        entry.el.remove();
        rendered.delete(key);
      }
    }
    items.forEach(([key, value, make], index) => {
      let entry = rendered.get(key);
      if (!entry) {
        entry = { el: make(value), value, make };
        rendered.set(key, entry);
      }
      if (log.children[index] !== entry.el) log.insertBefore(entry.el, log.children[index] || null);
    });
    renderReceipts();
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }

  function renderReceipts() {
    const readTo = store.customerRead.get(current) || 0;
    for (const el of log.querySelectorAll("[data-role=agent]")) {
      const read = Number(el.dataset.seq) <= readTo;
      const receipt = el.querySelector(".receipt");
      if (!receipt) continue;
      receipt.textContent = read ? "✓✓" : "✓";
      receipt.setAttribute("aria-label", read ? "Read by the customer" : "Delivered");
      receipt.title = read ? "Read by the customer" : "Stored, not read yet";
      receipt.classList.toggle("read", read);
      el.dataset.read = String(read);
    }
  }

  function renderTyping() {
    const on = current && store.isTyping(current);
    typing.hidden = !on;
    typing.textContent = on ? `${store.visitorName(store.conversations.get(current) || {})} is typing…` : "";
  }

  store.addEventListener("messages", (event) => {
    if (event.detail === current) renderLog();
  });
  store.addEventListener("conversation", (event) => {
    if (event.detail === current) renderHeader();
  });
  store.addEventListener("signals", (event) => {
    if (event.detail === current) {
      renderTyping();
      renderReceipts();
    }
  });
  store.addEventListener("agents", () => {
    if (!current) return;
    renderHeader();
    if (!transferPanel.hidden) fillAgents();
    // Names in the log may have been ids until the agent list arrived.
    for (const entry of rendered.values()) {
      const el = entry.make(entry.value);
      entry.el.replaceWith(el);
      entry.el = el;
    }
    renderReceipts();
  });

  return {
    el: root,
    show(id) {
      if (id === current) return;
      current = id;
      rendered.clear();
      log.replaceChildren();
      toggleTransfer(false);
      confirming = false;
      empty.hidden = Boolean(id);
      body.hidden = !id;
      composer.show(id);
      if (!id) return;
      renderHeader();
      renderLog();
      renderTyping();
      log.scrollTop = log.scrollHeight;
    },
    focusComposer() {
      composer.focus();
    },
  };
}
