// Admin: the FAQ the bot answers from. Import a CSV or YAML file (POST /v1/faq/import),
// see the current set (GET /v1/faq), and ask the bot a test question (POST /v1/bot/test).

import { h, fill } from "./dom.js";
import { percent } from "./format.js";

const MAX_FILE_BYTES = 20 * 1024 * 1024;

function formatOf(fileName) {
  const lower = fileName.toLowerCase();
  if (lower.endsWith(".csv")) return "csv";
  if (lower.endsWith(".yaml") || lower.endsWith(".yml")) return "yaml";
  return null;
}

export function createFaqPage(api, { toast }) {
  const file = h("input", { id: "faq-file", type: "file", accept: ".csv,.yaml,.yml,text/csv,application/yaml", "data-testid": "faq-file" });
  const importResult = h("p", { class: "form-status", role: "status", "data-testid": "faq-import-result" });
  const importForm = h("form", { class: "card", "data-testid": "faq-import-form", onSubmit: importFile },
    h("h2", null, "Import"),
    h("p", { class: "hint" }, "A CSV or YAML file with id, question, answer and alternates (separated by |). It replaces the whole FAQ."),
    h("div", { class: "inline-form" }, h("label", { for: "faq-file" }, "FAQ file"), file,
      h("button", { type: "submit", class: "primary", "data-testid": "faq-import" }, "Import")),
    importResult);

  const question = h("input", { id: "faq-test-input", autocomplete: "off", required: true, maxlength: 4000, placeholder: "How do I get a refund?", "data-testid": "faq-test-input" });
  const testResult = h("div", { class: "test-result", role: "status", "data-testid": "faq-test-result" });
  const testForm = h("form", { class: "card", "data-testid": "faq-test-form", onSubmit: test },
    h("h2", null, "Test the bot"),
    h("div", { class: "inline-form" }, h("label", { for: "faq-test-input" }, "Question"), question,
      h("button", { type: "submit", class: "primary", "data-testid": "faq-test-submit" }, "Ask")),
    testResult);

  const count = h("span", { class: "count", "data-testid": "faq-count" });
  const tbody = h("tbody");
  const table = h("table", { class: "table", "data-testid": "faq-table" },
    h("caption", { class: "visually-hidden" }, "FAQ items"),
    h("thead", null, h("tr", null, ...["Id", "Question", "Other phrasings", "Answer"].map((t) => h("th", { scope: "col" }, t)))),
    tbody);

  const root = h("main", { id: "main", class: "page", "data-testid": "admin-faq", tabindex: "-1" },
    h("h1", null, "FAQ"), h("div", { class: "two-up" }, importForm, testForm),
    h("section", { class: "card", "aria-labelledby": "faq-current" }, h("h2", { id: "faq-current" }, "Current FAQ ", count), table));

  async function importFile(event) {
    event.preventDefault();
    const chosen = file.files && file.files[0];
    if (!chosen) {
      importResult.textContent = "Choose a file first.";
      return;
    }
    const format = formatOf(chosen.name);
    if (!format) {
      importResult.textContent = "The file must end in .csv, .yaml or .yml.";
      return;
    }
    if (chosen.size > MAX_FILE_BYTES) {
      importResult.textContent = "The file is too large.";
      return;
    }
    importResult.textContent = "Importing… (the bot re-indexes the set)";
    try {
      const answer = await api.importFaq(format, await chosen.text());
      importResult.textContent = `Imported ${answer.count} items${answer.indexed ? "; the bot answers from them now." : "; stored, indexed before the bot's next answer."}`;
      await load();
    } catch (error) {
      importResult.textContent = `Not imported: ${error.message}`;
    }
  }

  async function test(event) {
    event.preventDefault();
    const text = question.value.trim();
    if (!text) return;
    fill(testResult, h("p", { class: "hint" }, "Asking…"));
    try {
      const a = await api.testBot(text);
      const row = (label, value, testid) => [h("dt", null, label), h("dd", { "data-testid": testid }, value ?? "—")];
      fill(testResult, h("dl", { class: "facts" },
        row("Action", a.action, "faq-test-action"),
        row("Intent", a.intent, "faq-test-intent"),
        row("FAQ item", a.faq_id, "faq-test-faq-id"),
        row("Confidence", percent(a.confidence), "faq-test-confidence"),
        row("Reason", a.reason, "faq-test-reason"),
        row("Model", a.model_version, "faq-test-model"),
        row("Reply", a.text, "faq-test-reply")));
    } catch (error) {
      fill(testResult, h("p", { class: "error-text" }, error.message));
    }
  }

  async function load() {
    try {
      const { items } = await api.faq();
      count.textContent = `(${items.length})`;
      fill(tbody, ...(items.length ? items.map((item) => h("tr", { "data-testid": "faq-row", "data-faq-id": item.id },
        h("td", null, h("code", null, item.id)), h("td", null, item.question),
        h("td", null, (item.alternates || []).join(" | ") || "—"), h("td", { class: "pre" }, item.answer)))
        : [h("tr", null, h("td", { colspan: 4, class: "empty" }, "No FAQ items yet."))]));
    } catch (error) {
      toast(error.message, "error");
    }
  }

  load();
  return { el: root, destroy() {} };
}
