// Providers: what is installed (version, actions, object types, and whether
// its file is a catalog item's, by SHA-256), and drpd's catalog with install
// buttons (POST /catalog/<name>/install, which checks the digest).

import { call, enc, get } from "./api.js";
import { $, h, say } from "./util.js";

let catalogItems = [];

function origin(p) {
  const digest = (p.Sha256 || "").toLowerCase();
  const item = catalogItems.find((i) => i.Name === p.Name &&
    Object.values(i.Shasum256 || {}).some((d) => d.toLowerCase() === digest));
  return item ? `catalog ${item.Version}` : "uploaded";
}

function renderProviders(list) {
  $("#providers tbody").replaceChildren(...list.map((p) => h("tr", { "data-name": p.Name },
    h("th", { scope: "row" }, p.Name),
    h("td", {}, p.Version || ""),
    h("td", {}, (p.AvailableActions || []).map((a) => `${a.Command}${a.Model ? ` (${a.Model})` : ""}`).join(", ")),
    h("td", {}, Object.keys(p.StoreObjects || {}).sort().join(", ")),
    h("td", { class: "origin" }, origin(p)))));
}

function renderCatalog(installed) {
  const byName = new Map();
  for (const item of catalogItems) {
    if (!byName.has(item.Name)) byName.set(item.Name, []);
    byName.get(item.Name).push(item);
  }
  $("#catalog tbody").replaceChildren(...[...byName.keys()].sort().map((name) => {
    const items = byName.get(name); // newest first
    const have = installed.get(name);
    const pluginProvider = items[0].ContentType === "PluginProvider";
    const label = have ? `Reinstall ${name}` : `Install ${name}`;
    return h("tr", { "data-name": name },
      h("th", { scope: "row" }, name),
      h("td", {}, items.map((i) => i.Version).join(", ")),
      h("td", {}, items[0].ContentType),
      h("td", {}, (items[0].Meta && items[0].Meta.Description) || ""),
      h("td", {}, pluginProvider
        ? h("button", { type: "button", "aria-label": label, onclick: (e) => install(name, e.target) },
          have ? "Reinstall" : "Install")
        : h("span", { class: "hint" }, "drpcli catalog install")));
  }));
}

async function install(name, button) {
  button.disabled = true;
  say($("#catalog-status"), `installing ${name}…`);
  try {
    const p = await call("POST", `/catalog/${enc(name)}/install`, undefined, { timeout: 120000 });
    say($("#catalog-status"), `installed ${p.Name} ${p.Version}`);
  } catch (err) {
    say($("#catalog-status"), `install of ${name} failed: ${err.message}`, true);
  }
  button.disabled = false;
  await start();
}

export function init() {}

export async function start() {
  const [list, catalog] = await Promise.all([
    get("/plugin_providers"),
    get("/catalog").catch((err) => ({ Location: "", Items: [], error: err.message })),
  ]);
  catalogItems = catalog.Items || [];
  $("#catalog-location").textContent = catalog.error
    ? `catalog unreadable: ${catalog.error}` : `from ${catalog.Location}`;
  renderProviders(list);
  renderCatalog(new Map(list.map((p) => [p.Name, p])));
}

export function stop() {}
