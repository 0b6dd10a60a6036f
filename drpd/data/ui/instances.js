// Instances: one row per plugin instance, live from the `plugins.*.*` events.
// A lifecycle event changes the row at once (crashed -> backoff, started ->
// starting, available -> running); the instance is then re-read, so the row
// always ends as drpd says.

import { call, enc, EventStream, get } from "./api.js";
import { $, arrowRows, duration, h, isSealed, say, secureText, show } from "./util.js";

const ICONS = { running: "●", starting: "◐", backoff: "↻", waiting: "‖", left: "↩",
  stopped: "■", stopping: "◑" };
const FROM_EVENT = { crashed: "backoff", started: "starting", available: "running",
  restarted: "starting", stopped: "stopped" };

const rows = new Map(); // name -> plugin object
let selected = null;
let stream = null;
let logTimer = null;
let onStateText = () => {};
let secureNames = new Set();

function stateOf(p) {
  return (p.Runtime && p.Runtime.State) || (p.Available ? "running" : "stopped");
}

function uptime(p) {
  const rt = p.Runtime;
  if (!rt || !rt.StartedAt || stateOf(p) !== "running") return "";
  const t = Date.parse(rt.StartedAt);
  return Number.isNaN(t) ? "" : duration((Date.now() - t) / 1000);
}

function badge(state) {
  return h("span", { class: `state state-${state}` },
    h("span", { "aria-hidden": "true", class: "icon" }, ICONS[state] || "?"), ` ${state}`);
}

function render() {
  const body = $("#instances tbody");
  const names = [...rows.keys()].sort();
  const anyNode = names.some((n) => rows.get(n).Runtime && rows.get(n).Runtime.Node);
  document.querySelectorAll(".node-col").forEach((el) => { el.hidden = !anyNode; });
  const focused = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.name : null;
  body.replaceChildren(...names.map((name) => {
    const p = rows.get(name);
    const rt = p.Runtime || {};
    const state = stateOf(p);
    const tr = h("tr", {
      tabindex: "0", "data-name": name, "data-state": state, class: "click",
      "aria-selected": selected === name ? "true" : "false",
      onclick: () => select(name),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(name); } },
    },
    h("th", { scope: "row" }, name),
    h("td", { class: "state-cell" }, badge(state)),
    h("td", {}, p.Provider),
    h("td", { class: "num" }, rt.Pid ? String(rt.Pid) : ""),
    h("td", { class: "num uptime" }, uptime(p)),
    h("td", { class: "num restarts" }, String(rt.Restarts || 0)),
    h("td", { class: "node-col", hidden: !anyNode }, rt.Node || ""),
    h("td", { class: "errs" }, (p.Errors || []).join("; ")));
    return tr;
  }));
  $("#instances-empty").hidden = names.length > 0;
  if (focused) {
    const again = body.querySelector(`tr[data-name="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  if (selected) renderDetail();
}

async function refresh(name) {
  try {
    rows.set(name, await get(`/plugins/${enc(name)}`));
  } catch (err) {
    if (err.status === 404) {
      rows.delete(name);
      if (selected === name) closeDetail();
    }
  }
  render();
}

async function reload() {
  const [list, params] = await Promise.all([get("/plugins"), get("/params").catch(() => [])]);
  secureNames = new Set(params.filter((p) => p.Secure).map((p) => p.Name));
  rows.clear();
  for (const p of list) rows.set(p.Name, p);
  render();
}

const pending = new Map();
function onEvent(event) {
  const name = event.Key;
  if (!name) return;
  const p = rows.get(name);
  if (event.Action === "delete") {
    rows.delete(name);
    if (selected === name) closeDetail();
    render();
    return;
  }
  if (p && FROM_EVENT[event.Action]) {
    p.Runtime = { ...(p.Runtime || {}), State: FROM_EVENT[event.Action] };
    if (event.Action === "crashed") { p.Runtime.Pid = 0; p.Available = false; }
    if (event.Object && event.Object.Pid) p.Runtime.Pid = event.Object.Pid;
    render();
  }
  // re-read once the burst settles: what drpd says is the truth
  clearTimeout(pending.get(name));
  pending.set(name, setTimeout(() => { pending.delete(name); refresh(name); }, 250));
}

// -- detail ----------------------------------------------------------------

function select(name) {
  selected = name;
  $("#instance-detail").hidden = false;
  say($("#detail-status"), "");
  $("#detail-log").textContent = "";
  render();
  followLog();
  $("#detail-title").focus?.();
}

function closeDetail() {
  selected = null;
  clearTimeout(logTimer);
  $("#instance-detail").hidden = true;
  render();
}

function renderDetail() {
  const p = rows.get(selected);
  if (!p) return;
  $("#detail-title").textContent = p.Name;
  $("#detail-errors").replaceChildren(...(p.PluginErrors || []).map((e) => h("li", {}, e)));
  const params = Object.keys(p.Params || {}).sort();
  $("#detail-params tbody").replaceChildren(...params.map((k) =>
    h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, redacted(k, p.Params[k])))));
  if (!params.length) {
    $("#detail-params tbody").append(h("tr", {}, h("td", { colspan: "2", class: "hint" }, "no params")));
  }
}

/** Secure params come back sealed ({SecureData} at rest, DRP's {Key, Nonce,
 * Payload} box) and are never shown, nor is any param declared Secure. */
function redacted(name, value) {
  if (isSealed(value) || secureNames.has(name)) return secureText();
  return show(value);
}

async function followLog() {
  clearTimeout(logTimer);
  const name = selected;
  if (!name) return;
  try {
    const lines = await get(`/plugins/${enc(name)}/log?lines=200`);
    if (selected !== name) return;
    const pre = $("#detail-log");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const text = lines.join("\n");
    if (pre.textContent !== text) {
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
  } catch (err) {
    if (selected === name) say($("#detail-status"), `log: ${err.message}`, true);
  }
  if (selected === name) logTimer = setTimeout(followLog, 1500);
}

async function restart() {
  const name = selected;
  say($("#detail-status"), `restarting ${name}…`);
  try {
    await call("POST", `/plugins/${enc(name)}/restart`);
    say($("#detail-status"), `${name} restarted`);
  } catch (err) {
    say($("#detail-status"), `restart failed: ${err.message}`, true);
  }
  refresh(name);
}

async function destroy() {
  const name = selected;
  const dialog = $("#confirm");
  $("#confirm-text").textContent = `Destroy plugin instance ${name}? Its provider process stops.`;
  dialog.returnValue = "";
  dialog.showModal();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  if (dialog.returnValue !== "ok") return;
  try {
    await call("DELETE", `/plugins/${enc(name)}`);
    rows.delete(name);
    closeDetail();
  } catch (err) {
    say($("#detail-status"), `destroy failed: ${err.message}`, true);
  }
}

export function init(setLive) {
  onStateText = setLive;
  arrowRows($("#instances tbody"), "tr");
  $("#detail-restart").addEventListener("click", restart);
  $("#detail-destroy").addEventListener("click", destroy);
  $("#detail-close").addEventListener("click", closeDetail);
  $("#instance-detail").addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  setInterval(() => document.querySelectorAll("#instances tr[data-name]").forEach((tr) => {
    const p = rows.get(tr.dataset.name);
    if (p) tr.querySelector(".uptime").textContent = uptime(p);
  }), 1000);
}

export async function start() {
  if (!stream) {
    stream = new EventStream(["plugins.*.*"], onEvent, (state) => {
      onStateText(state);
      if (state === "live") reload().catch(() => {});
    });
  }
  await reload();
}

export function stop() {
  if (stream) stream.close();
  stream = null;
  closeDetail();
  rows.clear();
}
