// Canned replies of your team (GET/POST/DELETE /v1/canned): add, look through, delete.
// In a conversation, "/" at the start of the reply box inserts them.

import { h, fill } from "./dom.js";

export function createCannedPage(api, store, { toast, reloadCanned }) {
  const status = h("p", { class: "form-status", role: "status", "data-testid": "canned-status" });
  const shortcut = h("input", { id: "canned-shortcut", required: true, pattern: "[A-Za-z0-9_.\\-]{1,32}", maxlength: 32, placeholder: "refund", autocomplete: "off", "data-testid": "canned-shortcut" });
  const text = h("textarea", { id: "canned-text", required: true, maxlength: 2000, rows: 3, "data-testid": "canned-text" });
  const form = h("form", { class: "card form-grid", onSubmit: add },
    h("h2", null, "New canned reply"),
    h("div", { class: "field" }, h("label", { for: "canned-shortcut" }, "Shortcut (letters, digits, _ . -)"), shortcut),
    h("div", { class: "field wide" }, h("label", { for: "canned-text" }, "Text"), text),
    h("div", { class: "form-end" }, h("button", { type: "submit", class: "primary", "data-testid": "canned-add" }, "Add"), status));
  const tbody = h("tbody");
  const root = h("main", { id: "main", class: "page", "data-testid": "canned-page", tabindex: "-1" },
    h("h1", null, "Canned replies"),
    h("p", { class: "hint" }, "Shared by your team. Type / at the start of a reply to insert one."),
    form,
    h("section", { class: "card" }, h("table", { class: "table", "data-testid": "canned-table" },
      h("caption", { class: "visually-hidden" }, "Canned replies"),
      h("thead", null, h("tr", null, h("th", { scope: "col" }, "Shortcut"), h("th", { scope: "col" }, "Text"), h("th", { scope: "col" }, ""))),
      tbody)));

  async function add(event) {
    event.preventDefault();
    try {
      await api.addCanned(shortcut.value.trim(), text.value);
      status.textContent = `Added /${shortcut.value.trim()}.`;
      form.reset();
      await reloadCanned();
    } catch (error) {
      status.textContent = `Not added: ${error.message}`;
    }
  }

  async function remove(item) {
    try {
      await api.deleteCanned(item.id);
      toast(`Deleted /${item.shortcut}.`);
      await reloadCanned();
    } catch (error) {
      toast(error.message, "error");
    }
  }

  function render() {
    fill(tbody, ...(store.canned.length ? store.canned.map((item) => h("tr", { "data-testid": "canned-row", "data-shortcut": item.shortcut },
      h("td", null, h("code", null, `/${item.shortcut}`)), h("td", { class: "pre" }, item.text),
      h("td", null, h("button", { type: "button", class: "link danger-link", "aria-label": `Delete /${item.shortcut}`, onClick: () => remove(item) }, "Delete"))))
      : [h("tr", null, h("td", { colspan: 3, class: "empty" }, "No canned replies yet."))]));
  }

  store.addEventListener("canned", render);
  render();
  reloadCanned();
  return { el: root, destroy: () => store.removeEventListener("canned", render) };
}
