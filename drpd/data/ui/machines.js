// Machines: a searchable list; one machine's params; one of its actions run
// from a form built from the action's RequiredParams / OptionalParams, the
// provider's answer shown as drpd returns it.

import { call, enc, get } from "./api.js";
import { $, h, isSealed, parseValue, say, secureText, show } from "./util.js";

const SHOWN = 200; // a long list is searched, not scrolled
let machines = [];
let current = null;
let actions = [];

function matches(m, q) {
  if (!q) return true;
  return [m.Name, m.Uuid, m.Address].some((v) => (v || "").toLowerCase().includes(q));
}

function renderList() {
  const q = $("#machine-search").value.trim().toLowerCase();
  const all = machines.filter((m) => matches(m, q));
  const shown = all.slice(0, SHOWN);
  $("#machines-more").textContent = all.length > SHOWN
    ? `${SHOWN} of ${all.length} shown: narrow the search` : "";
  $("#machines").replaceChildren(...shown.map((m) => h("li", {},
    h("button", {
      type: "button", class: "link", "data-uuid": m.Uuid,
      "aria-current": current && current.Uuid === m.Uuid ? "true" : "false",
      onclick: () => select(m.Uuid),
    }, m.Name || m.Uuid, m.Address ? h("span", { class: "hint" }, ` ${m.Address}`) : null))));
  $("#machines-empty").hidden = shown.length > 0;
}

async function select(uuid) {
  current = await get(`/machines/${enc(uuid)}`);
  renderList();
  $("#machine-detail").hidden = false;
  $("#machine-title").textContent = current.Name || current.Uuid;
  const params = current.Params || {};
  $("#machine-params tbody").replaceChildren(...Object.keys(params).sort().map((k) =>
    h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, isSealed(params[k]) ? secureText() : show(params[k])))));
  actions = await get(`/machines/${enc(uuid)}/actions`).catch(() => []);
  const select = $("#action-select");
  select.replaceChildren(...actions.map((a, i) =>
    h("option", { value: String(i) }, `${a.Provider}:${a.Command}`)));
  if (!actions.length) select.append(h("option", { value: "" }, "no actions"));
  $("#action-answer").textContent = "";
  buildForm();
}

function field(name, required) {
  const id = `ap-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return h("div", { class: "field" },
    h("label", { for: id }, name, required ? " (required)" : " (optional)"),
    h("input", { id, name, "data-param": name, required: required || undefined,
      "aria-required": required ? "true" : "false", spellcheck: "false",
      placeholder: required ? "" : "leave empty to use the machine's or the default" }));
}

function buildForm() {
  const form = $("#action-form");
  const a = actions[Number($("#action-select").value)];
  if (!a) { form.replaceChildren(); return; }
  form.replaceChildren(
    ...(a.RequiredParams || []).map((p) => field(p, true)),
    ...(a.OptionalParams || []).map((p) => field(p, false)),
    h("p", { class: "hint" }, "Values are JSON when they parse as JSON, else text (as drpcli)."),
    h("button", { type: "submit" }, `Run ${a.Command}`));
}

async function run(e) {
  e.preventDefault();
  const a = actions[Number($("#action-select").value)];
  if (!a || !current) return;
  const params = {};
  for (const input of $("#action-form").querySelectorAll("input[data-param]")) {
    if (input.value !== "") params[input.dataset.param] = parseValue(input.value);
  }
  const out = $("#action-answer");
  say(out, `running ${a.Provider}:${a.Command}…`);
  try {
    const path = `/machines/${enc(current.Uuid)}/actions/${enc(`${a.Provider}:${a.Command}`)}`;
    const answer = await call("POST", path, params, { timeout: 120000 });
    say(out, JSON.stringify(answer, null, 2));
  } catch (err) {
    say(out, `Error ${err.status || ""}: ${err.message}`, true);
  }
}

export function init() {
  $("#machine-search").addEventListener("input", renderList);
  $("#action-select").addEventListener("change", buildForm);
  $("#action-form").addEventListener("submit", run);
}

export async function start() {
  machines = await get("/machines");
  renderList();
}

export function stop() {}
