// Small DOM helpers: everything is built with text nodes, never innerHTML,
// so nothing drpd or a provider says can become markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), hr = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/** A value as one line of text: strings bare, the rest as JSON. */
export function show(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value);
}

/** drpcli's rule for typed values: valid JSON is JSON, anything else a string. */
export function parseValue(text) {
  try { return JSON.parse(text); } catch { return text; }
}

export function say(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

/** Arrow-key movement between rows that hold tabindex (a roving focus). */
export function arrowRows(container, rowSelector) {
  container.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const rows = [...container.querySelectorAll(rowSelector)];
    const i = rows.indexOf(document.activeElement);
    if (i < 0) return;
    const next = rows[i + (e.key === "ArrowDown" ? 1 : -1)];
    if (next) { next.focus(); e.preventDefault(); }
  });
}

/** A sealed Secure value ({SecureData} at rest, DRP's {Key, Nonce, Payload}). */
export function isSealed(value) {
  return Boolean(value) && typeof value === "object" &&
    ("SecureData" in value || ("Payload" in value && "Nonce" in value));
}

export function secureText() {
  return h("span", { class: "secure" }, "•••••• (secure)");
}
