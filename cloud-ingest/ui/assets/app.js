/*
 * app.js - the ferry fleet console (docs/console.md): five pages on the public JSON API.
 *
 *   #/fleet           every device, its state, counts by state/class/version, filter and search
 *   #/device/<id>     one device: metric charts (/v1/series), logs (/v1/export), updates and
 *                     their timeline (ota.* events), inventory, alerts, device actions
 *   #/alerts          firing, resolved and late alerts (/v1/alerts), silences (/v1/silences)
 *                     with the silence / remove buttons for operator tokens
 *   #/rollouts        every rollout with its state and progress (/v1/rollouts)
 *   #/rollout/<id>    one rollout: waves, gates, devices, before/after comparison (charts), the
 *                     pause / resume / promote / abort buttons for operator tokens (/v1/whoami)
 *
 * Plain JavaScript, no framework, no request to another host. Data from the API is only ever put
 * into the page with textContent (never innerHTML), so a device name cannot inject markup.
 * Every fetch sends the operator token kept in sessionStorage; a 401 shows the token prompt.
 */
"use strict";

const TOKEN_KEY = "ferry.token";
/* A device whose last batch is older than this is offline (it syncs at least every minute when
 * it has a link; docs/console.md). */
const OFFLINE_AFTER_MS = 5 * 60 * 1000;
const RANGES = { hour: 3600e3, day: 86400e3, week: 7 * 86400e3 };
const LEVELS = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" ? document.createTextNode(c) : c);
  }
  return e;
}

/* ---- Authentication: the token prompt --------------------------------------------------- */

class AuthError extends Error {}

let pendingPrompt = null;

function showTokenPrompt(reason) {
  $("token-reason").textContent = reason || "The API needs an operator token.";
  $("token-input").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("token-overlay").hidden = false;
  $("token-input").focus();
}

function setupTokenPrompt() {
  const close = () => { $("token-overlay").hidden = true; };
  $("token-save").addEventListener("click", () => {
    const t = $("token-input").value.trim();
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    close();
    route();
  });
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-input").value = "";
  });
  $("token-cancel").addEventListener("click", close);
  $("token-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") $("token-save").click();
    if (ev.key === "Escape") close();
  });
  $("token-button").addEventListener("click", () => showTokenPrompt("Set or change the token."));
}

async function api(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { headers, cache: "no-store" });
  if (r.status === 401 || r.status === 403) {
    if (!pendingPrompt)
      pendingPrompt = setTimeout(() => {
        pendingPrompt = null;
        showTokenPrompt(r.status === 401 ? "The token is missing or was refused (401)."
                                         : "This token's role may not read this (403).");
      }, 0);
    throw new AuthError(path + ": " + r.status);
  }
  const text = await r.text();
  if (!r.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch (e) { /* not JSON */ }
    throw new Error(path.split("?")[0] + ": HTTP " + r.status + ": " + msg);
  }
  return text;
}

const apiJson = async (path) => JSON.parse(await api(path));

/* A change (POST, DELETE) with the token and an optional JSON body; answers the parsed JSON (null
 * for an empty answer) or throws with the server's message. */
async function apiSend(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let doc = null;
  try { doc = JSON.parse(text); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status + ": " + ((doc && doc.error) || text));
  return doc;
}
const apiPost = (path, body) => apiSend("POST", path, body);

/* Who the token is (name, role): the console shows change buttons to operators only. Cached per
 * token for the life of the page. */
let whoCache = { token: null, who: null };
async function whoAmI() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (whoCache.token !== token || !whoCache.who) {
    whoCache = { token, who: await apiJson("/v1/whoami") };
  }
  return whoCache.who;
}
const apiNdjson = async (path) =>
  (await api(path)).split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));

/* ---- Formatting ------------------------------------------------------------------------- */

function ago(ns, nowMs) {
  if (!ns) return "never";
  const s = Math.max(0, Math.round((nowMs - ns / 1e6) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h ago";
}

function duration(ms) {
  const s = Math.round(ms / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min";
  if (s < 86400) return Math.floor(s / 3600) + " h";
  return Math.floor(s / 86400) + " d";
}

const isoTime = (ns) => (ns ? new Date(ns / 1e6).toISOString().replace(".000Z", "Z") : "–");

function versionsText(v) {
  return Object.entries(v || {}).map(([k, x]) => k + " " + x).join(", ");
}

function backlogOf(d) {
  let n = 0;
  for (const s of Object.values(d.streams || {})) n += s.backlog || 0;
  return n;
}

/* A device's state, in priority order: alerting (an alert fires), updating (an update is in
 * flight), offline (silent for OFFLINE_AFTER_MS), never (no batch yet), online. */
const IDLE_UPDATE_STATES = new Set(["idle", "committed", "rolled_back", "failed", "rollback"]);

function deviceState(d, firingByDevice, nowMs) {
  if (firingByDevice.has(d.id)) return "alerting";
  for (const u of Object.values(d.updates || {}))
    if (u && u.state && !IDLE_UPDATE_STATES.has(u.state)) return "updating";
  if (!d.last_seen_ns) return "never";
  if (nowMs - d.last_seen_ns / 1e6 > OFFLINE_AFTER_MS) return "offline";
  return "online";
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function showError(main, e) {
  if (e instanceof AuthError) {
    main.replaceChildren(el("p", { class: "muted", text: "Waiting for a valid operator token…" }));
    return;
  }
  main.replaceChildren(el("p", { class: "error", text: String(e.message || e) }));
}

/* ---- Fleet page ------------------------------------------------------------------------- */

/* The fleet table is virtualised: only the rows in (and a little around) the window exist in the
 * DOM, between two spacer rows that keep the scroll height of all of them. Rows have one fixed
 * height (style.css, #fleet-table) so the visible range is arithmetic, with no layout read per
 * row. 10,000 devices cost about 60 DOM rows. */
const ROW_H = 29;
const ROW_OVERSCAN = 15;

const fleet = { rows: [], filtered: [], range: [-1, -1], scrollBound: false,
  filter: { q: "", state: "", cls: "", version: "", label: "" } };

/* One pass over the device list: each row's state, versions and labels text, and the counts by
 * state, class, component:version and label. The search text is built when a search needs it. */
function buildFleetRows(devices, firingByDevice, nowMs) {
  const rows = new Array(devices.length);
  const byState = new Map(), byClass = new Map(), byVersion = new Map(), byLabel = new Map();
  const bump = (m, k) => m.set(k, (m.get(k) || 0) + 1);
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i];
    const state = deviceState(d, firingByDevice, nowMs);
    const versionKeys = [], labels = [];
    let versions = "";
    for (const k in d.versions || {}) {
      const v = d.versions[k];
      versions += (versions ? ", " : "") + k + " " + v;
      versionKeys.push(k + ":" + v);
      bump(byVersion, k + ":" + v);
    }
    for (const k in d.labels || {}) {
      const l = k + "=" + d.labels[k];
      labels.push(l);
      bump(byLabel, l);
    }
    const cls = d.device_class || "(none)";
    bump(byState, state);
    bump(byClass, cls);
    rows[i] = { d, state, cls, versions, versionKeys, labels,
                alerts: firingByDevice.get(d.id) || 0, backlog: backlogOf(d), search: null };
  }
  return { rows, byState, byClass, byVersion, byLabel };
}

async function pageFleet(main) {
  const [devs, firing] = await Promise.all([apiJson("/v1/devices"),
                                            apiJson("/v1/alerts?state=firing")]);
  performance.mark("fleet:received");
  const tReceived = performance.now();
  const nowMs = Date.now();
  const firingByDevice = new Map();
  for (const a of firing) firingByDevice.set(a.device, (firingByDevice.get(a.device) || 0) + 1);
  const built = buildFleetRows(devs.devices, firingByDevice, nowMs);
  fleet.rows = built.rows;
  const { byState, byClass, byVersion, byLabel } = built;
  performance.mark("fleet:rows");
  const tRows = performance.now();

  const stateCard = (s) => el("div", { class: "card" },
    el("div", { class: "num state state-" + s, id: "count-" + s, text: String(byState.get(s) || 0) }),
    el("div", { class: "muted", text: s }));
  const counts = el("div", { class: "counts" },
    el("div", { class: "card" },
      el("div", { class: "num", id: "count-total", text: String(fleet.rows.length) }),
      el("div", { class: "muted", text: "devices" })),
    ...["online", "offline", "alerting", "updating", "never"].map(stateCard));

  const chips = (title, m, key) => el("div", { class: "row", id: "chips-" + key },
    el("span", { class: "muted", text: title + ":" }),
    ...[...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30).map(([k, n]) =>
      el("span", { class: "chip", "data-key": k, text: k + " " + n, onclick: () => {
        fleet.filter[key] = k;
        $("filter-" + key).value = k;
        applyFilter();
      } })));

  const options = (m, label) => [el("option", { value: "", text: label }),
    ...[...m.keys()].sort().map((k) => el("option", { value: k, text: k }))];
  const search = el("input", { id: "search", type: "search",
                               placeholder: "Search id, name, class, version, label",
                               size: "36" });
  search.addEventListener("input", () => { fleet.filter.q = search.value; applyFilter(); });
  const sel = (key, m, label) => {
    const s = el("select", { id: "filter-" + key }, ...options(m, label));
    s.addEventListener("change", () => { fleet.filter[key] = s.value; applyFilter(); });
    return s;
  };
  const clear = el("button", { type: "button", id: "filter-clear", text: "Clear", onclick: () => {
    fleet.filter = { q: "", state: "", cls: "", version: "", label: "" };
    search.value = "";
    for (const k of ["state", "cls", "version", "label"]) $("filter-" + k).value = "";
    applyFilter();
  } });

  const table = el("table", { id: "fleet-table" },
    el("thead", {}, el("tr", {},
      ...["Device", "Name", "Class", "State", "Last seen", "Backlog", "Versions", "Alerts"].map(
        (h, i) => el("th", { class: i === 5 || i === 7 ? "num" : "", text: h })))),
    el("tbody", { id: "fleet-body" }));

  /* Built off-document, attached once: one style and layout pass for the whole page. */
  const frag = document.createDocumentFragment();
  frag.append(
    el("h1", { text: "Fleet" }), counts,
    chips("Classes", byClass, "cls"), chips("Versions", byVersion, "version"),
    byLabel.size ? chips("Labels", byLabel, "label") : "",
    el("div", { class: "row" }, search, sel("state", byState, "any state"),
       sel("cls", byClass, "any class"), sel("version", byVersion, "any version"),
       sel("label", byLabel, "any label"), clear,
       el("span", { class: "muted" }, el("span", { id: "fleet-matching", text: "0" }),
          " of ", String(fleet.rows.length), " devices match")),
    table);
  for (const k of ["state", "cls", "version", "label"])
    frag.querySelector("#filter-" + k).value = fleet.filter[k];
  search.value = fleet.filter.q;
  main.replaceChildren(frag);

  if (!fleet.scrollBound) {
    /* One listener for the page's life; a frame at most per scroll burst. */
    let queued = false;
    const onScroll = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => { queued = false; renderWindow(false); });
    };
    window.addEventListener("scroll", onScroll, { passive: true });
    window.addEventListener("resize", onScroll, { passive: true });
    fleet.scrollBound = true;
  }
  applyFilter();
  performance.mark("fleet:drawn");
  /* The search text of every row, built after the first render in slices of 2000 rows so the
   * page stays responsive and the first search does not pay for it. */
  const rowsNow = fleet.rows;
  const prepare = (from) => {
    if (fleet.rows !== rowsNow) return;
    const end = Math.min(rowsNow.length, from + 2000);
    for (let i = from; i < end; i++) searchText(rowsNow[i]);
    if (end < rowsNow.length) setTimeout(() => prepare(end), 0);
  };
  setTimeout(() => prepare(0), 0);
  performance.measure("fleet:build-rows", "fleet:received", "fleet:rows");
  performance.measure("fleet:draw", "fleet:rows", "fleet:drawn");
  /* Where the page's time went (console-bench reads it): list parsed, rows built, drawn. */
  document.body.dataset.fleetTimes = JSON.stringify({ received: tReceived, rows: tRows,
                                                      drawn: performance.now() });
  setStatus(fleet.rows.length + " devices, read " + new Date(nowMs).toLocaleTimeString());
}

function searchText(r) {
  if (r.search === null)
    r.search = (r.d.id + " " + r.d.name + " " + r.d.device_class + " " + r.versions + " " +
                r.state + " " + r.labels.join(" ")).toLowerCase();
  return r.search;
}

function applyFilter() {
  const f = fleet.filter, q = f.q.trim().toLowerCase();
  const words = q ? q.split(/\s+/) : [];
  const any = words.length || f.state || f.cls || f.version || f.label;
  fleet.filtered = !any ? fleet.rows : fleet.rows.filter((r) =>
    (!f.state || r.state === f.state) &&
    (!f.cls || r.cls === f.cls) &&
    (!f.version || r.versionKeys.includes(f.version)) &&
    (!f.label || r.labels.includes(f.label)) &&
    (!words.length || words.every((w) => searchText(r).includes(w))));
  $("fleet-matching").textContent = String(fleet.filtered.length);
  renderWindow(true);
}

function fleetRow(r, nowMs) {
  const d = r.d;
  const tr = document.createElement("tr");
  tr.dataset.device = d.id;
  const td = (text, cls, title) => {
    const c = document.createElement("td");
    c.textContent = text;
    if (cls) c.className = cls;
    if (title) c.title = title;
    tr.appendChild(c);
    return c;
  };
  const a = document.createElement("a");
  a.href = "#/device/" + encodeURIComponent(d.id);
  a.textContent = d.id;
  td("").appendChild(a);
  td(d.name, "", d.name);
  td(d.device_class);
  td(r.state === "offline" ? "offline " + duration(nowMs - d.last_seen_ns / 1e6) : r.state,
     "state state-" + r.state);
  td(ago(d.last_seen_ns, nowMs), "", isoTime(d.last_seen_ns));
  td(String(r.backlog), "num");
  td(r.versions, "", r.versions);
  td(String(r.alerts), "num" + (r.alerts ? " state-alerting" : ""));
  return tr;
}

function spacerRow(height) {
  const tr = document.createElement("tr");
  tr.className = "spacer";
  const c = document.createElement("td");
  c.colSpan = 8;
  c.style.height = height + "px"; /* CSSOM: allowed by the strict CSP */
  tr.appendChild(c);
  return tr;
}

/* Draws the rows of the filtered list that are in or near the window. `force`: the list
 * changed (else only a changed range is redrawn). One layout read (the table's position). */
function renderWindow(force) {
  const body = $("fleet-body");
  if (!body) return;
  const n = fleet.filtered.length;
  const top = body.getBoundingClientRect().top;
  const first = Math.max(0, Math.min(n, Math.floor(-top / ROW_H) - ROW_OVERSCAN));
  const last = Math.min(n, first + Math.ceil(window.innerHeight / ROW_H) + 2 * ROW_OVERSCAN);
  if (!force && fleet.range[0] === first && fleet.range[1] === last) return;
  const t0 = performance.now();
  fleet.range = [first, last];
  const nowMs = Date.now();
  const frag = document.createDocumentFragment();
  if (first > 0) frag.appendChild(spacerRow(first * ROW_H));
  for (let i = first; i < last; i++) frag.appendChild(fleetRow(fleet.filtered[i], nowMs));
  if (last < n) frag.appendChild(spacerRow((n - last) * ROW_H));
  body.replaceChildren(frag);
  /* How long the last redraw of the window took (console-bench reads it). */
  body.dataset.windowMs = (performance.now() - t0).toFixed(2);
}

/* ---- Device page ------------------------------------------------------------------------ */

/* The signed device actions sent to a device (docs/actions.md), newest first. */
function actionsTable(actions) {
  if (!actions.length) return el("p", { class: "muted", text: "No device actions sent." });
  const sorted = actions.slice().sort((a, b) => (b.queued_ns || 0) - (a.queued_ns || 0));
  return el("table", { id: "device-actions" },
    el("thead", {}, el("tr", {}, ...["Queued", "Kind", "Arguments", "By", "State", "Result",
      "Exit", "Output"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...sorted.map((a) => el("tr", {},
      el("td", { text: isoTime(a.queued_ns) }),
      el("td", { text: a.kind || "" }),
      el("td", {}, el("code", { text: Array.isArray(a.args) ? a.args.join(" ")
                                                           : String(a.args || "") })),
      el("td", { text: a.by || "" }),
      el("td", { class: "state", text: a.state || "" }),
      el("td", { text: (a.status || "") + (a.reason ? ": " + a.reason : "") }),
      el("td", { class: "num", text: a.exit_code === undefined || a.exit_code === null ? ""
                                                                      : String(a.exit_code) }),
      el("td", {}, el("code", { text: (a.output || "").slice(-200) }))))));
}

/* The update timeline: the device's ota.* events (the newest first), each a state change of one
 * component's update (engine/ota: component, state, running/target version, reason) or a
 * condition check (ota.condition: release_version, result, detail). */
function timelineTable(events) {
  const ota = events.filter((r) => typeof r.name === "string" && r.name.startsWith("ota."));
  if (!ota.length) return el("p", { class: "muted", id: "device-timeline",
                                    text: "No ota.* events among the device's newest events." });
  ota.sort((a, b) => (b.ts_corrected || 0) - (a.ts_corrected || 0) || b.seq - a.seq);
  const f = (r, k) => (r.fields && r.fields[k] !== undefined && r.fields[k] !== null
                       ? String(r.fields[k]) : "");
  return el("table", { id: "device-timeline" },
    el("thead", {}, el("tr", {}, ...["Device time", "Component", "Event", "Running", "Target",
      "Reason", "Bytes"].map((h, i) => el("th", { class: i === 6 ? "num" : "", text: h })))),
    el("tbody", {}, ...ota.map((r) => {
      const ev = r.name.slice(4);
      const bad = ev === "failed" || ev === "rolled_back" || f(r, "state") === "failed";
      return el("tr", { "data-seq": String(r.seq), "data-event": ev },
        el("td", { title: "sequence " + r.seq, text: isoTime(r.ts_corrected) }),
        el("td", { text: f(r, "component") }),
        el("td", { class: "state " + (bad ? "state-firing" : ev === "committed"
                                             ? "state-resolved" : ""),
                   text: ev === "condition" ? "condition " + f(r, "result") : ev }),
        el("td", { text: f(r, "running_version") }),
        el("td", { text: f(r, "target_version") || f(r, "release_version") }),
        el("td", { text: f(r, "reason") || f(r, "detail") || r.message || "" }),
        el("td", { class: "num", text: f(r, "bytes_done") }));
    })));
}

/* The device's newest inventory event as GET /v1/devices/{id} gives it (docs/ingest.md). */
function inventoryBlock(d) {
  const inv = d.inventory;
  if (!inv || typeof inv !== "object" || !Object.keys(inv).length)
    return el("p", { class: "muted", id: "device-inventory", text: "no inventory reported" });
  const keys = Object.keys(inv).sort();
  return el("div", { id: "device-inventory" },
    el("p", { class: "muted small", text: "reported " + (d.inventory_time || "?") }),
    el("dl", {}, ...keys.flatMap((k) => [el("dt", { text: k }),
      el("dd", { "data-key": k, text: typeof inv[k] === "string" ? inv[k]
                                                                  : JSON.stringify(inv[k]) })])));
}

const devicePage = { id: "", metric: "", range: "hour" };

async function pageDevice(main, id) {
  if (devicePage.id !== id) Object.assign(devicePage, { id, metric: "", range: "hour" });
  const enc = encodeURIComponent(id);
  const [d, alerts, firing, actionsDoc] = await Promise.all([
    apiJson("/v1/devices/" + enc), apiJson("/v1/alerts?device=" + enc),
    apiJson("/v1/alerts?state=firing&device=" + enc),
    apiJson("/v1/actions?device=" + enc).catch(() => ({ actions: [] }))]);
  const nowMs = Date.now();
  const fb = new Map(firing.length ? [[id, firing.length]] : []);
  const state = deviceState(d, fb, nowMs);

  const info = el("dl", {},
    el("dt", { text: "State" }), el("dd", { class: "state state-" + state, id: "device-state",
      text: state === "offline" ? "offline " + duration(nowMs - d.last_seen_ns / 1e6) : state }),
    el("dt", { text: "Name" }), el("dd", { text: d.name }),
    el("dt", { text: "Class" }), el("dd", { text: d.device_class }),
    el("dt", { text: "Last seen" }),
    el("dd", { text: ago(d.last_seen_ns, nowMs) + " (" + isoTime(d.last_seen_ns) + ")" }),
    el("dt", { text: "Clock offset" }), el("dd", { text: (d.clock_offset_ns / 1e6).toFixed(1) + " ms" }),
    el("dt", { text: "Versions" }), el("dd", { id: "device-versions", text: versionsText(d.versions) || "–" }),
    el("dt", { text: "Labels" }), el("dd", { id: "device-labels", text: Object.entries(d.labels || {})
      .map(([k, v]) => k + "=" + v).join(" ") || "–" }),
    el("dt", { text: "Enrolled" }), el("dd", { text: isoTime(d.enrolled_ns) }),
    el("dt", { text: "Revoked" }), el("dd", { text: d.revoked ? "yes" : "no" }));

  const streams = el("table", { id: "device-streams" },
    el("thead", {}, el("tr", {}, ...["Stream", "Records", "Max seq", "Backlog", "Gap ranges",
      "Gap records"].map((h, i) => el("th", { class: i ? "num" : "", text: h })))),
    el("tbody", {}, ...Object.entries(d.streams || {}).map(([name, s]) => el("tr", {},
      el("td", { text: name }), ...[s.records, s.max_seq, s.backlog, s.gap_ranges, s.gap_records]
        .map((v) => el("td", { class: "num", text: String(v) }))))));

  const updates = Object.entries(d.updates || {});
  const updTable = updates.length ? el("table", { id: "device-updates" },
    el("thead", {}, el("tr", {}, ...["Component", "State", "Running", "Target", "Reason", "Device time"]
      .map((h) => el("th", { text: h })))),
    el("tbody", {}, ...updates.map(([c, u]) => el("tr", {}, el("td", { text: c }),
      el("td", { class: "state", text: u.state || "" }), el("td", { text: u.running_version || "" }),
      el("td", { text: u.target_version || "" }), el("td", { text: u.reason || "" }),
      el("td", { text: isoTime(u.ts) })))))
    : el("p", { class: "muted", text: "No update state reported." });

  const timeline = el("div", { id: "timeline-holder" },
                      el("p", { class: "muted", text: "Reading the ota.* events…" }));
  const metricSel = el("select", { id: "metric-select" });
  const rangeButtons = el("span", { class: "row" }, ...Object.keys(RANGES).map((r) =>
    el("button", { type: "button", id: "range-" + r, class: r === devicePage.range ? "on" : "",
                   text: r, onclick: () => { devicePage.range = r; drawChart(); } })));
  const canvas = el("canvas", { id: "chart", width: "900", height: "260" });
  const chartNote = el("p", { id: "chart-note", class: "muted small" });

  const levelSel = el("select", { id: "log-level" }, el("option", { value: "7", text: "all levels" }),
    ...LEVELS.slice(0, 7).map((l, i) => el("option", { value: String(i), text: l + " and worse" })));
  const logText = el("input", { id: "log-text", type: "search", placeholder: "text in message or source" });
  const logs = el("pre", { class: "logs", id: "logs" });

  main.replaceChildren(
    el("h1", { text: "Device " + id }),
    el("div", { class: "grid2" }, el("div", { class: "card" }, info),
       el("div", {}, streams, el("h2", { text: "Updates" }), updTable,
          el("h2", { text: "Inventory" }), inventoryBlock(d))),
    el("h2", { text: "Update timeline" }), timeline,
    el("h2", { text: "Metrics" }),
    el("div", { class: "row" }, metricSel, rangeButtons), canvas, chartNote,
    el("h2", { text: "Alerts" }), alertsTable(alerts, false),
    el("h2", { text: "Device actions" }), actionsTable(actionsDoc.actions || []),
    el("h2", { text: "Recent logs" }), el("div", { class: "row" }, levelSel, logText), logs);

  /* The metric names come from the device's newest metric records; the update timeline from
   * its newest 1000 events (ota.* among them). */
  const newest = (stream, n) => {
    const max = (d.streams && d.streams[stream] && d.streams[stream].max_seq) || 0;
    return max ? apiNdjson("/v1/export?device=" + enc + "&stream=" + stream + "&after_seq=" +
                           Math.max(0, max - n) + "&limit=" + n) : Promise.resolve([]);
  };
  const [recent, events] = await Promise.all([newest("metric", 500), newest("event", 1000)]);
  timeline.replaceChildren(timelineTable(events));
  const names = new Set();
  for (const r of recent)
    for (const [k, v] of Object.entries(r.fields || {}))
      if (typeof v === "number" || typeof v === "boolean") names.add(r.name + "." + k);
  const sorted = [...names].sort();
  metricSel.replaceChildren(...(sorted.length ? sorted.map((n) => el("option", { value: n, text: n }))
                                              : [el("option", { value: "", text: "no metrics" })]));
  if (!sorted.includes(devicePage.metric)) devicePage.metric = sorted[0] || "";
  metricSel.value = devicePage.metric;
  metricSel.addEventListener("change", () => { devicePage.metric = metricSel.value; drawChart(); });

  const lseq = (d.streams && d.streams.log && d.streams.log.max_seq) || 0;
  const logRows = lseq ? await apiNdjson("/v1/export?device=" + enc + "&stream=log&after_seq=" +
                                         Math.max(0, lseq - 1000) + "&limit=1000") : [];
  const renderLogs = () => {
    const maxLevel = Number(levelSel.value), q = logText.value.toLowerCase();
    const lines = [];
    for (let i = logRows.length - 1; i >= 0 && lines.length < 500; i--) {
      const r = logRows[i], lvl = LEVELS.indexOf(r.level);
      if (lvl > maxLevel) continue;
      if (q && !(r.message.toLowerCase().includes(q) || r.name.toLowerCase().includes(q))) continue;
      lines.push(isoTime(r.ts_corrected) + " " + (r.level || "") + " " + r.name + ": " + r.message);
    }
    logs.textContent = lines.length ? lines.join("\n") : "(no log lines match)";
  };
  levelSel.addEventListener("change", renderLogs);
  logText.addEventListener("input", renderLogs);
  renderLogs();
  await drawChart();
  setStatus("device " + id + ", read " + new Date(nowMs).toLocaleTimeString());
}

async function drawChart() {
  const canvas = $("chart"), note = $("chart-note");
  if (!canvas) return;
  for (const r of Object.keys(RANGES)) $("range-" + r).className = r === devicePage.range ? "on" : "";
  const ctx = canvas.getContext("2d");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 900, h = canvas.clientHeight || 260;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  if (!devicePage.metric) { note.textContent = "This device sent no numeric metric yet."; return; }
  const toNs = BigInt(Date.now()) * 1000000n;
  const fromNs = toNs - BigInt(RANGES[devicePage.range]) * 1000000n;
  const points = Math.max(10, Math.min(5000, Math.floor(w)));
  const t0 = performance.now();
  const s = await apiJson("/v1/series?device=" + encodeURIComponent(devicePage.id) + "&metric=" +
                          encodeURIComponent(devicePage.metric) + "&from=" + fromNs + "&to=" + toNs +
                          "&points=" + points);
  plot(ctx, w, h, s, Number(fromNs) / 1e6, Number(toNs) / 1e6);
  canvas.dataset.points = String(s.points.length);
  canvas.dataset.ms = (performance.now() - t0).toFixed(1);
  note.textContent = s.samples + " samples in " + s.points.length + " buckets of " +
    duration(s.bucket_ns / 1e6) + " (min–max band, mean line); " + s.scanned + " records scanned" +
    (s.truncated ? ", older records beyond the scan limit not included" : "");
}

/* Draws min–max as a band and the mean as a line; x is time, y the value with a 5 % margin. */
function plot(ctx, w, h, s, fromMs, toMs) {
  const left = 56, right = 10, top = 10, bottom = 24;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#667085";
  ctx.strokeStyle = "#d9dee7";
  ctx.strokeRect(left, top, w - left - right, h - top - bottom);
  if (!s.points.length) {
    ctx.fillText("no samples in this range", left + 10, top + 20);
    return;
  }
  let lo = Infinity, hi = -Infinity;
  for (const p of s.points) { lo = Math.min(lo, p.min); hi = Math.max(hi, p.max); }
  if (lo === hi) { lo -= 1; hi += 1; }
  const m = (hi - lo) * 0.05; lo -= m; hi += m;
  const x = (tMs) => left + (tMs - fromMs) / (toMs - fromMs) * (w - left - right);
  const y = (v) => top + (hi - v) / (hi - lo) * (h - top - bottom);
  const bw = Math.max(1, (s.bucket_ns / 1e6) / (toMs - fromMs) * (w - left - right));
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    ctx.fillText(Number(v.toPrecision(4)).toString(), 2, y(v) + 4);
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(w - right, y(v)); ctx.stroke();
  }
  for (let i = 0; i <= 4; i++) {
    const t = fromMs + (toMs - fromMs) * i / 4;
    const d = new Date(t);
    const label = (toMs - fromMs > 2 * 86400e3 ? d.toISOString().slice(5, 10) + " " : "") +
                  d.toISOString().slice(11, 16);
    ctx.fillText(label, Math.min(w - right - 60, x(t)), h - 6);
  }
  ctx.fillStyle = "rgba(31, 95, 191, 0.25)";
  for (const p of s.points) {
    const tMs = p.t / 1e6;
    ctx.fillRect(x(tMs), y(p.max), bw, Math.max(1, y(p.min) - y(p.max)));
  }
  ctx.strokeStyle = "#1f5fbf";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  s.points.forEach((p, i) => {
    const px = x(p.t / 1e6) + bw / 2, py = y(p.mean);
    if (i === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
  });
  ctx.stroke();
  ctx.lineWidth = 1;
  /* A few buckets make no visible line: mark each mean with a dot. */
  if (s.points.length < 20) {
    ctx.fillStyle = "#1f5fbf";
    for (const p of s.points) ctx.fillRect(x(p.t / 1e6) + bw / 2 - 3, y(p.mean) - 3, 6, 6);
  }
}

/* ---- Alerts page ------------------------------------------------------------------------ */

/* Whether an active silence covers an alert (its rule and device match; "" is any). */
function silenceOf(a, silences) {
  return (silences || []).find((s) => s.active && (!s.rule || s.rule === a.rule) &&
                                      (!s.device || s.device === a.device)) || null;
}

const SILENCE_FOR = ["1h", "4h", "24h"];

/* The alerts as a table. opts (Alerts page): silences (active ones mark their alerts), and for
 * operator tokens silence(alert, duration), which adds the "Silence 1h / 4h / 24h" buttons. */
function alertsTable(alerts, withDevice, opts) {
  if (!alerts.length) return el("p", { class: "muted", text: "No alerts." });
  const o = opts || {};
  const sorted = alerts.slice().sort((a, b) => (b.starts_ns || 0) - (a.starts_ns || 0));
  const heads = ["Rule", withDevice ? "Device" : null, "State", "Severity", "Late",
    "Started (device time)", "Ended", "Value", "Labels", o.silences ? "Silenced" : null,
    o.silence ? "" : null].filter((x) => x !== null);
  return el("table", { class: "alerts-table" },
    el("thead", {}, el("tr", {}, ...heads.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...sorted.map((a) => {
      const sil = o.silences ? silenceOf(a, o.silences) : null;
      return el("tr", { "data-rule": a.rule || "", "data-device": a.device || "" },
        el("td", { text: a.rule || "" }),
        withDevice ? el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(a.device || ""),
                                             text: a.device || "" })) : null,
        el("td", { class: "state state-" + a.state, text: a.state || "" }),
        el("td", { text: a.severity || "" }),
        el("td", { text: a.late ? "late" : "" }),
        el("td", { text: isoTime(a.starts_ns) }),
        el("td", { text: a.state === "resolved" ? isoTime(a.ends_ns) : "–" }),
        el("td", { class: "num", text: typeof a.value === "number" ? String(a.value) : "" }),
        el("td", { text: Object.entries(a.labels || {}).map(([k, v]) => k + "=" + v).join(" ") }),
        o.silences ? el("td", { class: sil ? "silenced" : "muted",
                                text: sil ? "until " + isoTime(sil.ends_ns) : "–" }) : null,
        o.silence ? el("td", { class: "nowrap" }, ...SILENCE_FOR.map((f) =>
          el("button", { type: "button", class: "silence-btn small", "data-for": f,
                         title: "Mute the notifications of " + a.rule + " on " + a.device +
                                " for " + f, text: "Silence " + f,
                         onclick: (ev) => o.silence(a, f, ev.target) }))) : null);
    })));
}

/* The stored silences: rule, device, when they end, comment, who; Remove for operators. */
function silencesTable(silences, who, remove) {
  if (!silences.length) return el("p", { class: "muted", id: "silences-none",
                                         text: "No silences." });
  const nowMs = Date.now();
  const sorted = silences.slice().sort((a, b) => (b.active - a.active) || (b.ends_ns - a.ends_ns));
  const op = who && who.operator;
  return el("table", { id: "silences-table" },
    el("thead", {}, el("tr", {}, ...["Rule", "Device", "State", "Started", "Ends", "Comment",
      "By", op ? "" : null].filter((x) => x !== null).map((h) => el("th", { text: h })))),
    el("tbody", {}, ...sorted.map((s) => el("tr", { "data-silence": s.id },
      el("td", { text: s.rule || "any rule" }),
      el("td", {}, s.device ? el("a", { href: "#/device/" + encodeURIComponent(s.device),
                                        text: s.device }) : "any device"),
      el("td", { class: s.active ? "state silenced" : "muted",
                 text: s.active ? "active" : "expired" }),
      el("td", { text: s.starts || "" }),
      el("td", { title: s.ends || "", text: s.active
        ? "in " + duration(s.ends_ns / 1e6 - nowMs) + " (" + (s.ends || "") + ")"
        : s.ends || "" }),
      el("td", { text: s.comment || "" }),
      el("td", { text: s.created_by || "" }),
      op ? el("td", {}, el("button", { type: "button", class: "unsilence small",
                                       text: "Remove", onclick: (ev) => remove(s, ev.target) }))
         : null))));
}

/* The operator's form for a silence not tied to one alert row (a rule, a device or both). */
function silenceForm(onCreate) {
  const rule = el("input", { id: "silence-rule", placeholder: "rule (empty: any)", size: "16",
                             maxlength: "64" });
  const device = el("input", { id: "silence-device", placeholder: "device (empty: any)",
                               size: "20", maxlength: "64" });
  const dur = el("select", { id: "silence-for" }, ...["1h", "4h", "24h", "7d"].map((f) =>
    el("option", { value: f, text: "for " + f })));
  const comment = el("input", { id: "silence-comment", placeholder: "comment", size: "30",
                                maxlength: "1024" });
  const add = el("button", { type: "button", id: "silence-add", text: "Add silence",
    onclick: () => onCreate({ rule: rule.value.trim(), device: device.value.trim(),
                              for: dur.value, comment: comment.value }, add) });
  return el("div", { class: "row", id: "silence-form" }, rule, device, dur, comment, add);
}

const alertsView = { tab: "firing" };

async function pageAlerts(main) {
  const [all, silDoc, who] = await Promise.all([apiJson("/v1/alerts"), apiJson("/v1/silences"),
                                                whoAmI().catch(() => null)]);
  const silences = silDoc.silences || [];
  const reload = () => { if (location.hash.startsWith("#/alerts")) route(); };
  const act = async (button, what, fn) => {
    button.disabled = true;
    try {
      await fn();
      setStatus(what + ": done");
      reload();
    } catch (e) {
      setStatus(String(e.message || e), true);
      button.disabled = false;
    }
  };
  const silence = (a, f, button) => act(button, "silence " + a.rule + " on " + a.device, () =>
    apiPost("/v1/silences", { rule: a.rule, device: a.device, for: f,
                              comment: "from the console" }));
  const remove = (s, button) => act(button, "remove silence " + s.id, () =>
    apiSend("DELETE", "/v1/silences/" + encodeURIComponent(s.id)));
  const create = (body, button) => act(button, "silence", () => apiPost("/v1/silences", body));
  const op = who && who.operator;
  const groups = { firing: all.filter((a) => a.state === "firing"),
                   resolved: all.filter((a) => a.state === "resolved"),
                   late: all.filter((a) => a.late) };
  const holder = el("div", { id: "alerts-list" });
  const tabs = el("div", { class: "row" }, ...Object.keys(groups).map((k) =>
    el("button", { type: "button", id: "tab-" + k, "data-count": String(groups[k].length),
                   class: k === alertsView.tab ? "on" : "", text: k + " (" + groups[k].length + ")",
                   onclick: () => { alertsView.tab = k; show(); } })));
  const show = () => {
    for (const k of Object.keys(groups)) $("tab-" + k).className = k === alertsView.tab ? "on" : "";
    /* Silencing applies to what still fires; resolved alerts only show whether they were. */
    holder.replaceChildren(alertsTable(groups[alertsView.tab], true, {
      silences, silence: op && alertsView.tab !== "resolved" ? silence : null }));
  };
  const active = silences.filter((s) => s.active).length;
  main.replaceChildren(el("h1", { text: "Alerts" }), tabs, holder,
    el("h2", { id: "silences-title", "data-active": String(active),
               text: "Silences (" + active + " active)" }),
    el("p", { class: "muted small", text: "A silence mutes the notifications of the alerts it " +
              "covers; they are still evaluated and listed (docs/alerts.md)." }),
    op ? silenceForm(create)
       : el("p", { class: "muted small", id: "silence-viewer", text: "Token " +
                   ((who && who.name) || "?") + " is a " + ((who && who.role) || "viewer") +
                   ": adding and removing silences need an operator token." }),
    silencesTable(silences, who, remove));
  show();
  setStatus(all.length + " alerts, " + active + " silences active, read " +
            new Date().toLocaleTimeString());
}

/* ---- Rollouts pages ------------------------------------------------------------------------ */

/* Device states of a rollout, in the order of the progress bar, with the bar's colour class. */
const RDEV_STATES = ["committed", "installed", "downloading", "offered", "rolled_back", "failed",
                     "silent", "pending"];

/* A stacked bar of a wave's device counts; each part's title says what it is. */
function waveBar(counts, total) {
  const bar = el("div", { class: "bar", role: "img",
                          "aria-label": RDEV_STATES.map((s) => s + " " + (counts[s] || 0))
                            .join(", ") });
  for (const s of RDEV_STATES) {
    const n = counts[s] || 0;
    if (!n || !total) continue;
    const seg = el("span", { class: "seg seg-" + s, title: s.replace("_", " ") + ": " + n });
    seg.style.width = (100 * n / total).toFixed(2) + "%"; /* CSSOM: allowed by the strict CSP */
    bar.append(seg);
  }
  return bar;
}

function rolloutProgress(r) {
  const waves = r.waves || [];
  return (r.state === "completed" ? waves.length : Math.min((r.wave || 0) + 1, waves.length)) +
    " of " + waves.length;
}

async function pageRollouts(main) {
  const doc = await apiJson("/v1/rollouts");
  const list = doc.rollouts || [];
  const nowMs = Date.now();
  const body = list.length ? el("table", { id: "rollouts-table" },
    el("thead", {}, el("tr", {}, ...["Rollout", "Name", "Class", "Component", "Version", "State",
      "Wave", "Created", "Reason"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...list.map((r) => el("tr", {},
      el("td", {}, el("a", { href: "#/rollout/" + encodeURIComponent(r.id), text: r.id })),
      el("td", { text: r.name || "" }),
      el("td", { text: r.device_class || "" }),
      el("td", { text: r.component || "" }),
      el("td", { text: r.version || "" }),
      el("td", { class: "state rstate-" + r.state, text: r.state || "" }),
      el("td", { text: rolloutProgress(r) }),
      el("td", { title: isoTime(r.created_ns), text: ago(r.created_ns, nowMs) }),
      el("td", { text: r.reason || "" })))))
    : el("p", { class: "muted", text: "No rollouts. Start one with ferry-ingest rollout create " +
                                      "(docs/rollouts.md)." });
  /* The version benchmark of each component that has rollouts (GET /v1/versions/compare). */
  const components = [...new Set(list.map((r) => r.component))].sort();
  const bench = await Promise.all(components.map((c) =>
    apiJson("/v1/versions/compare?component=" + encodeURIComponent(c))
      .catch((e) => ({ component: c, error: String(e.message || e) }))));
  main.replaceChildren(el("h1", { text: "Rollouts" }), body,
    ...bench.map((b) => el("section", { class: "bench" },
      el("h2", { text: "Versions of " + b.component + " in the fleet (last 24 h)" }),
      b.error ? el("p", { class: "error", text: b.error }) : versionsBench(b))));
  setStatus(list.length + " rollouts, read " + new Date().toLocaleTimeString());
}

/* One row per version of a component: each metric's p50 / p95 (and mean for error_logs, the
 * error-log rate per device-hour) over the devices that ran it. */
function versionsBench(b) {
  const metrics = b.metrics || [];
  const versions = b.versions || [];
  if (!versions.length) return el("p", { class: "muted", text: "No device reports a version." });
  return el("table", { class: "versions-bench", "data-component": b.component },
    el("thead", {}, el("tr", {}, el("th", { text: "Version" }), el("th", { class: "num",
      text: "Devices" }), ...metrics.map((m) => el("th", { class: "num",
      text: m === "error_logs" ? "error logs / device-hour (mean)" : m + " p50 / p95" })))),
    el("tbody", {}, ...versions.map((v) => el("tr", {},
      el("td", { text: v.version }),
      el("td", { class: "num", text: String(v.running_devices || 0) }),
      ...metrics.map((m) => {
        const d = (v.metrics || {})[m] || {};
        return el("td", { class: "num", text: m === "error_logs" ? num(d.mean, 2)
                                                                 : num(d.p50, 2) + " / " + num(d.p95, 2) });
      })))));
}

const num = (v, digits) => (typeof v === "number" ? v.toFixed(digits === undefined ? 3 : digits)
                                                  : "–");

function gatesTable(gates) {
  if (!gates || !gates.length) return el("p", { class: "muted small", text: "No gates." });
  return el("table", { class: "gates" },
    el("thead", {}, el("tr", {}, ...["Gate", "Value", "Threshold", "Result"].map((h) =>
      el("th", { text: h })))),
    el("tbody", {}, ...gates.map((g) => el("tr", {},
      el("td", {}, el("code", { text: g.gate || "" })),
      el("td", { class: "num", text: num(g.value) }),
      el("td", { class: "num", text: num(g.threshold) }),
      el("td", { class: g.pass ? "state-resolved state" : "state-firing state",
                 text: (g.pass ? "pass" : "FAIL") + (g.decided ? " (decided)" : " (so far)") })))));
}

/* Whether a difference is larger than the noise (the Mann-Whitney p-value the API gives). */
function verdict(significant, p) {
  if (typeof p !== "number") return el("td", { class: "muted", text: "too few samples" });
  return el("td", { class: significant ? "state state-firing" : "muted",
                    text: (significant ? "differs" : "within noise") + " (p=" + num(p, 3) + ")" });
}

function compareTable(cmp) {
  const rows = (cmp && cmp.metrics) || [];
  if (!rows.length) return el("p", { class: "muted", text: "Nothing to compare yet." });
  const dist = (d) => (d ? num(d.p50) + " / " + num(d.p95) + " (n=" + (d.count || 0) + ")" : "–");
  return el("table", { id: "rollout-compare" },
    el("thead", {}, el("tr", {}, ...["Metric", "Before p50 / p95", "After p50 / p95",
      "Not updated p50 / p95", "Before → after", "After vs not updated"].map((h) =>
      el("th", { text: h })))),
    el("tbody", {}, ...rows.map((m) => m.error
      ? el("tr", {}, el("td", { text: m.metric }), el("td", { colspan: "5", class: "muted",
                                                              text: m.error }))
      : el("tr", {},
        el("td", {}, el("code", { text: m.metric })),
        el("td", { class: "num", text: dist(m.before) }),
        el("td", { class: "num", text: dist(m.after) }),
        el("td", { class: "num", text: dist(m.control) }),
        verdict(m.significant_before_after, m.p_before_after),
        verdict(m.significant_after_control, m.p_after_control)))));
}

/* The before/after comparison of one metric as a small chart (canvas, as the device page's):
 * one row per group (before and after on the updated devices, the devices not updated), a bar
 * from 0 to the p50, a lighter bar on to the p95, the mean as a tick; one scale per metric. */
const COMPARE_GROUPS = [["before", "before"], ["after", "after"], ["control", "not updated"]];

function compareChart(m) {
  const w = 340, h = 118, left = 78, right = 12, top = 20, rowH = 30;
  const canvas = el("canvas", { class: "compare-chart", width: String(w), height: String(h),
                                "data-metric": m.metric, role: "img" });
  const groups = COMPARE_GROUPS.map(([k, label]) => ({ label, d: m[k] || null }));
  const finite = (v) => typeof v === "number" && isFinite(v);
  let lo = 0, hi = 0;
  for (const g of groups)
    for (const v of g.d ? [g.d.p50, g.d.p95, g.d.mean] : [])
      if (finite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  if (hi === lo) hi = lo + 1;
  canvas.setAttribute("aria-label", m.metric + ": " + groups.map((g) => g.label + " p50 " +
    num(g.d && g.d.p50) + " p95 " + num(g.d && g.d.p95)).join(", "));
  for (const [k] of COMPARE_GROUPS) {
    const d = m[k];
    canvas.dataset[k + "P50"] = d && finite(d.p50) ? String(d.p50) : "";
  }
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  canvas.style.width = w + "px"; /* CSSOM: allowed by the strict CSP */
  canvas.style.height = h + "px";
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const x = (v) => left + (v - lo) / (hi - lo) * (w - left - right);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#1d2330";
  ctx.fillText(m.metric, 4, 12);
  ctx.strokeStyle = "#d9dee7";
  ctx.beginPath(); ctx.moveTo(x(0), top - 2); ctx.lineTo(x(0), top + 3 * rowH); ctx.stroke();
  groups.forEach((g, i) => {
    const y = top + i * rowH;
    ctx.fillStyle = "#667085";
    ctx.fillText(g.label, 4, y + 15);
    if (!g.d || !finite(g.d.p50)) { ctx.fillText("no samples", left + 4, y + 15); return; }
    const colour = i === 1 ? "31, 95, 191" : i === 0 ? "102, 112, 133" : "179, 89, 0";
    if (finite(g.d.p95)) {
      ctx.fillStyle = "rgba(" + colour + ", 0.3)";
      ctx.fillRect(Math.min(x(0), x(g.d.p95)), y + 4, Math.abs(x(g.d.p95) - x(0)), 16);
    }
    ctx.fillStyle = "rgba(" + colour + ", 0.9)";
    ctx.fillRect(Math.min(x(0), x(g.d.p50)), y + 4, Math.abs(x(g.d.p50) - x(0)), 16);
    if (finite(g.d.mean)) {
      ctx.fillStyle = "#1d2330";
      ctx.fillRect(x(g.d.mean) - 1, y + 1, 2, 22);
    }
    const label = num(g.d.p50, 2) + " / " + num(g.d.p95, 2) + " (n=" + (g.d.count || 0) + ")";
    ctx.fillStyle = "#1d2330";
    ctx.fillText(label, Math.min(w - right - ctx.measureText(label).width, x(hi) - 4 -
                                 ctx.measureText(label).width), y + 16);
  });
  return canvas;
}

function compareCharts(cmp) {
  const rows = ((cmp && cmp.metrics) || []).filter((m) => !m.error);
  if (!rows.length) return null;
  return el("div", { id: "compare-charts" },
    el("p", { class: "small muted legend", text: "Per metric: p50 (dark bar), p95 (light bar), " +
              "mean (tick) before and after the update on the updated devices and on the " +
              "devices not updated." }),
    el("div", { class: "charts" }, ...rows.map(compareChart)));
}

/* The operator's buttons: only those that apply in the rollout's state, only for a token whose
 * role may change things. The server checks both again. */
function rolloutActions(r, who, reload) {
  if (!who || !who.operator) {
    return el("p", { class: "muted small", id: "rollout-actions",
                     text: "Token " + ((who && who.name) || "?") + " is a " +
                           ((who && who.role) || "viewer") + ": pausing, resuming, promoting " +
                           "and aborting need an operator token." });
  }
  const can = { running: ["pause", "promote", "abort"], paused: ["resume", "promote", "abort"] };
  const ops = can[r.state] || [];
  if (!ops.length) return el("p", { class: "muted small", id: "rollout-actions",
                                    text: "The rollout is " + r.state + ": nothing to do." });
  const out = el("div", { class: "row", id: "rollout-actions" });
  for (const op of ops) {
    out.append(el("button", { type: "button", id: "rollout-" + op,
      class: op === "abort" ? "danger" : "",
      text: op[0].toUpperCase() + op.slice(1),
      onclick: async (ev) => {
        if (op === "abort" && !confirm("Abort rollout " + r.id + "? Devices of its started " +
            "waves are offered the rollback release, if it has one.")) return;
        ev.target.disabled = true;
        try {
          await apiPost("/v1/rollouts/" + encodeURIComponent(r.id) + "/" + op);
          setStatus(op + ": done");
          reload();
        } catch (e) {
          setStatus(String(e.message || e), true);
          ev.target.disabled = false;
        }
      } }));
  }
  return out;
}

async function pageRollout(main, id) {
  const base = "/v1/rollouts/" + encodeURIComponent(id);
  const [r, cmp, who] = await Promise.all([apiJson(base),
    apiJson(base + "/compare").catch((e) => ({ metrics: [], error: String(e.message || e) })),
    whoAmI().catch(() => null)]);
  const reload = () => { if (location.hash === "#/rollout/" + encodeURIComponent(id)) route(); };
  const waves = el("div", { id: "rollout-waves" }, ...(r.wave_status || []).map((w) => {
    const total = w.devices || 0;
    return el("div", { class: "card wave" },
      el("div", { class: "row" },
        el("strong", { text: "Wave " + (w.index + 1) + " (" + w.target + ")" }),
        el("span", { class: "muted", text: w.started ? total + " devices, started " +
                                                        isoTime(w.started_ns) : "not started" })),
      waveBar(w.counts || {}, total),
      el("p", { class: "small muted", text: RDEV_STATES.map((s) =>
        s.replace("_", " ") + " " + ((w.counts || {})[s] || 0)).join(" · ") }),
      w.started ? gatesTable(w.gates) : null);
  }));
  const legend = el("p", { class: "small legend" }, ...RDEV_STATES.map((s) =>
    el("span", {}, el("span", { class: "swatch seg-" + s }), s.replace("_", " "))));
  const devs = (r.devices || []).slice().sort((a, b) => a.wave - b.wave ||
                                                        a.device.localeCompare(b.device));
  const shown = devs.slice(0, 500);
  const devTable = el("table", { id: "rollout-devices" },
    el("thead", {}, el("tr", {}, ...["Device", "Wave", "State", "Since"].map((h) =>
      el("th", { text: h })))),
    el("tbody", {}, ...shown.map((d) => el("tr", {},
      el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(d.device), text: d.device })),
      el("td", { class: "num", text: String(d.wave + 1) }),
      el("td", { class: "state rdev-" + d.state, text: d.state.replace("_", " ") }),
      el("td", { text: isoTime(d.since_ns) })))));
  main.replaceChildren(
    el("h1", {}, "Rollout ", el("code", { text: r.id }), r.name ? " " + r.name : ""),
    el("dl", {},
      el("dt", { text: "Release" }), el("dd", { text: r.component + " " + r.version + " for " +
                                                      r.device_class + " (serial " + r.serial + ")" }),
      el("dt", { text: "State" }), el("dd", { class: "state rstate-" + r.state,
                                             text: r.state + (r.reason ? ": " + r.reason : "") }),
      el("dt", { text: "Wave" }), el("dd", { text: rolloutProgress(r) }),
      el("dt", { text: "Selector" }), el("dd", { text: r.selector || "every device of the class" }),
      el("dt", { text: "On a failed gate" }), el("dd", { text: r.on_fail || "" }),
      el("dt", { text: "Rollback" }), el("dd", { text: r.has_rollback ? r.rollback_version
                                                                       : "none given" }),
      el("dt", { text: "Window" }), el("dd", { text: r.window || "any time" })),
    rolloutActions(r, who, reload),
    el("h2", { text: "Waves" }), legend, waves,
    el("h2", { text: "Before and after" }),
    cmp.error ? el("p", { class: "error", text: cmp.error }) : compareCharts(cmp),
    cmp.error ? null : compareTable(cmp),
    el("h2", { text: "Devices (" + devs.length + (devs.length > shown.length
      ? ", the first " + shown.length + " shown" : "") + ")" }), devTable);
  setStatus("rollout " + r.state + ", read " + new Date().toLocaleTimeString());
}

/* ---- Routing ---------------------------------------------------------------------------- */

let routeSeq = 0;

async function route() {
  const seq = ++routeSeq;
  const hash = location.hash || "#/fleet";
  const main = $("main");
  $("nav-fleet").className = hash.startsWith("#/fleet") ? "active" : "";
  $("nav-alerts").className = hash.startsWith("#/alerts") ? "active" : "";
  $("nav-rollouts").className = hash.startsWith("#/rollout") ? "active" : "";
  try {
    if (hash.startsWith("#/device/")) await pageDevice(main, decodeURIComponent(hash.slice(9)));
    else if (hash.startsWith("#/alerts")) await pageAlerts(main);
    else if (hash.startsWith("#/rollouts")) await pageRollouts(main);
    else if (hash.startsWith("#/rollout/")) await pageRollout(main, decodeURIComponent(hash.slice(10)));
    else await pageFleet(main);
    if (seq === routeSeq) {
      /* Milliseconds from navigation start to the page drawn: console-bench reads it. */
      document.body.dataset.readyMs = performance.now().toFixed(1);
      document.body.dataset.ready = hash;
    }
  } catch (e) {
    if (seq !== routeSeq) return;
    showError(main, e);
    setStatus(e instanceof AuthError ? "token needed" : "error", true);
    document.body.dataset.ready = "error";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupTokenPrompt();
  window.addEventListener("hashchange", route);
  route();
});
