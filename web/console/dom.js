// DOM helpers. Every piece of text reaches the page through createTextNode or
// textContent; nothing here (or anywhere in the console) parses HTML. The CSP forbids
// inline scripts and styles, so neither `style` nor `on*` strings are accepted either.

const URL_ATTRIBUTES = new Set(["href", "src", "action", "formaction"]);
const PROPERTIES = new Set(["value", "checked"]);
const FORBIDDEN = new Set(["style", "innerhtml", "outerhtml", "srcdoc"]);

/** True for a URL the console may put in href/src: same-page, same-origin or http(s). */
export function safeUrl(value) {
  const text = String(value);
  if (text.startsWith("#") || (text.startsWith("/") && !text.startsWith("//"))) return true;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" || url.protocol === "mailto:";
  } catch {
    return false;
  }
}

/**
 * h("button", {class: "x", "data-testid": "send", onClick: fn}, "Send", child, [more])
 * Attributes: null/undefined/false are left out, true sets an empty attribute, functions
 * under on<Event> become listeners. Children: strings (as text), nodes, arrays, nothing.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    const lower = key.toLowerCase();
    if (lower.startsWith("on")) {
      if (typeof value !== "function") throw new TypeError(`h(): ${key} must be a function`);
      el.addEventListener(lower.slice(2), value);
    } else if (FORBIDDEN.has(lower)) {
      throw new TypeError(`h(): ${key} is not allowed`);
    } else if (key === "class") {
      el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value);
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else if (URL_ATTRIBUTES.has(lower) && !safeUrl(value)) {
      continue; // never a javascript: or data: link
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

/** Append children (text, nodes, nested arrays; null and false are skipped). */
export function append(parent, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(parent, child);
    else if (child instanceof Node) parent.appendChild(child);
    else parent.appendChild(document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of an element. */
export function fill(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?'"*_]+$/;

function trimUrl(raw) {
  let url = raw.replace(TRAILING, "");
  // A closing bracket belongs to the URL only when it opened inside it: "(see http://x/a)".
  for (const [open, close] of [["(", ")"], ["[", "]"], ["{", "}"]]) {
    while (url.endsWith(close) && url.split(close).length > url.split(open).length) {
      url = url.slice(0, -1).replace(TRAILING, "");
    }
  }
  return url;
}

/**
 * Text as a fragment of text nodes, where http(s) URLs become links that open in a new
 * tab without giving the page a handle on the console (noopener) or a referrer.
 */
export function linkify(text) {
  const fragment = document.createDocumentFragment();
  const source = String(text ?? "");
  let done = 0;
  for (const match of source.matchAll(URL_PATTERN)) {
    const raw = trimUrl(match[0]);
    let url;
    try {
      url = new URL(raw);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    if (match.index > done) fragment.appendChild(document.createTextNode(source.slice(done, match.index)));
    fragment.appendChild(h("a", { href: url.href, target: "_blank", rel: "noopener noreferrer nofollow" }, raw));
    done = match.index + raw.length;
  }
  if (done < source.length) fragment.appendChild(document.createTextNode(source.slice(done)));
  return fragment;
}

/** An inline SVG icon built with DOM calls (no markup strings, no image requests). */
export function icon(name) {
  const paths = ICONS[name] || [];
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "icon");
  for (const d of paths) {
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
  }
  return svg;
}

const ICONS = {
  send: ["M3 20l18-8L3 4v6l12 2-12 2z"],
  note: ["M5 3h10l4 4v14H5z", "M8 11h8M8 15h8M8 7h5"],
  close: ["M6 6l12 12M18 6L6 18"],
  transfer: ["M4 8h13l-3-3M20 16H7l3 3"],
  accept: ["M5 12l5 5L20 7"],
  bell: ["M6 16V11a6 6 0 0 1 12 0v5l2 2H4z", "M10 20a2 2 0 0 0 4 0"],
  logout: ["M10 4H5v16h5", "M14 8l4 4-4 4M18 12H9"],
};

/** Random hex, from crypto.getRandomValues (which, unlike randomUUID, needs no HTTPS). */
export function randomId(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
