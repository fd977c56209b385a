/*
 * app.js - the ferry fleet console (docs/console.md): five pages on the public JSON API.
 *
 *   #/fleet           every device, its state, counts by state/class/version, filter and search
 *   #/device/<id>     one device: metric charts (/v1/series), logs (/v1/export), updates, alerts
 *   #/alerts          firing, resolved and late alerts (/v1/alerts)
 *   #/rollouts        every rollout with its state and progress (/v1/rollouts)
 *   #/rollout/<id>    one rollout: waves, gates, devices, before/after comparison, and the
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
/* Rows added to the fleet table per step: the first step renders at once, the rest as the user
 * scrolls, so 10,000 devices cost a few hundred DOM rows until someone looks at them. */
const ROW_CHUNK = 200;
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

/* A change (POST) with the token; answers the parsed JSON or throws with the server's message. */
async function apiPost(path) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const r = await fetch(path, { method: "POST", headers, cache: "no-store" });
  const text = await r.text();
  let doc = null;
  try { doc = JSON.parse(text); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status + ": " + ((doc && doc.error) || text));
  return doc;
}

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

const fleet = { rows: [], filtered: [], shown: 0, observer: null, filter: { q: "", state: "",
  cls: "", version: "" } };

async function pageFleet(main) {
  const [devs, firing] = await Promise.all([apiJson("/v1/devices"),
                                            apiJson("/v1/alerts?state=firing")]);
  const tReceived = performance.now();
  const nowMs = Date.now();
  const firingByDevice = new Map();
  for (const a of firing) firingByDevice.set(a.device, (firingByDevice.get(a.device) || 0) + 1);
  fleet.rows = devs.devices.map((d) => {
    const state = deviceState(d, firingByDevice, nowMs);
    const versions = versionsText(d.versions);
    return { d, state, versions, alerts: firingByDevice.get(d.id) || 0, backlog: backlogOf(d),
             search: (d.id + " " + d.name + " " + d.device_class + " " + versions + " " + state)
                       .toLowerCase() };
  });

  const tRows = performance.now();
  const byState = new Map(), byClass = new Map(), byVersion = new Map();
  const bump = (m, k) => m.set(k, (m.get(k) || 0) + 1);
  for (const r of fleet.rows) {
    bump(byState, r.state);
    bump(byClass, r.d.device_class || "(none)");
    for (const [k, v] of Object.entries(r.d.versions || {})) bump(byVersion, k + ":" + v);
  }

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
  const search = el("input", { id: "search", type: "search", placeholder: "Search id, name, class, version",
                               size: "36" });
  search.addEventListener("input", () => { fleet.filter.q = search.value; applyFilter(); });
  const sel = (key, m, label) => {
    const s = el("select", { id: "filter-" + key }, ...options(m, label));
    s.addEventListener("change", () => { fleet.filter[key] = s.value; applyFilter(); });
    return s;
  };
  const clear = el("button", { type: "button", id: "filter-clear", text: "Clear", onclick: () => {
    fleet.filter = { q: "", state: "", cls: "", version: "" };
    search.value = "";
    for (const k of ["state", "cls", "version"]) $("filter-" + k).value = "";
    applyFilter();
  } });

  const table = el("table", { id: "fleet-table" },
    el("thead", {}, el("tr", {},
      ...["Device", "Name", "Class", "State", "Last seen", "Backlog", "Versions", "Alerts"].map(
        (h, i) => el("th", { class: i === 5 || i === 7 ? "num" : "", text: h })))),
    el("tbody", { id: "fleet-body" }));
  const sentinel = el("div", { id: "fleet-more", class: "muted small" });

  main.replaceChildren(
    el("h1", { text: "Fleet" }), counts,
    chips("Classes", byClass, "cls"), chips("Versions", byVersion, "version"),
    el("div", { class: "row" }, search, sel("state", byState, "any state"),
       sel("cls", byClass, "any class"), sel("version", byVersion, "any version"), clear,
       el("span", { class: "muted" }, el("span", { id: "fleet-matching", text: "0" }),
          " of ", String(fleet.rows.length), " devices match")),
    table, sentinel);
  search.value = fleet.filter.q;
  for (const k of ["state", "cls", "version"]) $("filter-" + k).value = fleet.filter[k];

  if (fleet.observer) fleet.observer.disconnect();
  fleet.observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) renderMoreRows();
  });
  fleet.observer.observe(sentinel);
  applyFilter();
  /* Where the page's time went (console-bench reads it): list parsed, rows built, drawn. */
  document.body.dataset.fleetTimes = JSON.stringify({ received: tReceived, rows: tRows,
                                                      drawn: performance.now() });
  setStatus(fleet.rows.length + " devices, read " + new Date(nowMs).toLocaleTimeString());
}

function applyFilter() {
  const f = fleet.filter, q = f.q.trim().toLowerCase();
  const words = q ? q.split(/\s+/) : [];
  fleet.filtered = fleet.rows.filter((r) =>
    (!f.state || r.state === f.state) &&
    (!f.cls || (r.d.device_class || "(none)") === f.cls) &&
    (!f.version || Object.entries(r.d.versions || {}).some(([k, v]) => k + ":" + v === f.version)) &&
    words.every((w) => r.search.includes(w)));
  $("fleet-matching").textContent = String(fleet.filtered.length);
  $("fleet-body").replaceChildren();
  fleet.shown = 0;
  renderMoreRows();
}

function renderMoreRows() {
  const body = $("fleet-body");
  if (!body) return;
  const nowMs = Date.now();
  const frag = document.createDocumentFragment();
  const end = Math.min(fleet.filtered.length, fleet.shown + ROW_CHUNK);
  for (let i = fleet.shown; i < end; i++) {
    const r = fleet.filtered[i], d = r.d;
    let stateText = r.state;
    if (r.state === "offline") stateText = "offline " + duration(nowMs - d.last_seen_ns / 1e6);
    frag.append(el("tr", { "data-device": d.id },
      el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(d.id), text: d.id })),
      el("td", { text: d.name }), el("td", { text: d.device_class }),
      el("td", { class: "state state-" + r.state, text: stateText }),
      el("td", { title: isoTime(d.last_seen_ns), text: ago(d.last_seen_ns, nowMs) }),
      el("td", { class: "num", text: String(r.backlog) }),
      el("td", { text: r.versions }),
      el("td", { class: "num" + (r.alerts ? " state-alerting" : ""), text: String(r.alerts) })));
  }
  body.append(frag);
  fleet.shown = end;
  $("fleet-more").textContent = fleet.shown < fleet.filtered.length
    ? "Showing " + fleet.shown + " of " + fleet.filtered.length + " — scroll for more" : "";
}

/* ---- Device page ------------------------------------------------------------------------ */

const devicePage = { id: "", metric: "", range: "hour" };

async function pageDevice(main, id) {
  if (devicePage.id !== id) Object.assign(devicePage, { id, metric: "", range: "hour" });
  const enc = encodeURIComponent(id);
  const [d, alerts, firing] = await Promise.all([
    apiJson("/v1/devices/" + enc), apiJson("/v1/alerts?device=" + enc),
    apiJson("/v1/alerts?state=firing&device=" + enc)]);
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
       el("div", {}, streams, el("h2", { text: "Updates" }), updTable)),
    el("h2", { text: "Metrics" }),
    el("div", { class: "row" }, metricSel, rangeButtons), canvas, chartNote,
    el("h2", { text: "Alerts" }), alertsTable(alerts, false),
    el("h2", { text: "Recent logs" }), el("div", { class: "row" }, levelSel, logText), logs);

  /* The metric names come from the device's newest metric records. */
  const mseq = (d.streams && d.streams.metric && d.streams.metric.max_seq) || 0;
  const recent = mseq ? await apiNdjson("/v1/export?device=" + enc + "&stream=metric&after_seq=" +
                                        Math.max(0, mseq - 500) + "&limit=500") : [];
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

function alertsTable(alerts, withDevice) {
  if (!alerts.length) return el("p", { class: "muted", text: "No alerts." });
  const sorted = alerts.slice().sort((a, b) => (b.starts_ns || 0) - (a.starts_ns || 0));
  return el("table", { class: "alerts-table" },
    el("thead", {}, el("tr", {}, ...["Rule", withDevice ? "Device" : null, "State", "Severity",
      "Late", "Started (device time)", "Ended", "Value", "Labels"].filter((x) => x !== null)
      .map((h) => el("th", { text: h })))),
    el("tbody", {}, ...sorted.map((a) => el("tr", {},
      el("td", { text: a.rule || "" }),
      withDevice ? el("td", {}, el("a", { href: "#/device/" + encodeURIComponent(a.device || ""),
                                           text: a.device || "" })) : null,
      el("td", { class: "state state-" + a.state, text: a.state || "" }),
      el("td", { text: a.severity || "" }),
      el("td", { text: a.late ? "late" : "" }),
      el("td", { text: isoTime(a.starts_ns) }),
      el("td", { text: a.state === "resolved" ? isoTime(a.ends_ns) : "–" }),
      el("td", { class: "num", text: typeof a.value === "number" ? String(a.value) : "" }),
      el("td", { text: Object.entries(a.labels || {}).map(([k, v]) => k + "=" + v).join(" ") })))));
}

const alertsView = { tab: "firing" };

async function pageAlerts(main) {
  const all = await apiJson("/v1/alerts");
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
    holder.replaceChildren(alertsTable(groups[alertsView.tab], true));
  };
  main.replaceChildren(el("h1", { text: "Alerts" }), tabs, holder);
  show();
  setStatus(all.length + " alerts, read " + new Date().toLocaleTimeString());
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
  main.replaceChildren(el("h1", { text: "Rollouts" }), body);
  setStatus(list.length + " rollouts, read " + new Date().toLocaleTimeString());
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
    cmp.error ? el("p", { class: "error", text: cmp.error }) : compareTable(cmp),
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
