// The reply box and the private-note box under the conversation. Enter sends, Shift+Enter
// makes a new line; "/" at the start of the reply box opens the canned replies, filtered
// by what follows it (arrows move, Enter or a click inserts, Escape closes).

import { h, icon } from "./dom.js";

const MAX_TEXT = 8000; // limits.max_text_chars by default
const CANNED_SHOWN = 8;

export function createComposer(store, desk) {
  let current = null;
  let mode = "reply";
  const drafts = new Map(); // conversation id -> {reply, note}
  let matches = [];
  let active = 0;

  const replyTab = h("button", { type: "button", role: "tab", id: "tab-reply", "aria-controls": "panel-reply", "data-testid": "composer-reply-tab", onClick: () => setMode("reply") }, "Reply");
  const noteTab = h("button", { type: "button", role: "tab", id: "tab-note", "aria-controls": "panel-note", "data-testid": "composer-note-tab", onClick: () => setMode("note") }, "Private note");

  const reply = h("textarea", {
    id: "reply-box", "data-testid": "reply-box", rows: 3, maxlength: MAX_TEXT,
    placeholder: "Write a reply. Enter sends, Shift+Enter for a new line, / for canned replies",
    "aria-autocomplete": "list", "aria-controls": "canned-list", "aria-expanded": "false",
  });
  const sendButton = h("button", { type: "submit", class: "primary", "data-testid": "send" }, icon("send"), "Send");
  const cannedList = h("ul", { id: "canned-list", class: "canned-list", role: "listbox", "aria-label": "Canned replies", "data-testid": "canned-list", hidden: true });
  const replyHint = h("p", { class: "hint", "data-testid": "reply-hint", hidden: true });
  const replyForm = h("form", { class: "composer-form", onSubmit: (e) => { e.preventDefault(); sendReply(); } },
    h("label", { for: "reply-box", class: "visually-hidden" }, "Reply to the customer"),
    cannedList, reply, h("div", { class: "composer-actions" }, replyHint, sendButton));
  const replyPanel = h("div", { id: "panel-reply", role: "tabpanel", "aria-labelledby": "tab-reply" }, replyForm);

  const note = h("textarea", {
    id: "note-box", "data-testid": "note-box", rows: 3, maxlength: MAX_TEXT,
    placeholder: "A private note for agents. Enter adds it, Shift+Enter for a new line",
  });
  const noteButton = h("button", { type: "submit", class: "note-button", "data-testid": "note-send" }, icon("note"), "Add note");
  const noteForm = h("form", { class: "composer-form note-form", onSubmit: (e) => { e.preventDefault(); sendNote(); } },
    h("label", { for: "note-box", class: "note-label" }, "Private note — only agents see this"),
    note, h("div", { class: "composer-actions" }, h("span"), noteButton));
  const notePanel = h("div", { id: "panel-note", role: "tabpanel", "aria-labelledby": "tab-note", hidden: true }, noteForm);

  const root = h("section", { class: "composer", "aria-label": "Write", "data-testid": "composer" },
    h("div", { class: "composer-tabs", role: "tablist", "aria-label": "Reply or note" }, replyTab, noteTab),
    replyPanel, notePanel);

  function setMode(next, focus = true) {
    mode = next;
    replyTab.setAttribute("aria-selected", String(mode === "reply"));
    noteTab.setAttribute("aria-selected", String(mode === "note"));
    replyTab.tabIndex = mode === "reply" ? 0 : -1;
    noteTab.tabIndex = mode === "note" ? 0 : -1;
    replyPanel.hidden = mode !== "reply";
    notePanel.hidden = mode !== "note";
    root.classList.toggle("noting", mode === "note");
    if (focus) (mode === "reply" ? reply : note).focus();
  }
  // Left and Right switch the tabs (the ARIA tabs pattern).
  root.querySelector("[role=tablist]").addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
      event.preventDefault();
      setMode(mode === "reply" ? "note" : "reply", false);
      (mode === "reply" ? replyTab : noteTab).focus();
    }
  });

  function draft(id) {
    if (!drafts.has(id)) drafts.set(id, { reply: "", note: "" });
    return drafts.get(id);
  }

  function sendReply() {
    const text = reply.value;
    if (!current || !text.trim() || reply.disabled) return;
    desk.sendReply(current, text);
    reply.value = "";
    draft(current).reply = "";
    closeCanned();
  }

  function sendNote() {
    const text = note.value;
    if (!current || !text.trim()) return;
    desk.addNote(current, text);
    note.value = "";
    draft(current).note = "";
  }

  // --- canned replies -----------------------------------------------------------------

  function cannedQuery() {
    const value = reply.value;
    const caret = reply.selectionStart ?? value.length;
    if (!value.startsWith("/")) return null;
    const word = value.slice(1, caret);
    return /\s/.test(word) ? null : word.toLowerCase();
  }

  function updateCanned() {
    const q = cannedQuery();
    if (q === null) {
      closeCanned();
      return;
    }
    const items = store.canned.filter((c) => c.shortcut.toLowerCase().includes(q) || c.text.toLowerCase().includes(q));
    items.sort((a, b) => Number(!a.shortcut.toLowerCase().startsWith(q)) - Number(!b.shortcut.toLowerCase().startsWith(q)));
    matches = items.slice(0, CANNED_SHOWN);
    active = Math.min(active, Math.max(0, matches.length - 1));
    renderCanned();
  }

  function renderCanned() {
    cannedList.replaceChildren(...(matches.length ? matches.map((item, i) => h("li", {
      id: `canned-${i}`, role: "option", class: "canned-item", "data-testid": "canned-item",
      "data-shortcut": item.shortcut, "aria-selected": String(i === active),
      // mousedown, not click: the reply box keeps its focus and its caret.
      onMousedown: (event) => {
        event.preventDefault();
        insertCanned(item);
      },
    }, h("span", { class: "shortcut" }, `/${item.shortcut}`), h("span", { class: "canned-text" }, item.text)))
      : [h("li", { class: "canned-none" }, store.canned.length ? "No canned reply matches." : "No canned replies yet: add them under Canned replies.")]));
    cannedList.hidden = false;
    reply.setAttribute("aria-expanded", "true");
    if (matches.length) reply.setAttribute("aria-activedescendant", `canned-${active}`);
    else reply.removeAttribute("aria-activedescendant");
  }

  function closeCanned() {
    matches = [];
    active = 0;
    cannedList.hidden = true;
    reply.setAttribute("aria-expanded", "false");
    reply.removeAttribute("aria-activedescendant");
  }

  function insertCanned(item) {
    const value = reply.value;
    const caret = reply.selectionStart ?? value.length;
    reply.value = item.text + value.slice(caret);
    reply.setSelectionRange(item.text.length, item.text.length);
    closeCanned();
    reply.focus();
    if (current) draft(current).reply = reply.value;
  }

  reply.addEventListener("keydown", (event) => {
    if (event.isComposing) return;
    if (!cannedList.hidden) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        if (matches.length) active = (active + (event.key === "ArrowDown" ? 1 : -1) + matches.length) % matches.length;
        renderCanned();
        return;
      }
      if ((event.key === "Enter" || event.key === "Tab") && matches.length && !event.shiftKey) {
        event.preventDefault();
        insertCanned(matches[active]);
        return;
      }
      if (event.key === "Escape") {
        event.preventDefault();
        closeCanned();
        return;
      }
    }
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      sendReply();
    }
  });
  reply.addEventListener("input", () => {
    if (current) {
      draft(current).reply = reply.value;
      if (reply.value) desk.typing(current, true);
      else desk.typing(current, false);
    }
    updateCanned();
  });
  reply.addEventListener("click", updateCanned);
  reply.addEventListener("blur", () => setTimeout(closeCanned, 150));

  note.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendNote();
    }
  });
  note.addEventListener("input", () => {
    if (current) draft(current).note = note.value;
  });

  function refresh() {
    const conv = current && store.conversations.get(current);
    let why = "";
    if (!conv) why = "Pick a conversation.";
    else if (conv.status === "closed") why = "This conversation is closed.";
    else if (conv.status === "queued") why = "Accept the conversation to reply.";
    else if (conv.status === "bot") why = "The bot is handling this conversation.";
    else if (!store.isMine(conv)) why = `Assigned to ${store.agentName(conv.assignee)}: you can add a private note.`;
    reply.disabled = Boolean(why);
    sendButton.disabled = Boolean(why);
    replyHint.hidden = !why;
    replyHint.textContent = why;
    note.disabled = !conv;
    noteButton.disabled = !conv;
  }

  store.addEventListener("conversation", (event) => {
    if (event.detail === current) refresh();
  });
  store.addEventListener("agents", refresh);

  setMode("reply", false);

  return {
    el: root,
    show(id) {
      if (current && current !== id) desk.typing(current, false);
      current = id;
      const saved = id ? draft(id) : { reply: "", note: "" };
      reply.value = saved.reply;
      note.value = saved.note;
      closeCanned();
      refresh();
    },
    focus() {
      (mode === "reply" && !reply.disabled ? reply : note).focus();
    },
  };
}
