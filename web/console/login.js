// The sign-in form (POST /v1/agents/login).

import { h } from "./dom.js";

export function createLogin(api, { onLoggedIn }) {
  const email = h("input", { id: "login-email", type: "email", required: true, autocomplete: "username", "data-testid": "login-email" });
  const password = h("input", { id: "login-password", type: "password", required: true, autocomplete: "current-password", "data-testid": "login-password" });
  const submit = h("button", { type: "submit", class: "primary", "data-testid": "login-submit" }, "Sign in");
  const error = h("p", { class: "error-text", role: "alert", "data-testid": "login-error" });
  const form = h("form", { class: "login-card", onSubmit: signIn, "aria-labelledby": "login-title" },
    h("div", { class: "brand brand-large" }, h("span", { class: "brand-mark", "aria-hidden": "true" }), "raydesk"),
    h("h1", { id: "login-title" }, "Agent console"),
    h("div", { class: "field" }, h("label", { for: "login-email" }, "Email"), email),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), password),
    submit, error);
  const root = h("main", { id: "main", class: "login", "data-testid": "login" }, form);

  async function signIn(event) {
    event.preventDefault();
    error.textContent = "";
    submit.disabled = true;
    try {
      const answer = await api.login(email.value.trim(), password.value);
      password.value = "";
      await onLoggedIn(answer.token);
    } catch (failure) {
      error.textContent = failure.code === "unauthorized" ? "Wrong email or password." : failure.message;
      password.select();
    } finally {
      submit.disabled = false;
    }
  }

  return { el: root, focus: () => email.focus() };
}
