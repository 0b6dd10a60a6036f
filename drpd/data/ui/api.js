// The page's only way to drpd: the REST API and the event websocket, with a
// token from POST-free `GET /users/<name>/token` (as drpcli), kept in
// sessionStorage so it lives exactly as long as the tab.

const KEY = "drpd-token";
const BASE = "/api/v3";

export class ApiError extends Error {
  constructor(status, body) {
    const messages = body && Array.isArray(body.Messages) ? body.Messages : [];
    super(messages.join("; ") || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

const listeners = new Set();
/** Called with no argument when the token is refused or dropped. */
export function onLogout(fn) { listeners.add(fn); }

export function token() { return sessionStorage.getItem(KEY); }
export function user() { return sessionStorage.getItem(KEY + "-user") || ""; }

export function logout() {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(KEY + "-user");
  for (const fn of listeners) fn();
}

async function parse(response) {
  const text = await response.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

export async function login(name, password) {
  const basic = btoa(unescape(encodeURIComponent(`${name}:${password}`)));
  const response = await fetch(`${BASE}/users/${encodeURIComponent(name)}/token`, {
    headers: { Authorization: `Basic ${basic}` }, cache: "no-store",
    // "omit": our own Authorization header only, and no browser login prompt
    // on a 401 (drpd sends WWW-Authenticate for drpcli's sake)
    credentials: "omit",
  });
  const body = await parse(response);
  if (!response.ok) throw new ApiError(response.status, body);
  sessionStorage.setItem(KEY, body.Token);
  sessionStorage.setItem(KEY + "-user", name);
  return body;
}

/** One REST call; the path is under /api/v3 and already encoded. */
export async function call(method, path, body, { timeout = 30000 } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers, cache: "no-store", credentials: "omit", signal: AbortSignal.timeout(timeout) };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(BASE + path, init);
  const parsed = await parse(response);
  if (response.status === 401) logout();
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export const get = (path, opts) => call("GET", path, undefined, opts);
export const enc = encodeURIComponent;

/**
 * A websocket on /api/v3/ws holding `patterns`, reconnecting with backoff and
 * resuming from the last Seq it saw, so nothing is lost across a blip.
 * `onEvent(event)` gets drpd's events; `onState(text)` the connection state;
 * `onNotice(frame)` the connection's own frames (register acknowledgements).
 */
export class EventStream {
  constructor(patterns, onEvent, onState = () => {}, onNotice = () => {}) {
    this.onNotice = onNotice;
    this.acked = new Set(); // patterns drpd acknowledged on this connection
    this.patterns = patterns;
    this.onEvent = onEvent;
    this.onState = onState;
    this.seq = null;
    this.delay = 500;
    this.closed = false;
    this.socket = null;
    this.open();
  }

  open() {
    if (this.closed || !token()) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams({ token: token() });
    if (this.seq !== null) params.set("since", String(this.seq));
    const socket = new WebSocket(`${scheme}://${location.host}${BASE}/ws?${params}`);
    this.socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      this.acked.clear();
      this.delay = 500;
      for (const p of this.patterns) socket.send(`register ${p}`);
      this.onState("live");
    };
    socket.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      if (event.Type === "websocket") {
        if (event.Action === "register") this.acked.add(event.Key);
        if (event.Action === "deregister") this.acked.delete(event.Key);
        this.onNotice(event);
        if (event.Action === "error") {
          const why = event.Object && Array.isArray(event.Object.Messages) ? event.Object.Messages.join("; ") : "";
          this.onState(`error: ${event.Key}${why ? ` (${why})` : ""}`);
        }
        return;
      }
      if (typeof event.Seq === "number" && event.Seq) this.seq = event.Seq;
      this.onEvent(event);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      // a refused handshake does not say why: an expired token shows as a
      // 401 on a plain call, which logs out instead of retrying forever
      if (!opened) get("/info").catch(() => {});
      this.onState("reconnecting");
      setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }

  /** Replace the registrations: drop the held ones no longer wanted (a
   * pattern drpd refused was never held), add the new ones. */
  setPatterns(patterns) {
    this.patterns = patterns;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      for (const p of [...this.acked]) if (!patterns.includes(p)) this.socket.send(`deregister ${p}`);
      for (const p of patterns) if (!this.acked.has(p)) this.socket.send(`register ${p}`);
    }
  }

  close() {
    this.closed = true;
    if (this.socket) this.socket.close();
    this.socket = null;
  }
}
