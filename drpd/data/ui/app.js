// The page's shell: login, the four views (chosen by the URL's #hash, so
// they are links, bookmarks and history entries), and log out.

import * as api from "./api.js";
import * as events from "./events.js";
import * as instances from "./instances.js";
import * as machines from "./machines.js";
import * as providers from "./providers.js";
import { $, say } from "./util.js";

const VIEWS = { instances, providers, machines, events };
const started = new Set();

function setLive(state) {
  const el = $("#live");
  el.textContent = state === "live" ? "● live" : state;
  el.dataset.state = state;
}

async function show(name) {
  if (!VIEWS[name]) name = "instances";
  for (const v of Object.keys(VIEWS)) {
    $(`#view-${v}`).hidden = v !== name;
    const tab = $(`#tab-${v}`);
    tab.setAttribute("aria-selected", String(v === name));
    if (v === name) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
  }
  document.title = `drpd · ${name}`;
  started.add(name);
  try {
    await VIEWS[name].start();
  } catch (err) {
    setLive(`error: ${err.message}`);
  }
}

/** The view named by the URL: `#/machines` (ids in the page never start with "/"). */
function viewOfHash() {
  return location.hash.replace(/^#\/?/, "");
}

function loggedIn() {
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#who").hidden = false;
  $("#user").textContent = api.user();
  show(viewOfHash());
}

function loggedOut() {
  for (const name of started) VIEWS[name].stop();
  started.clear();
  for (const v of Object.keys(VIEWS)) $(`#view-${v}`).hidden = true;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  $("#login").hidden = false;
  $("#login-user").focus();
}

function init() {
  for (const v of Object.values(VIEWS)) v.init(setLive);
  api.onLogout(loggedOut);
  window.addEventListener("hashchange", () => { if (api.token()) show(viewOfHash()); });
  $("#logout").addEventListener("click", () => api.logout());
  // the tabs pattern: arrow keys move between views, Home/End jump
  $("#nav").addEventListener("keydown", (e) => {
    const tabs = [...document.querySelectorAll("#nav [role=tab]")];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    const tab = tabs[(next + tabs.length) % tabs.length];
    tab.focus();
    location.hash = tab.getAttribute("href");
  });
  $("#login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const error = $("#login-error");
    say(error, "");
    const name = $("#login-user").value.trim();
    const password = $("#login-password").value;
    if (!name || !password) { say(error, "User and password are both needed.", true); return; }
    try {
      await api.login(name, password);
      $("#login-password").value = "";
      loggedIn();
    } catch (err) {
      say(error, err.status === 401 ? "Wrong user or password." : `Login failed: ${err.message}`, true);
    }
  });
  if (api.token()) loggedIn(); else loggedOut();
}

init();
