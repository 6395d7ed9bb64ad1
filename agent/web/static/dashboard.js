// edge-agent dashboard: plain JavaScript, no build step. Reads the JSON endpoints, listens to
// the /api/stream server-sent events, draws the series with the vendored uPlot.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const $ = (id) => document.getElementById(id);
  const COOKIE = "edge_token";

  function token() {
    const m = document.cookie.match(/(?:^|; )edge_token=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }
  function headers() {
    const t = token();
    return t ? { "X-Edge-Token": t, "Content-Type": "application/json" } : { "Content-Type": "application/json" };
  }
  async function get(path) {
    const r = await fetch(path, { headers: headers() });
    if (!r.ok) throw new Error(path + ": " + r.status);
    return r.json();
  }
  function time(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : ""; }
  function num(v, d) { return (v === null || v === undefined) ? "" : Number(v).toFixed(d === undefined ? 2 : d); }
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function fill(id, rows, render) {
    const body = $(id).querySelector("tbody");
    body.replaceChildren();
    for (const row of rows) { const tr = document.createElement("tr"); render(tr, row); body.appendChild(tr); }
  }

  // -- overview ---------------------------------------------------------------------------
  function card(k, v, cls) {
    const d = document.createElement("div"); d.className = "card";
    const a = document.createElement("div"); a.className = "k"; a.textContent = k;
    const b = document.createElement("div"); b.className = "v" + (cls ? " " + cls : ""); b.textContent = v;
    d.append(a, b); return d;
  }
  function uptime(s) {
    s = Math.floor(s || 0); const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    return (h ? h + " h " : "") + m + " min " + (s % 60) + " s";
  }
  function groupRows(o) {
    const members = (o.peers && o.peers.members) || {};
    return (o.groups || []).map((g) => [g, (members[g] || []).join(", "), (o.leaders || {})[g] || "none"]);
  }
  function showOverview(o) {
    const cards = $("cards");
    const model = typeof o.model === "object" && o.model ? o.model.file + " (" + o.model.state + ")" : (o.model || "none");
    cards.replaceChildren(
      card("state", o.state, o.state === "online" ? "ok" : "bad"),
      card("uptime", uptime(o.uptime_s)),
      card("broker " + o.broker.address, o.broker.connected ? "connected" : (o.broker.last_error || "disconnected"),
           o.broker.connected ? "ok" : "bad"),
      card("model", model + " · " + o.model_state),
      card("readings/s", num(o.readings_per_s, 1)),
      card("readings stored", o.readings_total),
      card("rejected", o.rejected_total, o.rejected_total ? "warn" : ""),
      card("outbox depth", o.outbox_depth),
      card("ingest queue", o.queue_depth));
    fill("policies", Object.entries(o.policies || {}), (tr, [name, p]) => {
      cell(tr, name); cell(tr, p.engine); cell(tr, p.requested);
      cell(tr, p.accuracy === undefined ? "" : num(p.accuracy, 3));
      const rest = Object.assign({}, p); delete rest.engine; delete rest.requested; delete rest.accuracy;
      cell(tr, JSON.stringify(rest));
    });
    fill("rejections", Object.entries(o.rejected_by_reason || {}), (tr, [k, v]) => { cell(tr, k); cell(tr, v); });
    fill("peer-groups", groupRows(o), (tr, r) => r.forEach((x) => cell(tr, x)));
  }

  // -- series -----------------------------------------------------------------------------
  let plot = null, seriesKey = null, marks = [];
  async function loadSeriesList() {
    const list = await get("/api/series");
    const pick = $("series-pick");
    const had = pick.value;
    pick.replaceChildren();
    for (const s of list) {
      const o = document.createElement("option");
      o.value = s.device + "/" + s.quantity; o.textContent = o.value + (s.band ? "  [" + s.band.join("–") + "]" : "");
      pick.appendChild(o);
    }
    const wanted = new URLSearchParams(location.search).get("series");
    if (wanted && list.some((s) => s.device + "/" + s.quantity === wanted)) pick.value = wanted;
    else if (had) pick.value = had;
    else { const banded = list.find((s) => s.band); if (banded) pick.value = banded.device + "/" + banded.quantity; }
  }
  function drawCommands(u) {
    {
      const ctx = u.ctx; ctx.save(); ctx.strokeStyle = "#6a1b9a"; ctx.lineWidth = 1.5; ctx.fillStyle = "#6a1b9a";
      ctx.font = "11px sans-serif";
      for (const m of marks) {
        const x = Math.round(u.valToPos(m.ts, "x", true));
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
        ctx.fillText(m.action + (m.value === null || m.value === undefined ? "" : " " + m.value), x + 3, u.bbox.top + 12);
      }
      ctx.restore();
    }
  }
  async function loadSeries() {
    if (!$("series-pick").value) await loadSeriesList();
    const key = $("series-pick").value;
    if (!key) return;
    const [device, quantity] = key.split("/");
    const d = await get("/api/series/" + encodeURIComponent(device) + "/" + encodeURIComponent(quantity) +
                        "?window=" + $("series-window").value);
    const xs = d.points.map((p) => p[0]);
    const raw = d.points.map((p) => p[1]), clean = d.points.map((p) => p[2]);
    const out = d.points.map((p) => (p[3] ? p[1] : null));
    const lo = d.band ? xs.map(() => d.band[0]) : xs.map(() => null);
    const hi = d.band ? xs.map(() => d.band[1]) : xs.map(() => null);
    const data = [xs, raw, clean, out, lo, hi];
    $("chart").dataset.points = String(xs.length);
    $("chart").dataset.commands = String(d.commands.length);
    $("chart").dataset.last = xs.length ? String(raw[raw.length - 1]) : "";
    if (plot && seriesKey === key) {
      plot.setData(data);
    } else {
      if (plot) plot.destroy();
      seriesKey = key;
      marks = d.commands;
      plot = new uPlot({
        width: Math.min(1080, window.innerWidth - 40), height: 320,
        scales: { x: { time: true } },
        plugins: [{ hooks: { draw: [drawCommands] } }],
        series: [{},
          { label: "raw", stroke: "#90a4ae", width: 1 },
          { label: "clean", stroke: "#00796b", width: 2 },
          { label: "outlier", stroke: "#c62828", width: 0, points: { show: true, size: 7, fill: "#c62828" } },
          { label: "band low", stroke: "#1565c0", dash: [6, 4], width: 1 },
          { label: "band high", stroke: "#1565c0", dash: [6, 4], width: 1 }],
      }, data, $("chart"));
    }
    marks = d.commands;
    plot.redraw(false);
    fill("features", d.features, (tr, f) => {
      cell(tr, f.window_s + " s"); cell(tr, f.count); cell(tr, num(f.mean)); cell(tr, num(f.min));
      cell(tr, num(f.max)); cell(tr, num(f.std, 3)); cell(tr, num(f.slope_per_min, 3));
      cell(tr, num(f.last)); cell(tr, num(f.age_s, 1) + " s");
    });
  }

  // -- decisions --------------------------------------------------------------------------
  let auditLast = -1;
  const opened = new Set();  // rows kept open across the live refreshes
  async function loadDecisions() {
    const q = new URLSearchParams(new FormData($("filters")));
    const rows = await get("/api/decisions?" + q.toString());
    const body = $("decisions").querySelector("tbody");
    body.replaceChildren();
    for (const r of rows) {
      const tr = document.createElement("tr"); tr.className = "row"; tr.dataset.id = r.decision_id;
      cell(tr, time(r.ts)); cell(tr, r.policy); cell(tr, r.engine); cell(tr, r.source);
      cell(tr, r.action); cell(tr, r.value); cell(tr, r.verdict, r.verdict === "ok" ? "ok" : "warn");
      cell(tr, r.command_id || "");
      const detail = document.createElement("tr"); detail.className = "detail"; detail.hidden = true;
      const td = cell(detail, ""); td.colSpan = 8;
      td.textContent = "digest: " + r.digest + "\nscores: " + JSON.stringify(r.scores) +
        "\nsafety verdict: " + r.verdict + "\nmodel: " + (r.model_sha256 || "") +
        (r.raw_output ? "\nmodel output: " + r.raw_output : "") +
        "\ncommand: " + (r.command ? JSON.stringify(r.command, null, 1) : "none");
      detail.hidden = !opened.has(r.decision_id);
      tr.addEventListener("click", () => {
        detail.hidden = !detail.hidden;
        if (detail.hidden) opened.delete(r.decision_id); else opened.add(r.decision_id);
      });
      body.append(tr, detail);
    }
  }

  // -- health -----------------------------------------------------------------------------
  async function label(kind, key, what) {
    const r = await fetch("/api/health/" + encodeURIComponent(kind) + "/" + key + "/" + what,
                          { method: "POST", headers: headers() });
    const body = await r.json();
    $("health-note").textContent = body.ok ? what + " recorded for " + key : (body.error || r.status);
    loadHealth();
  }
  async function loadHealth() {
    const h = await get("/api/health");
    if (!h.enabled) $("health-note").textContent = "fault diagnosis is off in this agent's configuration (diagnosis.enabled)";
    fill("health", h.items, (tr, x) => {
      cell(tr, x.kind); cell(tr, x.key); cell(tr, x.state, x.state === "ok" ? "ok" : x.state === "faulty" ? "bad" : "warn");
      cell(tr, x.fault); cell(tr, time(x.since)); cell(tr, num(x.confidence)); cell(tr, x.explanation);
      const td = cell(tr, "");
      if (h.labels && x.kind === "sensor" && x.state !== "ok") {
        for (const what of ["confirm", "dismiss"]) {
          const b = document.createElement("button"); b.textContent = what;
          b.addEventListener("click", () => label(x.kind, x.key, what)); td.appendChild(b);
        }
      }
    });
  }

  // -- intents ----------------------------------------------------------------------------
  async function sendIntent(ev) {
    ev.preventDefault();
    const text = $("intent-text").value.trim();
    if (!text) return;
    $("intent-reply").textContent = "…";
    const r = await fetch("/api/intents", { method: "POST", headers: headers(), body: JSON.stringify({ text }) });
    const body = await r.json();
    $("intent-reply").textContent = r.status === 403 ? "acting needs the token: open the page with it once" :
      JSON.stringify(body, null, 2);
    $("intent-reply").dataset.ok = String(!!body.ok);
  }

  // -- peers and learning -----------------------------------------------------------------
  async function loadPeers() {
    const p = await get("/api/peers");
    const members = (p.peers && p.peers.members) || {};
    fill("groups", p.groups.map((g) => [g, (members[g] || []).join(", "), p.leaders[g] || "none"]),
         (tr, r) => r.forEach((x) => cell(tr, x)));
    fill("group-decisions", p.group_decisions, (tr, r) => {
      cell(tr, time(r.ts)); cell(tr, r.policy); cell(tr, r.action); cell(tr, r.value);
      cell(tr, JSON.stringify(r.scores)); cell(tr, r.verdict);
    });
    fill("federation", Object.entries(p.federation || {}), (tr, [name, f]) => {
      cell(tr, name); cell(tr, f.group); cell(tr, f.role); cell(tr, f.session); cell(tr, f.round);
      cell(tr, f.stage); cell(tr, f.answered); cell(tr, f.adopted);
    });
    fill("heads", Object.entries(p.policies || {}), (tr, [name, s]) => {
      cell(tr, name); cell(tr, s.engine);
      const rest = Object.assign({}, s); delete rest.engine; cell(tr, JSON.stringify(rest));
    });
  }

  // -- wiring -----------------------------------------------------------------------------
  const loaders = { series: loadSeries, decisions: loadDecisions, health: loadHealth, peers: loadPeers };
  let busy = false;
  async function refresh(o) {
    if (page === "overview") { showOverview(o); return; }
    if (page === "decisions" && o.audit_last === auditLast) return;
    auditLast = o.audit_last;
    const fn = loaders[page];
    if (!fn || busy) return;
    busy = true;
    try { await fn(); } catch (e) { console.warn("dashboard:", e); $("live").textContent = String(e); } finally { busy = false; }
  }
  function stream() {
    const es = new EventSource("/api/stream");
    es.addEventListener("overview", (ev) => {
      const o = JSON.parse(ev.data);
      $("live").textContent = "live · " + new Date().toLocaleTimeString();
      refresh(o);
    });
    es.onerror = () => { $("live").textContent = "reconnecting…"; };
    // a browser keeps few connections to one host: never leave a stream open behind a page
    window.addEventListener("pagehide", () => es.close());
  }
  async function start() {
    const access = await (await fetch("/api/access", { headers: headers() })).json();
    if (!access.read) {
      $("login").hidden = false;
      $("login-form").addEventListener("submit", (ev) => {
        ev.preventDefault();
        document.cookie = COOKIE + "=" + encodeURIComponent($("token").value.trim()) + "; path=/; samesite=strict; max-age=31536000";
        location.reload();
      });
      if (token()) $("login-error").textContent = "that token is not this agent's";
      $("live").textContent = "no token";
      return;
    }
    $("content").hidden = false;
    if (page === "series") {
      await loadSeriesList();
      $("series-pick").addEventListener("change", loadSeries);
      $("series-window").addEventListener("change", loadSeries);
      await loadSeries();
    }
    if (page === "decisions") {
      $("filters").addEventListener("input", loadDecisions);
      $("filters").addEventListener("submit", (ev) => ev.preventDefault());
    }
    if (page === "intents") {
      $("intent-form").addEventListener("submit", sendIntent);
      $("intent-note").textContent = access.write ? "requests go through the agent's intent queue and safety layer, like the MQTT intents topic" :
        "read-only: acting needs the token (open the page once with ?token=…)";
    }
    stream();
  }
  start();
})();
