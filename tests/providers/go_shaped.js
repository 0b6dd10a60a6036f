#!/usr/bin/env node
// A provider that speaks exactly what a provider built with DRP's Go SDK speaks.
//
// - verbs: `define`, `unpack <dir>`, `listen <plugin-sock> <server-sock>`;
//   `serve` is unknown (usage error, exit 2), as in the Go SDK;
// - `define` writes every field Go's encoder writes (null lists, Model "" for
//   a system action) and a Content bundle whose objects carry Endpoint,
//   Bundle, Partial and a field drpd does not know, a `workflows` section and
//   objects of its own StoreObjects prefix (`go-cows`);
// - answers are chunked (Node, like Go's net/http, chunks a body written in
//   parts without a Content-Length) and the action answers are over 2 KB;
// - config reads /info and refuses to start without `secure-param-upgrade`
//   (upstream ipmi does), then builds ProvisionerURL from address/file_port;
// - action `count` reads a machine param that is not set (null) and creates it;
// - it holds an event selection (`register machines.save.*`) over wss://, as
//   DRP's Go client always dials, and `events` reports what it received.
// Node.js standard library only.
"use strict";
const fs = require("fs");
const http = require("http");
const https = require("https");
const net = require("net");
const tls = require("tls");
const crypto = require("crypto");
const path = require("path");

const NAME = "go_shaped";
const unknownObjectField = { Loaders: null, Documentaiton: "a typo in a hand-written pack" };
const goCommon = { Validated: false, Available: false, Errors: null, ReadOnly: false,
                   Meta: { color: "green" }, Endpoint: "", Bundle: "" };
const content = {
  meta: { Name: NAME, Version: "v4.0.0", Description: "Go-shaped test content",
          DisplayName: "Go Shaped", Icon: "cogs", Color: "green", Type: "plugin",
          RequiredFeatures: "", Writable: false, Overwritable: false },
  sections: {
    params: {
      "go/counter": Object.assign({}, goCommon, unknownObjectField, {
        Name: "go/counter", Description: "counted by `count`", Documentation: "",
        Secure: false, Schema: { type: "integer" } }),
    },
    profiles: {
      "go-profile": Object.assign({}, goCommon, unknownObjectField, {
        Name: "go-profile", Partial: false, Description: "", Documentation: "",
        Params: { "go/counter": 0 }, Profiles: null }),
    },
    stages: {
      "go-stage": Object.assign({}, goCommon, { Name: "go-stage", Partial: false, Tasks: null,
        Templates: null, Params: null, Profiles: null, BootEnv: "", RequiredParams: null,
        OptionalParams: null, Reboot: false, RunnerWait: true, ExtraField: 1 }),
    },
    workflows: {
      "go-workflow": Object.assign({}, goCommon, { Name: "go-workflow", Description: "",
        Documentation: "", Stages: ["go-stage"], ExtraField: 1 }),
    },
    "go-cows": {
      bessie: { Id: "bessie", Type: "go-cows", Moo: 3 },
    },
  },
};
const definition = {
  Name: NAME, Version: "v4.0.0", PluginVersion: 4, AutoStart: false, HasPublish: false,
  AvailableActions: [
    { Provider: "", Model: "machines", Command: "count", RequiredParams: null,
      OptionalParams: null },
    { Provider: "", Model: "", Command: "events", RequiredParams: null, OptionalParams: null },
  ],
  RequiredParams: null,
  OptionalParams: ["go/counter"],
  StoreObjects: { "go-cows": { Moo: { type: "integer", isrequired: true } } },
  Documentation: "",
  Content: JSON.stringify(content),
  // a field of a newer Go SDK
  IgnoreEvents: false, SomethingNewer: { x: 1 },
};

const state = { config: null, info: null, events: [], wsReady: false };
const env = process.env;

function endpoint() { return new URL(env.RS_ENDPOINT); }

// REST call to drpd with the instance's token, as the Go client does.
function rest(method, urlPath, body) {
  const url = endpoint();
  const mod = url.protocol === "https:" ? https : http;
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const options = {
    method, hostname: url.hostname, port: url.port, path: "/api/v3" + urlPath,
    headers: { Authorization: "Bearer " + env.RS_TOKEN, "Content-Type": "application/json" },
  };
  if (url.protocol === "https:") options.ca = fs.readFileSync(env.RS_CA_CERT);
  if (data) options.headers["Content-Length"] = data.length;
  return new Promise((resolve, reject) => {
    const req = mod.request(options, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode, body: text ? JSON.parse(text) : null });
      });
    });
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

// A minimal websocket client over TLS (wss://, as DRP's Go client always dials).
// Resolves once drpd acknowledged the registration, rejects when it cannot
// connect, as the Go client's Events() + Register() do.
function openEvents(register) {
  return new Promise((resolve, reject) => {
    state.onReady = resolve;
    openEventsWith(register, reject);
  });
}

function openEventsWith(register, reject) {
  const url = endpoint();
  const key = crypto.randomBytes(16).toString("base64");
  // Go's client skips verification (InsecureSkipVerify); this one checks the CA when given
  const socket = tls.connect({ host: url.hostname, port: Number(url.port),
                               ca: env.RS_CA_CERT ? fs.readFileSync(env.RS_CA_CERT) : undefined,
                               rejectUnauthorized: Boolean(env.RS_CA_CERT),
                               checkServerIdentity: () => undefined });
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  const send = (text) => {
    const payload = Buffer.from(text);
    const mask = crypto.randomBytes(4);
    const header = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length])
      : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 255]);
    const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
    socket.write(Buffer.concat([header, mask, masked]));
  };
  socket.on("secureConnect", () => {
    socket.write(`GET /api/v3/ws HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
                 `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\n` +
                 `Sec-WebSocket-Version: 13\r\nAuthorization: Bearer ${env.RS_TOKEN}\r\n\r\n`);
  });
  socket.on("data", (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    if (!upgraded) {
      const end = buffer.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buffer.subarray(0, end).toString();
      buffer = buffer.subarray(end + 4);
      if (!head.startsWith("HTTP/1.1 101")) { socket.destroy(); reject(new Error(head.split("\r\n")[0])); return; }
      upgraded = true;
      send("register " + register);
    }
    for (;;) {
      if (buffer.length < 2) return;
      let length = buffer[1] & 127;
      let offset = 2;
      if (length === 126) { if (buffer.length < 4) return; length = buffer.readUInt16BE(2); offset = 4; }
      else if (length === 127) { if (buffer.length < 10) return; length = Number(buffer.readBigUInt64BE(2)); offset = 10; }
      if (buffer.length < offset + length) return;
      const opcode = buffer[0] & 15;
      const payload = buffer.subarray(offset, offset + length).toString();
      buffer = buffer.subarray(offset + length);
      if (opcode !== 1) continue;
      const event = JSON.parse(payload);
      if (event.Type === "websocket") {
        if (event.Action === "register") { state.wsReady = true; state.onReady(); }
        continue;
      }
      state.events.push({ Type: event.Type, Action: event.Action, Key: event.Key });
    }
  });
  socket.on("error", (e) => reject(new Error("event stream: " + e.message)));
  socket.on("close", () => reject(new Error("event stream: connection closed")));
}

// Answer in parts without a Content-Length: Node sends it chunked, like Go's net/http.
function reply(res, code, obj) {
  const text = JSON.stringify(obj);
  res.writeHead(code, { "Content-Type": "application/json" });
  const half = Math.floor(text.length / 2);
  res.write(text.slice(0, half));
  res.end(text.slice(half));
}

function ok() { return { Model: "", Key: "", Type: "", Messages: [], Code: 200 }; }
function fail(code, message) { return { Model: "", Key: "", Type: "plugin", Messages: [message], Code: code }; }
const padding = "x".repeat(3000);  // every action answer is over 2 KB

async function handle(req, body, res) {
  if (req.url === "/api-plugin/v4/config") {
    const info = await rest("GET", "/info");
    if (info.status !== 200) return reply(res, 400, fail(400, "cannot read /info: " + info.status));
    if (!(info.body.features || []).includes("secure-param-upgrade")) {
      return reply(res, 400, fail(400, "this endpoint lacks secure-param-upgrade"));
    }
    state.info = info.body;
    state.config = body;
    try {
      await openEvents("machines.save.*");
    } catch (e) {
      return reply(res, 500, fail(500, String(e.message || e)));
    }
    return reply(res, 200, ok());
  }
  if (req.url === "/api-plugin/v4/action") {
    const provisionerURL = `http://${state.info.address}:${state.info.file_port}`;
    if (body.Command === "count") {
      const uuid = body.Model.Uuid;
      const got = await rest("GET", `/machines/${uuid}/params/go/counter`);
      if (got.status !== 200) return reply(res, 500, fail(500, "param read answered " + got.status));
      const next = got.body === null ? 1 : got.body + 1;
      const set = await rest("POST", `/machines/${uuid}/params/go/counter`, next);
      if (set.status !== 200) return reply(res, 500, fail(500, "param write answered " + set.status));
      return reply(res, 200, { Counter: next, WasNull: got.body === null, ProvisionerURL: provisionerURL,
                               Model: body.Model.Name, Padding: padding });
    }
    if (body.Command === "events") {
      return reply(res, 200, { Ready: state.wsReady, Events: state.events, Padding: padding });
    }
    return reply(res, 404, fail(404, "no action " + body.Command));
  }
  if (req.url === "/api-plugin/v4/stop") {
    reply(res, 200, ok());
    setTimeout(() => process.exit(0), 10);
    return undefined;
  }
  return reply(res, 404, fail(404, "unknown " + req.url));
}

function listen(pluginSock, serverSock) {
  try { fs.unlinkSync(pluginSock); } catch (e) { /* none */ }
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString();
      handle(req, text ? JSON.parse(text) : null, res).catch((e) => reply(res, 500, fail(500, String(e))));
    });
  });
  const probe = net.connect(serverSock, () => {  // the Go SDK dials drpd before READY!
    probe.end();
    server.listen(pluginSock, () => process.stdout.write("READY!\n"));
  });
  probe.on("error", (e) => { process.stderr.write(String(e) + "\n"); process.exit(1); });
}

const [verb, ...args] = process.argv.slice(2);
if (verb === "define") {
  // a Go provider may call the API during define: prove a token came with it
  definition.Documentation = env.RS_TOKEN ? "define had RS_TOKEN" : "define had no RS_TOKEN";
  process.stdout.write(JSON.stringify(definition) + "\n");
} else if (verb === "unpack") {
  fs.mkdirSync(args[0], { recursive: true });
  fs.writeFileSync(path.join(args[0], "token.txt"), env.RS_TOKEN ? "yes" : "no");
} else if (verb === "listen") {
  listen(args[0], args[1]);
} else {
  process.stderr.write(`Error: unknown command "${verb}" for "${NAME}"\nRun '${NAME} --help' for usage.\n`);
  process.exit(2);
}
