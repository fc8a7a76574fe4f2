// The raydesk agent console: sign-in, the top bar (pages, connection, notifications,
// presence, sign-out), the inbox (lists, conversation, visitor) and the pages, chosen by
// the URL's hash (#/inbox/<conversation>, #/canned, #/admin/agents, ...).

import { createApi } from "./api.js";
import { h, icon } from "./dom.js";
import { Store } from "./store.js";
import { Desk } from "./desk.js";
import { Notifier } from "./notify.js";
import { createLogin } from "./login.js";
import { createLists } from "./lists.js";
import { createConversationView } from "./conversation.js";
import { createVisitorPanel } from "./visitor.js";
import { createCannedPage } from "./canned-page.js";
import { createAgentsPage } from "./admin-agents.js";
import { createFaqPage } from "./admin-faq.js";
import { createUnansweredPage } from "./admin-unanswered.js";
import { createOverviewPage } from "./admin-overview.js";

// sessionStorage: the token lives as long as the tab, and is not shared with other tabs.
const TOKEN_KEY = "raydesk.console.token";
const PRESENCE_KEY = "raydesk.console.presence";

const PAGES = {
  canned: { title: "Canned replies", make: (s) => createCannedPage(s.api, s.store, { toast, reloadCanned: () => s.desk.refreshCanned() }) },
  "admin/agents": { title: "Agents", admin: true, make: (s) => createAgentsPage(s.api, s.store, { toast }) },
  "admin/faq": { title: "FAQ", admin: true, make: (s) => createFaqPage(s.api, { toast }) },
  "admin/unanswered": { title: "Unanswered", admin: true, make: (s) => createUnansweredPage(s.api, s.store, { toast, onOpen: openConversation }) },
  "admin/overview": { title: "Overview", admin: true, make: (s) => createOverviewPage(s.api, s.store, { toast }) },
};

const root = document.getElementById("app");
const toasts = h("div", { class: "toasts", role: "status", "aria-live": "polite", "data-testid": "toasts" });
document.body.appendChild(toasts);
const notifier = new Notifier();
let session = null;

const api = createApi({
  getToken: () => sessionStorage.getItem(TOKEN_KEY),
  onUnauthorized: () => {
    if (session) logout("Your session has expired: sign in again.");
  },
});

function toast(text, kind = "info") {
  const el = h("div", { class: ["toast", `toast-${kind}`], "data-testid": "toast" }, text);
  toasts.appendChild(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}

function openConversation(id) {
  location.hash = `#/inbox/${encodeURIComponent(id)}`;
}

// --- signing in and out -----------------------------------------------------------------

function showLogin(message) {
  const login = createLogin(api, {
    onLoggedIn: async (token) => {
      sessionStorage.setItem(TOKEN_KEY, token);
      const me = await api.me();
      start(token, me);
    },
  });
  root.replaceChildren(login.el);
  if (message) toast(message, "error");
  login.focus();
}

function logout(message) {
  if (session) {
    session.desk.stop();
    session.lists.destroy();
    session.page?.view.destroy();
    window.removeEventListener("hashchange", route);
    session = null;
  }
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(PRESENCE_KEY);
  document.title = "raydesk console";
  showLogin(message);
}

// --- the signed-in console --------------------------------------------------------------

function start(token, me) {
  const store = new Store();
  store.me = me;
  const desk = new Desk(api, store, notifier);
  desk.presence = sessionStorage.getItem(PRESENCE_KEY) || "online";

  const lists = createLists(store, { onSelect: openConversation });
  const conversation = createConversationView(store, desk);
  const visitor = createVisitorPanel(store, api, { onOpen: openConversation });
  const workspace = h("div", { class: "workspace", "data-testid": "inbox" }, lists.el, conversation.el, visitor.el);
  const pageHost = h("div", { class: "page-host", hidden: true });

  session = { api, store, desk, lists, conversation, visitor, workspace, pageHost, page: null, selected: null, navLinks: new Map() };
  root.replaceChildren(topBar(session), workspace, pageHost);

  desk.addEventListener("problem", (event) => toast(event.detail, "error"));
  desk.addEventListener("unauthorized", () => logout("Your session has expired: sign in again."));
  desk.start(token);
  window.addEventListener("hashchange", route);
  route();
}

function topBar(s) {
  const link = (path, label, testid) => {
    const a = h("a", { href: `#/${path}`, "data-testid": testid }, label);
    s.navLinks.set(path, a);
    return h("li", null, a);
  };
  const admin = s.store.me.role === "admin";

  const connection = h("span", { class: "connection", "data-testid": "connection-status", "data-state": "connecting" }, "Connecting…");
  const labels = { connecting: "Connecting…", online: "Connected", reconnecting: "Reconnecting…", offline: "Offline" };
  s.desk.addEventListener("connection", (event) => {
    connection.dataset.state = event.detail;
    connection.textContent = labels[event.detail] || event.detail;
  });

  const presence = h("select", { id: "presence", "data-testid": "presence" },
    h("option", { value: "online" }, "Online"), h("option", { value: "away" }, "Away"));
  presence.value = s.desk.presence;
  presence.dataset.presence = presence.value;
  presence.addEventListener("change", () => {
    sessionStorage.setItem(PRESENCE_KEY, presence.value);
    presence.dataset.presence = presence.value;
    s.desk.setPresence(presence.value);
  });

  const notify = h("button", { type: "button", class: "ghost", "data-testid": "notify-enable", title: "Get a notification when a conversation or message arrives while this tab is in the background" }, icon("bell"), h("span", { class: "label" }, "Enable notifications"));
  const showNotify = () => {
    notify.hidden = notifier.permission !== "default";
  };
  notify.addEventListener("click", async () => {
    const answer = await notifier.ask();
    toast(answer === "granted" ? "Notifications are on." : "Notifications stay off; the console still beeps in the background.");
    showNotify();
  });
  showNotify();

  return h("header", { class: "topbar" },
    h("div", { class: "brand" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), "raydesk"),
    h("nav", { class: "pages", "aria-label": "Pages" },
      h("ul", null, link("inbox", "Inbox", "nav-inbox"), link("canned", "Canned replies", "nav-canned")),
      admin ? h("ul", { class: "admin-nav", "data-testid": "admin-nav", "aria-label": "Administration" },
        link("admin/agents", "Agents", "nav-agents"), link("admin/faq", "FAQ", "nav-faq"),
        link("admin/unanswered", "Unanswered", "nav-unanswered"), link("admin/overview", "Overview", "nav-overview")) : null),
    h("div", { class: "topbar-end" },
      connection, notify,
      h("span", { class: "presence-switch" }, h("label", { for: "presence" }, "Status"), presence),
      h("span", { class: "me", "data-testid": "me" }, h("span", { class: "me-name" }, s.store.me.name),
        h("span", { class: ["badge", s.store.me.role === "admin" && "badge-admin"] }, s.store.me.role)),
      h("button", { type: "button", class: "ghost", "data-testid": "logout", onClick: () => logout() }, icon("logout"), h("span", { class: "label" }, "Sign out"))));
}

// --- pages ------------------------------------------------------------------------------

async function route() {
  const s = session;
  if (!s) return;
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, "")) || "inbox";
  const [first, second] = path.split("/");
  const pageKey = first === "admin" ? `admin/${second}` : first;
  const page = PAGES[pageKey];
  if (page && page.admin && s.store.me.role !== "admin") {
    location.hash = "#/inbox";
    return;
  }
  for (const [key, a] of s.navLinks) {
    if (key === (page ? pageKey : "inbox")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (page) {
    if (s.page?.key !== pageKey) {
      s.page?.view.destroy();
      const view = page.make(s);
      s.page = { key: pageKey, view };
      s.pageHost.replaceChildren(view.el);
      view.el.focus();
    }
    s.workspace.hidden = true;
    s.pageHost.hidden = false;
    return;
  }
  s.page?.view.destroy();
  s.page = null;
  s.pageHost.replaceChildren();
  s.pageHost.hidden = true;
  s.workspace.hidden = false;
  await select(first === "inbox" ? second || null : null);
}

async function select(id) {
  const s = session;
  if (id && !s.store.conversations.has(id)) await s.desk.syncList();
  if (session !== s) return;
  if (id && !s.store.conversations.has(id)) {
    toast(`Conversation ${id} was not found.`, "error");
    id = null;
  }
  s.selected = id;
  s.desk.select(id);
  s.lists.select(id);
  s.conversation.show(id);
  s.visitor.show(id);
}

// --- boot -------------------------------------------------------------------------------

async function boot() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showLogin();
    return;
  }
  try {
    start(token, await api.me());
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(error.status === 401 ? null : error.message);
  }
}

// The tab comes back into view: what is on screen has now been read.
document.addEventListener("visibilitychange", () => {
  if (session && !document.hidden && session.selected) session.desk.readIfShown(session.selected);
});

boot();
