// Events: a live tail of what the websocket sends for the given patterns
// (type.action.key, as drpd's `register` takes them), pausable, with the
// rate over the last minute drawn one bar per second.

import { EventStream } from "./api.js";
import { $, h, say } from "./util.js";

const KEEP = 500; // rows in the tail
const SECONDS = 60;
let stream = null;
let paused = false;
let held = [];
const counts = new Array(SECONDS).fill(0);
let timer = null;
let drawQueued = false;
let onState = () => {};

/** What drpd acknowledged holding for this tail, unless an error is shown. */
function showWatching() {
  const status = $("#events-status");
  if (!stream || status.classList.contains("error")) return;
  const held = [...stream.acked];
  say(status, held.length ? `watching ${held.join(" ")}` : "watching nothing");
}

function onNotice(frame) {
  if (frame.Action === "register" || frame.Action === "deregister") showWatching();
}

function patterns() {
  return $("#events-pattern").value.split(/\s+/).filter(Boolean);
}

function row(e) {
  const time = e.Time ? new Date(e.Time) : null;
  return h("tr", { "data-type": e.Type, "data-action": e.Action, "data-key": e.Key },
    h("td", { class: "num" }, String(e.Seq || "")),
    h("td", {}, time && !Number.isNaN(time.getTime()) ? time.toLocaleTimeString() : e.Time || ""),
    h("td", {}, e.Type), h("td", {}, e.Action), h("td", { class: "key" }, e.Key),
    h("td", {}, e.Principal || ""));
}

function add(events) {
  const body = $("#events tbody");
  body.prepend(...events.reverse().map(row));
  while (body.rows.length > KEEP) body.deleteRow(body.rows.length - 1);
}

function onEvent(e) {
  counts[SECONDS - 1] += 1;
  if (!drawQueued) {
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }
  if (paused) {
    held.push(e);
    if (held.length > KEEP) held.shift();
    $("#events-held").textContent = `${held.length} held while paused`;
  } else {
    add([e]);
  }
}

function tick() {
  const rate = counts[SECONDS - 1];
  counts.shift();
  counts.push(0);
  $("#events-rate").textContent = `${rate} events/s`;
  draw();
}

function draw() {
  const canvas = $("#events-chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, hgt = canvas.height;
  const max = Math.max(1, ...counts);
  ctx.clearRect(0, 0, w, hgt);
  const style = getComputedStyle(canvas);
  ctx.fillStyle = style.color;
  const bw = w / SECONDS;
  counts.forEach((c, i) => {
    const bh = Math.round((c / max) * (hgt - 2));
    if (bh) ctx.fillRect(i * bw, hgt - bh, Math.max(1, bw - 1), bh);
  });
  const peak = counts.some(Boolean) ? max : 0;
  canvas.setAttribute("aria-label", `Events per second over the last minute, peak ${peak}`);
}

function togglePause() {
  paused = !paused;
  const b = $("#events-pause");
  b.setAttribute("aria-pressed", String(paused));
  b.textContent = paused ? "Resume" : "Pause";
  if (!paused && held.length) {
    add(held);
    held = [];
  }
  $("#events-held").textContent = "";
}

export function init(setLive) {
  $("#events-form").addEventListener("submit", (e) => {
    e.preventDefault();
    say($("#events-status"), "");
    if (stream) stream.setPatterns(patterns());
    showWatching();
  });
  $("#events-pause").addEventListener("click", togglePause);
  $("#events-clear").addEventListener("click", () => {
    $("#events tbody").replaceChildren();
    held = [];
    $("#events-held").textContent = "";
  });
  onState = setLive;
}

export async function start() {
  if (!stream) stream = new EventStream(patterns(), onEvent, (state) => {
    // a pattern drpd refused comes back as an error frame naming it
    if (state.startsWith("error: ")) say($("#events-status"), `drpd refused ${state.slice(7)}`, true);
    else onState(state);
  }, onNotice);
  if (!timer) timer = setInterval(tick, 1000);
  draw();
}

export function stop() {
  if (stream) stream.close();
  stream = null;
  clearInterval(timer);
  timer = null;
}
