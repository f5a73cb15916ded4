// floorwatch console: plain JavaScript, no build step. Views by URL hash: #/ (fleet),
// #/device/ID, #/models, #/dead-letters. The alert feed on the right follows /api/alerts/stream (SSE).
"use strict";
const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const num = (v, d = 4) => (v === null || v === undefined ? "" : Number(v).toPrecision(d));
const age = (s) => (s === null || s === undefined ? "" : s < 90 ? `${s.toFixed(0)} s` : s < 5400 ? `${(s / 60).toFixed(0)} min` : `${(s / 3600).toFixed(1)} h`);
const getJSON = async (url) => { const r = await fetch(url); if (!r.ok) throw new Error(`${url}: ${r.status}`); return r.json(); };

const fleet = { page: 0, size: 50, sort: "state", dir: "desc", state: "", q: "" };
let refreshTimer = null;

// --- alert feed ---------------------------------------------------------------------------------
function feedItem(a, fresh) {
  const li = document.createElement("li");
  if (fresh) li.className = "fresh";
  li.dataset.device = a.device;
  const what = a.state === "closed" ? `closed${a.close_reason ? " (" + esc(a.close_reason) + ")" : ""}` : a.state === "update" ? "escalated" : "opened";
  li.innerHTML = `<span class="state ${esc(a.severity)}">${esc(a.severity)}</span> <a href="#/device/${encodeURIComponent(a.device)}">${esc(a.device)}</a> ${what}
    <div class="muted">${esc(a.at)} · ${esc(a.top_feature || "")} · peak ${num(a.peak_ratio, 3)} · ${esc(a.model)}</div>`;
  return li;
}
async function startFeed() {
  const feed = $("#feed");
  try {
    for (const a of await getJSON("/api/alerts?count=100")) feed.appendChild(feedItem(a, false));
  } catch (e) { $("#live").textContent = "unavailable"; }
  const source = new EventSource("/api/alerts/stream");
  source.onopen = () => { $("#live").textContent = "live"; };
  source.onerror = () => { $("#live").textContent = "reconnecting"; };
  source.onmessage = (event) => {
    const a = JSON.parse(event.data);
    feed.insertBefore(feedItem(a, true), feed.firstChild);
    while (feed.children.length > 300) feed.removeChild(feed.lastChild);
    const view = currentView();
    if (view.name === "device" && view.arg === a.device) showDevice(a.device);
    if (view.name === "fleet") soonFleet();
  };
}

// --- fleet --------------------------------------------------------------------------------------
function fleetView() {
  $("#view").innerHTML = `
    <div class="controls">
      <input id="q" placeholder="search device, group, model" value="${esc(fleet.q)}">
      <select id="state"><option value="">all states</option><option>anomalous</option><option>offline</option><option>normal</option></select>
      <button id="prev">‹</button><span id="pageinfo"></span><button id="next">›</button>
    </div>
    <table id="fleet"><thead><tr>
      <th data-sort="device">device</th><th data-sort="state">state</th><th data-sort="ratio">score / line</th>
      <th data-sort="score">score</th><th>line</th><th data-sort="age">age</th><th data-sort="group">group</th><th data-sort="model">model</th>
    </tr></thead><tbody></tbody></table>`;
  $("#state").value = fleet.state;
  let typing = null;
  $("#q").oninput = (e) => { clearTimeout(typing); typing = setTimeout(() => { fleet.q = e.target.value; fleet.page = 0; loadFleet(); }, 250); };
  $("#state").onchange = (e) => { fleet.state = e.target.value; fleet.page = 0; loadFleet(); };
  $("#prev").onclick = () => { fleet.page = Math.max(0, fleet.page - 1); loadFleet(); };
  $("#next").onclick = () => { fleet.page += 1; loadFleet(); };
  for (const th of document.querySelectorAll("th[data-sort]")) {
    th.onclick = () => { const s = th.dataset.sort; fleet.dir = fleet.sort === s && fleet.dir === "desc" ? "asc" : "desc"; fleet.sort = s; loadFleet(); };
  }
  loadFleet();
  refreshTimer = setInterval(loadFleet, 2000);
}
// An alert storm must not become a request storm: one fleet reload at most every 500 ms for alerts.
let fleetSoon = null;
function soonFleet() { if (!fleetSoon) fleetSoon = setTimeout(() => { fleetSoon = null; loadFleet(); }, 500); }
async function loadFleet() {
  const p = new URLSearchParams({ page: fleet.page, size: fleet.size, sort: fleet.sort, dir: fleet.dir, state: fleet.state, q: fleet.q });
  const data = await getJSON(`/api/fleet?${p}`);
  const pages = Math.max(1, Math.ceil(data.total / data.size));
  if (fleet.page >= pages) { fleet.page = pages - 1; }
  $("#counts").textContent = `${data.counts.normal} normal · ${data.counts.anomalous} anomalous · ${data.counts.offline} offline`;
  const info = $("#pageinfo");
  if (!info) return;
  info.textContent = `${data.total} devices · page ${data.page + 1} of ${pages}`;
  $("#fleet tbody").innerHTML = data.rows.map((r) => {
    const ratio = r.ratio ?? 0;
    const state = r.state === "anomalous" && r.severity ? `anomalous <span class="state ${esc(r.severity)}">${esc(r.severity)}</span>` : esc(r.state);
    return `<tr data-device="${esc(r.device)}"><td><a href="#/device/${encodeURIComponent(r.device)}">${esc(r.device)}</a></td>
      <td><span class="state ${esc(r.state)}">${state}</span></td>
      <td class="num"><span class="bar ${ratio > 1 ? "over" : ""}" style="width:${Math.min(ratio, 2) * 40}px"></span> ${num(r.ratio, 3)}</td>
      <td class="num">${num(r.score)}</td><td class="num">${num(r.line)}</td><td class="num">${age(r.age_s)}</td>
      <td>${esc(r.group)}</td><td>${esc(r.model)}</td></tr>`;
  }).join("");
  // For scripts/console_timing.py: when the table was first drawn, on the page's own clock.
  if (data.rows.length && !performance.getEntriesByName("fleet-rendered").length) performance.mark("fleet-rendered");
}

// --- device -------------------------------------------------------------------------------------
let deviceLoading = false, deviceAgain = false;
async function showDevice(device) {
  // One load at a time; an alert during a load loads again after it rather than being missed.
  if (deviceLoading) { deviceAgain = true; return; }
  deviceLoading = true;
  try {
    const d = await getJSON(`/api/device/${encodeURIComponent(device)}`);
    const row = d.row || {};
    const episodes = d.episodes.map((e) => `<li><span class="state ${esc(e.severity)}">${esc(e.severity)}</span> ${esc(e.start)} → ${esc(e.end || "open")}${e.close_reason ? " (" + esc(e.close_reason) + ")" : ""}</li>`).join("");
    $("#view").innerHTML = `<h2 id="device-name">${esc(device)} <span class="state ${esc(row.state)}" id="device-state">${esc(row.state || "unknown")}${row.severity ? " " + esc(row.severity) : ""}</span></h2>
      <div class="muted">model ${esc(row.model)} · group ${esc(row.group)} · last reading ${esc(row.last_reading)} (${age(row.age_s)} ago) · ${d.points.length} history points</div>
      <div id="score" class="chart"></div><div id="sensors"></div>
      <h3>Episodes</h3><ul id="episodes">${episodes || "<li class=muted>none</li>"}</ul>`;
    if (!d.points.length) { $("#score").innerHTML = "<p class=muted>no score history yet</p>"; return; }
    const xs = d.points.map((p) => p.ts);
    const spans = d.episodes.map((e) => [Date.parse(e.start) / 1000, e.end ? Date.parse(e.end) / 1000 : xs[xs.length - 1]]);
    const shade = (u) => {
      const ctx = u.ctx; ctx.save(); ctx.fillStyle = "rgba(230,60,60,0.15)";
      for (const [a, b] of spans) {
        const x0 = u.valToPos(a, "x", true), x1 = u.valToPos(b, "x", true);
        ctx.fillRect(x0, u.bbox.top, Math.max(2, x1 - x0), u.bbox.height);
      }
      ctx.restore();
    };
    const width = Math.max(400, $("#view").clientWidth - 30);
    new uPlot({ title: "score and line", width, height: 220, hooks: { drawClear: [shade] },
      series: [{}, { label: "score", stroke: "#36c" }, { label: "line", stroke: "#d33", dash: [6, 4] }] },
      [xs, d.points.map((p) => p.score), d.points.map((p) => p.line)], $("#score"));
    for (const f of d.features) {
      const div = document.createElement("div"); div.className = "chart"; $("#sensors").appendChild(div);
      new uPlot({ title: f, width, height: 120, hooks: { drawClear: [shade] }, legend: { show: false },
        series: [{}, { label: f, stroke: "#555" }] }, [xs, d.points.map((p) => p.values[f])], div);
    }
    $("#score").dataset.episodes = spans.length;  // what scripts/console_timing.py waits for: the shading drawn
  } finally {
    deviceLoading = false;
    if (deviceAgain) { deviceAgain = false; const v = currentView(); if (v.name === "device") showDevice(v.arg); }
  }
}

// --- models and dead letters --------------------------------------------------------------------
async function showModels() {
  const m = await getJSON("/api/models");
  const prec = (v) => { const p = m.precision[v]; return p ? `${p.confirmed}/${p.confirmed + p.false_alarms} confirmed${p.precision !== null ? " (" + p.precision.toFixed(2) + ")" : ""}` : ""; };
  let html = "";
  for (const g of m.groups) {
    html += `<h2>${esc(g.group)}</h2><table><tr><th>version</th><th></th><th>created</th><th>detector</th><th>features</th><th>p99 normal score</th><th>normal windows over line</th><th>calibration</th><th>precision (feedback)</th></tr>` +
      g.versions.map((v) => `<tr><td>${esc(v.version)}</td><td>${v.current ? "<b>current</b>" : v.shadow ? "shadow" : ""}</td><td>${esc(v.created_at)}</td><td>${esc(v.detector)}</td>
        <td>${esc(v.features.join(", "))}</td><td class="num">${num(v.validation_p99)}</td><td class="num">${num(v.over_threshold, 3)}</td>
        <td><pre>${esc(JSON.stringify(v.calibration))}</pre></td><td>${esc(prec(g.group === "default" ? v.version : g.group + "/" + v.version))}</td></tr>`).join("") + "</table>";
    const figs = Object.entries(m.figures[g.group] || {});
    html += figs.length ? "<h3>Drift</h3><table><tr><th>figure</th><th>value</th><th>limit</th><th>model</th></tr>" +
      figs.map(([k, f]) => `<tr><td>${esc(k)}</td><td class="num">${num(f.value)}</td><td class="num">${esc(f.limit)}</td><td>${esc(f.model_version)}</td></tr>`).join("") + "</table>"
      : "<p class=muted>no drift figures yet (workers write them once a minute of readings)</p>";
  }
  html += "<h3>Model-health events</h3><ul>" + (m.events.map((e) => `<li>${esc(e.at)} ${esc(e.kind)}: ${esc(e.message)}</li>`).join("") || "<li class=muted>none</li>") + "</ul>";
  $("#view").innerHTML = html || "<p class=muted>no models in the store</p>";
}
async function showDeadLetters() {
  $("#view").innerHTML = "<p class=muted>reading the dead-letter topic…</p>";
  const d = await getJSON("/api/dead-letters");
  $("#view").innerHTML = (d.error ? `<p>${esc(d.error)}</p>` : "") + `<h2>Recent dead letters</h2><table id="letters"><tr><th>when</th><th>key</th><th>reason</th><th>size</th><th>from</th><th>original</th></tr>` +
    d.letters.map((l) => `<tr><td>${esc(l.at)}</td><td>${esc(l.key)}</td><td style="white-space:normal">${esc(l.reason)}</td><td class="num">${l.size}</td><td>${esc(l.source)}</td><td><pre>${esc(l.preview)}</pre></td></tr>`).join("") + "</table>";
}

// --- routing ------------------------------------------------------------------------------------
function currentView() {
  const h = location.hash.replace(/^#\/?/, "");
  if (h.startsWith("device/")) return { name: "device", arg: decodeURIComponent(h.slice(7)) };
  return { name: h || "fleet" };
}
function route() {
  clearInterval(refreshTimer);
  const v = currentView();
  if (v.name === "device") { showDevice(v.arg); refreshTimer = setInterval(() => showDevice(v.arg), 5000); }
  else if (v.name === "models") showModels();
  else if (v.name === "dead-letters") showDeadLetters();
  else fleetView();
}
window.addEventListener("hashchange", route);
route();
startFeed();
