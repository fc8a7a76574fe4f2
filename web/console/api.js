// The REST API (docs/reference/protocol.md, section 3, and the console extensions).
// Every call sends the agent's bearer token; an error answer {"error": {code, message}}
// becomes a thrown ApiError with the same code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

const path = (strings, ...ids) =>
  strings.reduce((out, part, i) => out + part + (i < ids.length ? encodeURIComponent(ids[i]) : ""), "");

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * getToken(): the current token or null. onUnauthorized(error): called when an
 * authenticated call gets 401 (the token expired): the app logs out.
 */
export function createApi({ getToken, onUnauthorized }) {
  async function request(method, url, body, { auth = true } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = getToken();
    if (auth && token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, {
        method, headers, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, "network", "The server cannot be reached. Check your connection.");
    }
    const text = response.status === 204 ? "" : await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      const failure = new ApiError(response.status, error.code || `http_${response.status}`,
        error.message || response.statusText || "request failed");
      if (response.status === 401 && auth && onUnauthorized) onUnauthorized(failure);
      throw failure;
    }
    return data;
  }

  return {
    login: (email, password) =>
      request("POST", "/v1/agents/login", { email, password }, { auth: false }),
    me: () => request("GET", "/v1/me"),

    conversations: (updatedSince, status) =>
      request("GET", `/v1/conversations${query({ updated_since: updatedSince, status })}`),
    messages: (id, since, limit = 1000) =>
      request("GET", path`/v1/conversations/${id}/messages` + query({ since, limit })),
    notes: (id) => request("GET", path`/v1/conversations/${id}/notes`),
    queue: () => request("GET", "/v1/queue"),
    visitor: (id) => request("GET", path`/v1/visitors/${id}`),

    agents: () => request("GET", "/v1/agents"),
    createAgent: (body) => request("POST", "/v1/agents", body),
    updateAgent: (id, body) => request("PATCH", path`/v1/agents/${id}`, body),

    canned: () => request("GET", "/v1/canned"),
    addCanned: (shortcut, text) => request("POST", "/v1/canned", { shortcut, text }),
    deleteCanned: (id) => request("DELETE", path`/v1/canned/${id}`),

    faq: () => request("GET", "/v1/faq"),
    importFaq: (format, content) => request("POST", "/v1/faq/import", { format, content }),
    testBot: (text) => request("POST", "/v1/bot/test", { text }),
    unanswered: (offset, limit) => request("GET", `/v1/bot/unanswered${query({ offset, limit })}`),
  };
}
