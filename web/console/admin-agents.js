// Admin: the agents (GET /v1/agents), a form to create one (POST /v1/agents), and an
// inline editor for name, skills and capacity (PATCH /v1/agents/{id}).

import { h, fill } from "./dom.js";

const splitSkills = (text) => text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

export function createAgentsPage(api, store, { toast }) {
  let editing = null;
  const status = h("p", { class: "form-status", role: "status", "data-testid": "agent-create-status" });
  const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const email = h("input", { id: "agent-email", type: "email", required: true, autocomplete: "off", "data-testid": "agent-create-email" });
  const name = h("input", { id: "agent-name", required: true, maxlength: 200, autocomplete: "off", "data-testid": "agent-create-name" });
  const password = h("input", { id: "agent-password", type: "password", required: true, minlength: 8, autocomplete: "new-password", "data-testid": "agent-create-password" });
  const role = h("select", { id: "agent-role", "data-testid": "agent-create-role" },
    h("option", { value: "agent" }, "Agent"), h("option", { value: "admin" }, "Admin"));
  const skills = h("input", { id: "agent-skills", placeholder: "billing, tech", autocomplete: "off", "data-testid": "agent-create-skills" });
  const maxChats = h("input", { id: "agent-max-chats", type: "number", min: 1, max: 1000, placeholder: "default", "data-testid": "agent-create-max-chats" });

  const form = h("form", { class: "card form-grid", "data-testid": "agent-create-form", onSubmit: create },
    h("h2", null, "New agent"),
    field("agent-email", "Email", email), field("agent-name", "Name", name),
    field("agent-password", "Password (8 characters or more)", password), field("agent-role", "Role", role),
    field("agent-skills", "Skills (comma separated)", skills), field("agent-max-chats", "Max chats", maxChats),
    h("div", { class: "form-end" }, h("button", { type: "submit", class: "primary", "data-testid": "agent-create-submit" }, "Create agent"), status));

  const tbody = h("tbody", { "data-testid": "agents-table-body" });
  const table = h("table", { class: "table", "data-testid": "agents-table" },
    h("caption", { class: "visually-hidden" }, "Agents"),
    h("thead", null, h("tr", null, ...["Name", "Email", "Role", "Skills", "Max chats", "Presence", "Load", ""].map((t) => h("th", { scope: "col" }, t)))),
    tbody);

  const root = h("main", { id: "main", class: "page", "data-testid": "admin-agents", tabindex: "-1" },
    h("h1", null, "Agents"), form, h("section", { class: "card", "aria-label": "All agents" }, table));

  async function create(event) {
    event.preventDefault();
    const body = { email: email.value.trim(), name: name.value.trim(), password: password.value, role: role.value, skills: splitSkills(skills.value) };
    if (maxChats.value) body.max_chats = Number(maxChats.value);
    status.textContent = "Creating…";
    try {
      const created = await api.createAgent(body);
      status.textContent = `Created ${body.name} (${created.agent_id}).`;
      form.reset();
      await load();
    } catch (error) {
      status.textContent = `Not created: ${error.message}`;
    }
  }

  function row(agent) {
    if (editing === agent.agent_id) return editRow(agent);
    return h("tr", { "data-testid": "agent-row", "data-agent-id": agent.agent_id },
      h("td", null, agent.name), h("td", null, agent.email),
      h("td", null, h("span", { class: ["badge", agent.role === "admin" && "badge-admin"] }, agent.role)),
      h("td", { "data-testid": "agent-skills" }, agent.skills.length ? agent.skills.map((s) => h("span", { class: "tag" }, s)) : "—"),
      h("td", { "data-testid": "agent-max-chats" }, String(agent.max_chats)),
      h("td", null, h("span", { class: ["presence", `presence-${agent.presence}`] }, agent.presence)),
      h("td", null, String(agent.load)),
      h("td", null, h("button", { type: "button", class: "link", "data-testid": "agent-edit", "aria-label": `Edit ${agent.name}`, onClick: () => { editing = agent.agent_id; render(); focusEdit(); } }, "Edit")));
  }

  function editRow(agent) {
    const id = agent.agent_id;
    const editName = h("input", { id: `edit-name-${id}`, value: agent.name, maxlength: 200, "data-testid": "agent-edit-name", "aria-label": "Name" });
    const editSkills = h("input", { id: `edit-skills-${id}`, value: agent.skills.join(", "), "data-testid": "agent-edit-skills", "aria-label": "Skills (comma separated)" });
    const editMax = h("input", { id: `edit-max-${id}`, type: "number", min: 1, max: 1000, value: String(agent.max_chats), "data-testid": "agent-edit-max-chats", "aria-label": "Max chats" });
    const save = async (event) => {
      event.preventDefault();
      try {
        await api.updateAgent(id, { name: editName.value.trim(), skills: splitSkills(editSkills.value), max_chats: Number(editMax.value) });
        editing = null;
        toast(`Saved ${editName.value.trim()}.`);
        await load();
      } catch (error) {
        toast(`Not saved: ${error.message}`, "error");
      }
    };
    const cancel = () => { editing = null; render(); };
    const formId = `edit-form-${id}`;
    return h("tr", { "data-testid": "agent-row", "data-agent-id": id, class: "editing", onKeydown: (e) => { if (e.key === "Escape") cancel(); } },
      h("td", null, h("form", { id: formId, onSubmit: save }), editName), h("td", null, agent.email), h("td", null, agent.role),
      h("td", null, editSkills), h("td", null, editMax),
      h("td", null, agent.presence), h("td", null, String(agent.load)),
      h("td", { class: "row-actions" },
        h("button", { type: "submit", form: formId, class: "primary", "data-testid": "agent-edit-save" }, "Save"),
        h("button", { type: "button", class: "link", onClick: cancel }, "Cancel")));
  }

  function focusEdit() {
    tbody.querySelector("[data-testid=agent-edit-name]")?.focus();
  }

  function render() {
    const agents = [...store.agents.values()];
    fill(tbody, ...(agents.length ? agents.map(row) : [h("tr", null, h("td", { colspan: 8, class: "empty" }, "No agents yet."))]));
    // The inputs of the row being edited belong to its form (form= attribute).
    const form = tbody.querySelector("tr.editing form");
    if (form) for (const input of tbody.querySelectorAll("tr.editing input")) input.setAttribute("form", form.id);
  }

  async function load() {
    try {
      store.setAgents((await api.agents()).agents);
    } catch (error) {
      toast(error.message, "error");
    }
  }

  const onAgents = () => {
    if (!editing) render();
  };
  store.addEventListener("agents", onAgents);
  render();
  load();
  return { el: root, destroy: () => store.removeEventListener("agents", onAgents) };
}
