// Edgewise dashboard: a hash-routed page over the controller's REST API, refreshed by polling.
// Pages: #/ fleet overview, #/devices/ID, #/models, #/models/NAME[/VERSION] (with the version's
// feature drift), #/rollouts, #/rollouts/ID, #/experiments[/ID], #/enrollments (pending enrollment
// requests, approved or rejected with an admin token).
// Everything from the API is inserted as text (never as HTML).
"use strict";

(function () {
  const API = "/api/v1";
  const REFRESH_MS = 5000;
  const COLORS = { blue: "#2563eb", green: "#16a34a", red: "#dc2626", amber: "#d97706",
    violet: "#7c3aed", teal: "#0d9488", gray: "#94a3b8", pink: "#db2777" };
  const PALETTE = [COLORS.blue, COLORS.teal, COLORS.violet, COLORS.amber, COLORS.pink, COLORS.green];
  const WINDOWS = [[300, "5 min"], [900, "15 min"], [3600, "1 hour"], [21600, "6 hours"], [86400, "24 hours"]];
  const DRIFT_LINE = 0.1;  // PSI; docs/monitoring.md argues for 0.1 at n >= 500

  const state = {
    token: sessionStorage.getItem("edgewise-token") || "",
    paused: false,
    page: null,
    window: Number(sessionStorage.getItem("edgewise-window")) || 3600,
    groupBy: sessionStorage.getItem("edgewise-group") || "site",
    fleet: { limit: 25, offset: 0, q: "", online: "", model: "", selector: "" },
  };

  // -- helpers -------------------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  const fmt = {
    int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
    pct: (v, digits = 1) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(digits)}%`),
    ms: (v) => (v === null || v === undefined ? "–" : v < 10 ? `${v.toFixed(2)} ms` : `${v.toFixed(0)} ms`),
    psi: (v) => (v === null || v === undefined ? "–" : v.toFixed(3)),
    version: (m, v) => (m ? `${m}:${v}` : "–"),
    time(ts) {
      if (!ts) return "–";
      const d = new Date(ts * 1000), p = (n) => String(n).padStart(2, "0");
      return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    },
    bytes: (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`),
    ago(ts) {
      if (!ts) return "never";
      const s = Math.max(0, Date.now() / 1000 - ts);
      if (s < 90) return `${Math.round(s)}s ago`;
      if (s < 5400) return `${Math.round(s / 60)}m ago`;
      if (s < 129600) return `${Math.round(s / 3600)}h ago`;
      return `${Math.round(s / 86400)}d ago`;
    },
    span(seconds) {
      const w = WINDOWS.find((x) => x[0] === seconds);
      if (w) return w[1];
      if (seconds < 60) return `${Math.round(seconds)} s`;
      if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
      return `${Math.round(seconds / 3600)} h`;
    },
  };

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, params) {
    const url = new URL(API + path, window.location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== "" && v !== null && v !== undefined) url.searchParams.set(k, v);
    }
    const headers = { Accept: "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "the controller cannot be reached");
    }
    if (response.status === 401 || response.status === 403) {
      showAuth(response.status === 403 ? "That token may not read here." : "This controller needs a token to show its views.");
      throw new ApiError(response.status, "a token is needed");
    }
    let body = null;
    try { body = await response.json(); } catch (err) { body = null; }
    if (!response.ok) {
      const detail = body && body.detail ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) : response.statusText;
      throw new ApiError(response.status, detail);
    }
    return { body, total: Number(response.headers.get("X-Total-Count")) };
  }

  // A change (POST) with the tab's token; the controller records the token's identity as the
  // audit actor. A read token is refused (403): the message says an admin token is needed.
  async function send(path, body) {
    const headers = { Accept: "application/json", "Content-Type": "application/json" };
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    let response;
    try {
      response = await fetch(API + path, { method: "POST", headers, body: JSON.stringify(body || {}), cache: "no-store" });
    } catch (err) {
      throw new ApiError(0, "the controller cannot be reached");
    }
    let answer = null;
    try { answer = await response.json(); } catch (err) { answer = null; }
    if (response.status === 401 || response.status === 403) {
      showAuth("Approving and rejecting need an admin token.");
      throw new ApiError(response.status, "this needs an admin token");
    }
    if (!response.ok) {
      const detail = answer && answer.detail ? (typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail)) : response.statusText;
      throw new ApiError(response.status, detail);
    }
    return answer;
  }

  function pill(text, kind) { return h("span", { class: `pill ${kind || ""}`, text }); }
  function statePill(s) {
    const kind = { active: "ok", failed: "bad", rolled_back: "warn", downloading: "busy", verifying: "busy", staged: "busy", activating: "busy", probation: "busy", rolling_back: "busy" }[s] || "";
    return pill(s || "unknown", kind);
  }
  function presencePill(online, seen) {
    return online ? pill("online", "ok") : pill(seen === false ? "never seen" : "offline", "bad");
  }
  function card(title, attrs, ...children) {
    return h("section", { class: `card ${attrs.class || ""}`, id: attrs.id, "data-testid": attrs.testid },
      title ? h("header", { class: "card-head" }, h("h2", { text: title }), attrs.tools || null) : null,
      h("div", { class: "card-body" }, ...children));
  }
  function kpi(label, value, note, kind, testid) {
    return h("div", { class: `kpi ${kind || ""}`, "data-testid": testid },
      h("div", { class: "kpi-label", text: label }), h("div", { class: "kpi-value", text: value }),
      note ? h("div", { class: "kpi-note", text: note }) : null);
  }
  // The fleet's drift tile. Its figure is the worst group's PSI, a distance; an alert comes
  // from a sequential test with a stated false-alarm rate (docs/monitoring.md), so a high PSI
  // with no drift alert is not yet proven drift: the note says which of the two it is.
  function driftKpi(o) {
    const fig = o.figures;
    if (!o.drift_available) return kpi("Drift", "–", "no metrics windows yet", "", "kpi-drift");
    const firing = o.alerts.available ? o.alerts.firing.filter((a) => a.kind === "drift").length : null;
    const drifting = fig.drifting ? `${fmt.int(fig.drifting)} devices drifting` : "";
    let note;
    if (firing === null) note = drifting || "worst group PSI";
    else if (firing) note = `worst group PSI · ${fmt.int(firing)} drift alert${firing === 1 ? "" : "s"} firing`;
    else note = `worst group PSI, not alerting${drifting ? ` (${drifting})` : ""}`;
    const tile = kpi("Drift", fmt.psi(fig.drift_psi), note, firing ? "bad" : "", "kpi-drift");
    tile.title = "PSI measures how far the inputs moved from the reference profile. A drift " +
      "alert fires only when a sequential test, with a stated false-alarm rate, has enough " +
      "evidence (docs/monitoring.md).";
    return tile;
  }
  // "12 accuracy · 5 drift": the firing alerts by kind, most first
  function alertKinds(firing) {
    const counts = {};
    for (const a of firing) counts[a.kind] = (counts[a.kind] || 0) + 1;
    return Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([kind, n]) => `${fmt.int(n)} ${kind}`).join(" · ");
  }
  function table(head, rows, opts) {
    opts = opts || {};
    return h("table", { class: `grid ${opts.class || ""}`, "data-testid": opts.testid },
      h("thead", {}, h("tr", {}, head.map((c) => (Array.isArray(c) ? h("th", { class: c[1], text: c[0] }) : h("th", { text: c }))))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "muted", colspan: head.length, text: opts.empty || "Nothing to show." }))));
  }
  function td(content, cls) {
    return h("td", { class: cls }, content === null || content === undefined ? "–" : content);
  }
  function link(href, text) { return h("a", { href, text }); }
  function meter(value, total, kind) {
    const bar = h("span", { class: `meter-fill ${kind || ""}` });
    bar.style.width = total ? `${Math.max(0, Math.min(100, (value / total) * 100))}%` : "0%";
    return h("span", { class: "meter" }, bar);
  }
  function fill(el, ...children) { el.textContent = ""; for (const c of children.flat()) if (c) el.appendChild(c); }
  function notAvailable(text) { return h("p", { class: "muted not-available", text }); }
  function windowPicker(onChange) {
    const box = h("div", { class: "segmented", role: "group", "aria-label": "time range" });
    for (const [s, label] of WINDOWS) {
      box.appendChild(h("button", {
        class: s === state.window ? "on" : "", type: "button", text: label, "data-window": s,
        onclick: () => {
          state.window = s;
          sessionStorage.setItem("edgewise-window", String(s));
          for (const b of box.children) b.classList.toggle("on", Number(b.dataset.window) === s);
          onChange().catch(() => {});
        },
      }));
    }
    return box;
  }
  function series(points, key) { return points.map((p) => [p.ts, p[key]]); }

  // -- live status and auth --------------------------------------------------------------------

  function setLive(ok, text) {
    const el = document.getElementById("live");
    el.className = `live ${ok ? "ok" : "bad"}${state.paused ? " paused" : ""}`;
    document.getElementById("live-text").textContent = text;
  }

  function showAuth(message) {
    const bar = document.getElementById("auth");
    document.getElementById("auth-message").textContent = message;
    bar.hidden = false;
  }

  function setupChrome() {
    document.getElementById("pause").addEventListener("click", (ev) => {
      state.paused = !state.paused;
      ev.target.textContent = state.paused ? "Resume" : "Pause";
      setLive(true, state.paused ? "paused" : "live");
    });
    document.getElementById("auth-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.token = document.getElementById("auth-token").value.trim();
      sessionStorage.setItem("edgewise-token", state.token);
      document.getElementById("auth").hidden = true;
      route();
    });
    window.addEventListener("hashchange", route);
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => state.page && state.page.refresh().catch(() => {}), 250);
    });
    setInterval(() => {
      if (!state.paused && !document.hidden && state.page) state.page.refresh().catch(() => {});
    }, REFRESH_MS);
  }

  async function guarded(fn) {
    try {
      await fn();
      setLive(true, `live · updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 0) setLive(false, "controller unreachable, retrying");
      else if (err instanceof ApiError && (err.status === 401 || err.status === 403)) setLive(false, "token needed");
      else { setLive(false, "error"); console.error(err); throw err; }
    }
  }

  // -- fleet overview --------------------------------------------------------------------------

  function fleetPage(root) {
    const kpis = h("div", { class: "kpis", "data-testid": "fleet-kpis" });
    const activity = h("div", { class: "chart-slot", "data-testid": "fleet-activity" });
    const accuracy = h("div", { class: "chart-slot" });
    const versions = h("div", { "data-testid": "versions-in-use" });
    const groups = h("div", {});
    const alerts = h("div", { "data-testid": "alerts" });
    const devices = h("div", { "data-testid": "device-table" });
    const groupSelect = h("select", { "aria-label": "group by", onchange: (ev) => {
      state.groupBy = ev.target.value; sessionStorage.setItem("edgewise-group", state.groupBy); refresh();
    } });
    const f = state.fleet;
    const search = h("input", { type: "search", placeholder: "device id…", value: f.q, "aria-label": "search devices" });
    const online = h("select", { "aria-label": "presence" }, h("option", { value: "", text: "all devices" }),
      h("option", { value: "true", text: "online" }), h("option", { value: "false", text: "offline" }));
    online.value = f.online;
    const modelFilter = h("select", { "aria-label": "model" }, h("option", { value: "", text: "any model" }));
    const selector = h("input", { type: "text", placeholder: "selector, e.g. site=berlin", value: f.selector, class: "wide", "aria-label": "label selector" });
    const filterError = h("span", { class: "error-text" });
    let debounce = null;
    const refilter = () => { f.offset = 0; clearTimeout(debounce); debounce = setTimeout(loadDevices, 250); };
    search.addEventListener("input", () => { f.q = search.value.trim(); refilter(); });
    online.addEventListener("change", () => { f.online = online.value; refilter(); });
    modelFilter.addEventListener("change", () => { f.model = modelFilter.value; refilter(); });
    selector.addEventListener("change", () => { f.selector = selector.value.trim(); refilter(); });
    const pager = h("div", { class: "pager" });

    fill(root,
      h("div", { class: "page-head" }, h("h1", { text: "Fleet" }), windowPicker(refresh)),
      kpis,
      h("div", { class: "row" },
        card("Activity", { class: "span-2" }, activity),
        card("Accuracy", { class: "span-1" }, accuracy),
        card("Versions in use", { class: "span-1" }, versions)),
      h("div", { class: "row" },
        card("Health by group", { class: "span-3", tools: h("label", { class: "tool" }, "group by ", groupSelect) }, groups),
        card("Alerts", { class: "span-1" }, alerts)),
      card("Devices", { tools: h("div", { class: "filters" }, search, online, modelFilter, selector, filterError) }, devices, pager));

    async function loadDevices() {
      let page;
      try {
        page = await api("/fleet/devices", { limit: f.limit, offset: f.offset, q: f.q, online: f.online, model: f.model, selector: f.selector });
        filterError.textContent = "";
      } catch (err) {
        if (err instanceof ApiError && err.status === 422) { filterError.textContent = err.message; return; }
        throw err;
      }
      const { items, total } = page.body;
      // the page's devices' newest health windows; a controller without device health: none
      const health = items.length ? await api("/health/devices", { ids: items.map((d) => d.device_id).join(","), alerts: false })
        .then((r) => r.body.devices).catch((err) => { if (err instanceof ApiError && err.status === 404) return {}; throw err; }) : {};
      const showHealth = Object.keys(health).length > 0;
      const healthCells = (w) => w ? [
        td(w.rss_bytes === null ? "–" : fmt.bytes(w.rss_bytes), "num"),
        td(w.cpu_percent === null ? "–" : `${w.cpu_percent.toFixed(1)}%`, "num"),
        td(w.temp_c === null ? "–" : `${w.temp_c.toFixed(0)} °C`, "num"),
        td(w.disk_free_bytes === null || !w.disk_total_bytes ? "–" : fmt.pct(w.disk_free_bytes / w.disk_total_bytes, 0), "num")]
        : [td("–", "num"), td("–", "num"), td("–", "num"), td("–", "num")];
      const rows = items.map((d) => h("tr", {},
        td(link(`#/devices/${encodeURIComponent(d.device_id)}`, d.device_id), "mono"),
        td(presencePill(d.online)), td(d.device_class, "mono"), td(fmt.version(d.active_model, d.active_version), "mono"),
        td(statePill(d.state)), td(fmt.ago(d.last_seen)),
        td(Object.entries(d.labels || {}).map(([k, v]) => h("span", { class: "chip", text: `${k}=${v}` }))),
        td(fmt.int(d.predictions), "num"), td(fmt.pct(d.accuracy), "num"),
        ...(showHealth ? healthCells(health[d.device_id]) : [])));
      const healthHead = showHealth ? [["Memory", "num"], ["CPU", "num"], ["Temp", "num"], ["Disk free", "num"]] : [];
      fill(devices, table(["Device", "Status", "Class", "Model", "State", "Last seen", "Labels", ["Predictions", "num"], ["Accuracy", "num"], ...healthHead], rows,
        { testid: "devices", empty: total ? "No device on this page." : "No devices match." }));
      const last = Math.min(f.offset + items.length, total);
      fill(pager,
        h("span", { class: "muted", text: total ? `${fmt.int(f.offset + 1)}–${fmt.int(last)} of ${fmt.int(total)} devices` : "0 devices" }),
        h("button", { type: "button", text: "‹ Prev", disabled: f.offset === 0, onclick: () => { f.offset = Math.max(0, f.offset - f.limit); loadDevices(); } }),
        h("button", { type: "button", text: "Next ›", disabled: last >= total, onclick: () => { f.offset += f.limit; loadDevices(); } }));
    }

    async function refresh() {
      await guarded(async () => {
        const [ov, fs] = await Promise.all([
          api("/fleet/overview", { window: state.window, group_by: state.groupBy }),
          api("/fleet/series", { window: state.window, buckets: 60 }),
        ]);
        const o = ov.body, s = fs.body;
        const fig = o.figures;
        fill(kpis,
          kpi("Devices", fmt.int(o.devices), `${Object.keys(o.states).length ? Object.entries(o.states).map(([k, v]) => `${v} ${k}`).join(" · ") : "none yet"}`, "", "kpi-devices"),
          (() => { const k = kpi("Online", fmt.int(o.online), `${fmt.int(o.offline)} offline`, o.offline ? "" : "ok", "kpi-online");
            const d = h("div", { class: "kpi-donut" }); k.appendChild(d);
            EwCharts.donut(d, { parts: [{ value: o.online, color: COLORS.green }, { value: o.offline, color: COLORS.red }] }); return k; })(),
          kpi("Versions in use", fmt.int(o.versions.length), o.versions.map((v) => `${v.model}:${v.version}`).join(", ") || "no model running", "", "kpi-versions"),
          kpi(`Predictions · ${fmt.span(o.window_s)}`, fmt.int(fig.predictions), `${fmt.int(fig.errors)} errors`, ""),
          kpi("Accuracy", fmt.pct(fig.accuracy), `on ${fmt.int(fig.labelled)} labels`, ""),
          kpi("Latency", fmt.ms(fig.mean_latency_ms), "mean per prediction", ""),
          driftKpi(o),
          kpi("Alerts", o.alerts.available ? fmt.int(o.alerts.count) : "–", o.alerts.available ? (o.alerts.count ? alertKinds(o.alerts.firing) : "none firing") : "not available", o.alerts.count ? "bad" : "ok", "kpi-alerts"));

        EwCharts.bars(activity, { start: s.start, end: s.end, bucket: s.bucket_s, height: 200, yFormat: (v) => fmt.int(v),
          series: [{ name: "predictions", color: COLORS.blue, points: series(s.points, "predictions") },
            { name: "errors", color: COLORS.red, points: series(s.points, "errors") }],
          empty: "No predictions in this time range yet." });
        EwCharts.line(accuracy, { start: s.start, end: s.end, height: 200, yMin: 0, yMax: 1, yFormat: (v) => fmt.pct(v, 0), left: 40,
          series: [{ name: "accuracy", color: COLORS.green, points: series(s.points, "accuracy"), area: true }],
          empty: "No labels came back in this time range." });

        const most = Math.max(1, ...o.versions.map((v) => v.devices));
        fill(versions, o.versions.length ? h("ul", { class: "hbars" }, o.versions.map((v, i) => h("li", {},
          h("div", { class: "hbar-label" }, link(`#/models/${encodeURIComponent(v.model)}/${v.version}`, `${v.model}:${v.version}`),
            h("span", { class: "muted", text: `${fmt.int(v.devices)} devices · ${fmt.int(v.online)} online` })),
          (() => { const b = h("div", { class: "hbar" }); const fillEl = h("span", {}); fillEl.style.width = `${(v.devices / most) * 100}%`;
            fillEl.style.background = PALETTE[i % PALETTE.length]; b.appendChild(fillEl); return b; })()))) : notAvailable("No device runs a model yet."));

        groupSelect.textContent = "";
        for (const key of new Set([state.groupBy, ...o.label_keys])) groupSelect.appendChild(h("option", { value: key, text: key }));
        groupSelect.value = state.groupBy;
        fill(groups, table(["Group", ["Devices", "num"], "Online", "Versions", ["Predictions", "num"], ["Accuracy", "num"], ["Latency", "num"], ["Drift (PSI)", "num"], ["Failed", "num"]],
          o.groups.map((g) => h("tr", {},
            td(g.group || h("span", { class: "muted", text: `(no ${o.group_by})` })),
            td(fmt.int(g.devices), "num"),
            td(h("span", { class: "meter-cell" }, meter(g.online, g.devices, g.offline ? "warn" : "ok"), ` ${g.online}/${g.devices}`)),
            td(Object.entries(g.versions).map(([v, n]) => h("span", { class: "chip", text: `${v} ×${n}` }))),
            td(fmt.int(g.predictions), "num"), td(fmt.pct(g.accuracy), "num"), td(fmt.ms(g.mean_latency_ms), "num"),
            td(g.drift_psi === null ? "–" : h("span", { class: g.drifting ? "bad-text" : "", text: fmt.psi(g.drift_psi) + (g.drifting ? ` · ${g.drifting} drifting` : "") }), "num"),
            td(g.failed ? h("span", { class: "bad-text", text: String(g.failed) }) : "0", "num"))),
          { testid: "groups", empty: "No devices yet." }));

        if (!o.alerts.available) fill(alerts, notAvailable("Alerts are not available on this controller."));
        else if (!o.alerts.firing.length) fill(alerts, h("p", { class: "all-clear", text: "✓ No alerts firing." }));
        else fill(alerts, h("ul", { class: "alerts" }, o.alerts.firing.slice(0, 12).map((a) => h("li", {},
          pill(a.kind, "bad"), " ", link(`#/devices/${encodeURIComponent(a.device_id)}`, a.device_id),
          a.acked_by ? [" ", pill(`acked by ${a.acked_by}`, "ok")] : null,
          a.silenced_by && a.silenced_by.length ? [" ", pill("silenced", "warn")] : null,
          h("div", { class: "muted small", text: `${a.detail || ""} ${a.since ? "since " + fmt.ago(a.since) : ""}` })))),
          o.alerts.firing.length > 12 ? h("p", { class: "muted", text: `and ${o.alerts.firing.length - 12} more` }) : null);

        const models = [...new Set(o.versions.map((v) => v.model))];
        const current = modelFilter.value;
        fill(modelFilter, h("option", { value: "", text: "any model" }),
          ...o.versions.map((v) => h("option", { value: `${v.model}:${v.version}`, text: `${v.model}:${v.version}` })),
          ...models.map((m) => h("option", { value: m, text: `${m} (any version)` })));
        modelFilter.value = current;
        await loadDevices();
      });
    }
    return { refresh };
  }

  // -- device page -----------------------------------------------------------------------------

  function devicePage(root, deviceId) {
    const head = h("div", { class: "device-head" });
    const kpis = h("div", { class: "kpis" });
    const latency = h("div", { class: "chart-slot", "data-testid": "latency-chart" });
    const accuracy = h("div", { class: "chart-slot", "data-testid": "accuracy-chart" });
    const drift = h("div", { class: "chart-slot", "data-testid": "drift-chart" });
    const volume = h("div", { class: "chart-slot", "data-testid": "volume-chart" });
    const history = h("div", {});
    const errors = h("div", {});
    // device health: resources over time, health alerts, what each model version cost here
    const memory = h("div", { class: "chart-slot", "data-testid": "health-memory-chart" });
    const cpu = h("div", { class: "chart-slot", "data-testid": "health-cpu-chart" });
    const temperature = h("div", { class: "chart-slot", "data-testid": "health-temp-chart" });
    const disk = h("div", { class: "chart-slot", "data-testid": "health-disk-chart" });
    const healthFacts = h("div", { "data-testid": "health-facts" });
    const costs = h("div", { "data-testid": "health-costs" });
    const logs = h("div", { "data-testid": "device-logs" });
    const logsButton = h("button", { type: "button", class: "button", text: "Fetch recent logs", "data-testid": "fetch-logs" });
    logsButton.addEventListener("click", () => fetchLogs());
    fill(root,
      h("div", { class: "page-head" }, h("div", { class: "crumbs" }, link("#/", "Fleet"), " / ", h("span", { text: deviceId })), windowPicker(refresh)),
      head, kpis,
      h("div", { class: "row" }, card("Latency", { class: "span-2" }, latency), card("Accuracy", { class: "span-2" }, accuracy)),
      h("div", { class: "row" }, card("Drift (PSI, worst feature or prediction)", { class: "span-2" }, drift), card("Predictions and errors", { class: "span-2" }, volume)),
      h("div", { class: "row" }, card("Version history", { class: "span-2", testid: "history" }, history), card("Last errors", { class: "span-2" }, errors)),
      h("div", { class: "row" }, card("Agent memory (resident)", { class: "span-2" }, memory), card("Agent CPU", { class: "span-2" }, cpu)),
      h("div", { class: "row" }, card("Temperature (hottest zone)", { class: "span-2" }, temperature), card("Disk free (data directory)", { class: "span-2" }, disk)),
      h("div", { class: "row" }, card("Device health", { class: "span-2", testid: "device-health" }, healthFacts), card("Model cost per version, on this device", { class: "span-2" }, costs)),
      h("div", { class: "row" }, card("Recent log lines (asked from the device over MQTT)", { class: "span-4" }, logsButton, logs)));

    async function fetchLogs() {
      await guarded(async () => {
        try {
          const r = (await api(`/devices/${encodeURIComponent(deviceId)}/logs`, { since: 3600, max_lines: 50, timeout: 5 })).body;
          fill(logs, table(["When", "Level", "Logger", "Message"], r.lines.slice().reverse().map((l) => h("tr", {},
            td(fmt.time(l.ts)), td(pill(l.level, l.level === "WARNING" ? "busy" : "bad")), td(l.logger, "mono small"), td(l.message))),
            { empty: "No warnings or errors in the last hour. ✓" }));
        } catch (err) {
          if (err instanceof ApiError && err.status === 409) { fill(logs, notAvailable(err.message)); return; }
          throw err;
        }
      });
    }

    function showHealth(view, start, end) {
      const ws = view.windows;
      const pts = (key, scale) => ws.map((w) => [w.window_end, w[key] === null ? null : w[key] / (scale || 1)]);
      const MIB = 1048576;
      EwCharts.line(memory, { start, end, yMin: 0, yFormat: (v) => `${v.toFixed(0)} MiB`, left: 64, series: [
        { name: "RSS", color: COLORS.blue, points: pts("rss_bytes", MIB), area: true },
        { name: "peak", color: COLORS.violet, points: pts("rss_max_bytes", MIB), dashed: true }],
        empty: "No health windows in this range (agents from before device health send none)." });
      EwCharts.line(cpu, { start, end, yMin: 0, yMinSpan: 5, yFormat: (v) => `${v.toFixed(0)}%`, series: [
        { name: "CPU", color: COLORS.teal, points: pts("cpu_percent"), area: true },
        { name: "load ×100", color: COLORS.gray, points: ws.map((w) => [w.window_end, w.load1 === null ? null : w.load1 * 100]), dashed: true }],
        empty: "No health windows in this range." });
      const hot = view.thresholds ? view.thresholds.temp_c : 80;
      EwCharts.line(temperature, { start, end, yMinSpan: 10, yFormat: (v) => `${v.toFixed(0)} °C`, series: [
        { name: "temperature", color: COLORS.amber, points: pts("temp_c"), area: true }],
        thresholds: [{ value: hot, label: `${hot} °C` }],
        empty: "This board reports no temperature." });
      EwCharts.line(disk, { start, end, yMin: 0, yMax: 1, yFormat: (v) => fmt.pct(v, 0), series: [
        { name: "free", color: COLORS.green, points: ws.map((w) => [w.window_end, w.disk_free_bytes === null || !w.disk_total_bytes ? null : w.disk_free_bytes / w.disk_total_bytes]), area: true }],
        empty: "No disk figures in this range." });
      const l = view.latest;
      fill(healthFacts,
        l ? h("dl", { class: "facts" },
          h("dt", { text: "Newest window" }), h("dd", { text: `${fmt.time(l.window_end)} · ${l.samples} samples` }),
          h("dt", { text: "Memory available" }), h("dd", { text: l.mem_available_bytes === null ? "–" : fmt.bytes(l.mem_available_bytes) }),
          h("dt", { text: "Load" }), h("dd", { text: l.load1 === null ? "–" : l.load1.toFixed(2) }),
          h("dt", { text: "Link" }), h("dd", { text: `${l.reconnects || 0} reconnects · broker RTT ${fmt.ms(l.rtt_ms)} · outbox backlog ${fmt.int(l.outbox_backlog)}` }),
          l.throttled ? h("dt", { text: "Throttling" }) : null, l.throttled ? h("dd", { class: "bad-text", text: `get_throttled 0x${l.throttled.toString(16)}` }) : null,
          l.rejected ? h("dt", { text: "Left out" }) : null, l.rejected ? h("dd", { class: "muted", text: l.rejected }) : null) : notAvailable("No health windows in this range."),
        view.alerts.length ? h("ul", { class: "health-alerts", "data-testid": "health-alerts" }, view.alerts.map((a) => h("li", {}, pill(a.kind, "bad"), " ", a.explanation)))
          : h("p", { class: "muted", "data-testid": "health-alerts", text: "No health alerts. ✓" }));
      fill(costs, table(["Version", "Session memory", "CPU / prediction", "Peak RSS", "Predictions"], view.versions.map((v) => h("tr", {},
        td(fmt.version(v.model, v.version), "mono"), td(v.session_bytes === null ? "–" : fmt.bytes(v.session_bytes)),
        td(v.cpu_ms_per_prediction === null ? "–" : fmt.ms(v.cpu_ms_per_prediction)), td(v.peak_rss_bytes === null ? "–" : fmt.bytes(v.peak_rss_bytes)),
        td(fmt.int(v.predictions)))), { empty: "No model served in this range." }));
    }

    async function refresh() {
      await guarded(async () => {
        let dev;
        try {
          dev = (await api(`/devices/${encodeURIComponent(deviceId)}`)).body;
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) { fill(root, card("Device not found", {}, notAvailable(err.message))); return; }
          throw err;
        }
        const [se, hi, er, he] = await Promise.all([
          api(`/devices/${encodeURIComponent(deviceId)}/series`, { window: state.window, buckets: 60 }),
          api(`/devices/${encodeURIComponent(deviceId)}/history`, { limit: 50 }),
          api(`/devices/${encodeURIComponent(deviceId)}/errors`, { limit: 20 }),
          // a controller from before device health has no such view: the panel says so
          api(`/devices/${encodeURIComponent(deviceId)}/health`, { window: Math.max(60, state.window) }).catch((err) => {
            if (err instanceof ApiError && err.status === 404) return null;
            throw err;
          }),
        ]);
        const s = se.body, pts = s.points;
        fill(head,
          h("div", { class: "device-title" }, h("h1", { text: dev.device_id }), presencePill(dev.online, dev.seen), statePill(dev.state)),
          h("dl", { class: "facts" },
            h("dt", { text: "Runs" }), h("dd", { class: "mono" }, dev.active_model ? link(`#/models/${encodeURIComponent(dev.active_model)}`, fmt.version(dev.active_model, dev.active_version)) : "–"),
            h("dt", { text: "Desired" }), h("dd", { class: "mono", text: fmt.version(dev.desired_model, dev.desired_version) }),
            // the agent's standby slot (verified, not active yet) and its previous slot
            dev.staged_model ? h("dt", { text: "Staged" }) : null,
            dev.staged_model ? h("dd", { "data-testid": "staged-slot" }, h("span", { class: "mono", text: fmt.version(dev.staged_model, dev.staged_version) }), h("span", { class: "muted", text: "(verified, waiting to activate)" })) : null,
            dev.previous_model ? h("dt", { text: "Previous slot" }) : null,
            dev.previous_model ? h("dd", { "data-testid": "previous-slot" }, h("span", { class: "mono", text: fmt.version(dev.previous_model, dev.previous_version) }), h("span", { class: "muted", text: "(instant rollback)" })) : null,
            h("dt", { text: "Last seen" }), h("dd", { text: fmt.ago(dev.last_seen) }),
            h("dt", { text: "Agent" }), h("dd", { text: dev.agent_version || "–" }),
            h("dt", { text: "Labels" }), h("dd", {}, Object.entries(dev.labels || {}).map(([k, v]) => h("span", { class: "chip", text: `${k}=${v}` }))),
            dev.last_error ? h("dt", { text: "Last error" }) : null, dev.last_error ? h("dd", { class: "bad-text", text: dev.last_error }) : null));
        const sum = (k) => pts.reduce((a, p) => a + (p[k] || 0), 0);
        const labelled = sum("labelled");
        const hits = pts.reduce((a, p) => a + (p.accuracy === null ? 0 : p.accuracy * p.labelled), 0);
        const latN = pts.filter((p) => p.mean_latency_ms !== null);
        const meanLat = latN.length ? latN.reduce((a, p) => a + p.mean_latency_ms * p.predictions, 0) / Math.max(1, latN.reduce((a, p) => a + p.predictions, 0)) : null;
        const p95 = pts.filter((p) => p.p95_latency_ms !== null).map((p) => p.p95_latency_ms);
        const psi = pts.filter((p) => p.drift_psi !== null).map((p) => p.drift_psi);
        const worst = psi.length ? Math.max(...psi) : null;
        fill(kpis,
          kpi(`Predictions · ${fmt.span(state.window)}`, fmt.int(sum("predictions")), `${fmt.int(dev.predictions)} all time`),
          kpi("Accuracy", fmt.pct(labelled ? hits / labelled : null), `${fmt.int(labelled)} labelled`),
          kpi("Latency", fmt.ms(meanLat), p95.length ? `p95 up to ${fmt.ms(Math.max(...p95))}` : "mean per prediction"),
          kpi("Drift", s.drift_available ? fmt.psi(worst) : "–", s.drift_available ? "worst PSI in range" : "no metrics windows yet", worst !== null && worst > DRIFT_LINE ? "bad" : ""),
          kpi("Errors", fmt.int(sum("errors")), `${fmt.int(dev.dropped_total)} records dropped`, sum("errors") ? "bad" : ""));
        EwCharts.line(latency, { start: s.start, end: s.end, yMin: 0, yFormat: (v) => fmt.ms(v), left: 58, series: [
          { name: "mean", color: COLORS.blue, points: series(pts, "mean_latency_ms"), area: true },
          { name: "p95", color: COLORS.violet, points: series(pts, "p95_latency_ms") },
          { name: "max", color: COLORS.gray, points: series(pts, "max_latency_ms"), dashed: true }],
          empty: "No predictions in this time range." });
        EwCharts.line(accuracy, { start: s.start, end: s.end, yMin: 0, yMax: 1, yFormat: (v) => fmt.pct(v, 0), series: [
          { name: "accuracy", color: COLORS.green, points: series(pts, "accuracy"), area: true }],
          empty: "No labels came back in this time range." });
        EwCharts.line(drift, { start: s.start, end: s.end, yMin: 0, yMinSpan: 0.15, yFormat: (v) => v.toFixed(2), series: [
          { name: "PSI", color: COLORS.amber, points: series(pts, "drift_psi"), area: true }],
          thresholds: [{ value: DRIFT_LINE, label: `PSI ${DRIFT_LINE}` }],
          empty: s.drift_available ? "No drift figure in this range (too few rows per window)." : "No drift figures yet: the agent sends them with each metrics window." });
        EwCharts.bars(volume, { start: s.start, end: s.end, bucket: s.bucket_s, yFormat: (v) => fmt.int(v), series: [
          { name: "predictions", color: COLORS.blue, points: series(pts, "predictions") },
          { name: "errors", color: COLORS.red, points: series(pts, "errors") }],
          empty: "No predictions in this time range." });
        if (he) showHealth(he.body, s.start, s.end);
        else fill(healthFacts, notAvailable("This controller does not keep device health."));
        fill(history, table(["When", "State", "Runs", "Target", "Deployment", "Error"], hi.body.map((e) => h("tr", {},
          td(fmt.time(e.ts)), td(statePill(e.state)), td(fmt.version(e.model, e.version), "mono"),
          td(fmt.version(e.target_model, e.target_version), "mono"), td(e.deployment_id, "mono small"),
          td(e.error ? h("span", { class: "bad-text", text: e.error }) : "–"))), { empty: "No state changes recorded yet." }));
        fill(errors, table(["When", "Source", "Model", "Message"], er.body.map((e) => h("tr", {},
          td(fmt.time(e.ts)), td(pill(e.source, e.source === "update" ? "bad" : "busy")), td(fmt.version(e.model, e.version), "mono"),
          td(e.message))), { empty: "No errors. ✓" }));
      });
    }
    return { refresh };
  }

  // -- models ----------------------------------------------------------------------------------

  function modelsPage(root) {
    const list = h("div", {});
    fill(root, h("div", { class: "page-head" }, h("h1", { text: "Models" })), card("Registered models", {}, list));
    async function refresh() {
      await guarded(async () => {
        const r = await api("/models", { limit: 200 });
        fill(list, table(["Model", "Task", ["Versions", "num"], ["Latest", "num"], "Registered"], r.body.map((m) => h("tr", {},
          td(link(`#/models/${encodeURIComponent(m.name)}`, m.name), "mono"), td(m.task), td(fmt.int(m.versions), "num"),
          td(m.latest_version, "num"), td(fmt.time(m.created_at)))), { empty: "No model registered yet: `edgewise models push`." }));
      });
    }
    return { refresh };
  }

  function modelPage(root, name, wantedVersion) {
    const versions = h("div", { "data-testid": "model-versions" });
    const estimateNote = h("div", {});
    const placement = h("div", {});
    const drift = featureDrift(name, wantedVersion);
    // the label-free estimate with its interval; "–" without calibrated probabilities
    const estimate = (f) => (typeof f.estimated_accuracy !== "number" ? "–"
      : fmt.pct(f.estimated_accuracy) + (Array.isArray(f.estimated_accuracy_ci)
        ? ` (${fmt.pct(f.estimated_accuracy_ci[0], 0)}–${fmt.pct(f.estimated_accuracy_ci[1], 0)})` : ""));
    fill(root, h("div", { class: "page-head" }, h("div", { class: "crumbs" }, link("#/models", "Models"), " / ", h("span", { text: name })), windowPicker(refresh)),
      card("Versions and conversion parity", {}, versions, estimateNote),
      card("Feature drift across the fleet", { testid: "feature-drift", tools: drift.tools }, drift.body),
      card("Where each version runs", {}, placement));
    async function refresh() {
      await guarded(async () => {
        let s;
        try { s = (await api(`/models/${encodeURIComponent(name)}/summary`, { window: state.window, group_by: state.groupBy })).body; }
        catch (err) {
          if (err instanceof ApiError && err.status === 404) { fill(root, card("Model not found", {}, notAvailable(err.message))); return; }
          throw err;
        }
        drift.setVersions(s.versions.map((v) => v.version));
        await drift.refresh();
        fill(versions, table(["Version", "Format", ["Size", "num"], "SHA-256", "Registered", ["Parity max |Δ|", "num"], ["Label agreement", "num"], ["Accuracy at conversion", "num"], ["Sample rows", "num"], "Source", [`Predictions · ${fmt.span(state.window)}`, "num"], ["Accuracy", "num"], ["Est. accuracy, no labels", "num"], ["Log loss", "num"], ["Drift", "num"]],
          s.versions.slice().reverse().map((v) => h("tr", {},
            td(h("strong", { text: `v${v.version}` })), td(v.device_class ? `${v.format} for ${v.device_class}` : v.format), td(fmt.bytes(v.size), "num"), td(v.sha256.slice(0, 12), "mono"),
            td(fmt.time(v.created_at)),
            td(typeof v.parity.max_abs_diff === "number" ? v.parity.max_abs_diff.toExponential(1) : "–", "num"),
            td(typeof v.parity.label_agreement === "number" ? fmt.pct(v.parity.label_agreement, 2) : "–", "num"),
            td(fmt.pct(typeof v.parity.artifact_accuracy === "number" ? v.parity.artifact_accuracy : null), "num"),
            td(fmt.int(v.parity.n), "num"),
            td([[v.source.estimator, v.source.framework].filter(Boolean).join(" · ") || "–",
              v.source.mlflow ? h("div", { class: "muted small", "data-testid": "mlflow-lineage",
                title: Object.entries(v.source.mlflow.metrics || {}).map(([k, x]) => `${k} ${x}`).join(", "),
                text: `MLflow ${v.source.mlflow.registered_model ? `${v.source.mlflow.registered_model} v${v.source.mlflow.registered_version}` : v.source.mlflow.uri}${v.source.mlflow.alias ? " @" + v.source.mlflow.alias : ""} · run ${(v.source.mlflow.run_id || "–").slice(0, 8)}` }) : null], "small"),
            td(fmt.int(v.figures.predictions), "num"), td(fmt.pct(v.figures.accuracy), "num"),
            td(estimate(v.figures), "num"),
            td(typeof v.figures.log_loss === "number" ? v.figures.log_loss.toFixed(3) : "–", "num"),
            td(fmt.psi(v.figures.drift_psi), "num"))),
          { empty: "No versions." }));
        fill(estimateNote, s.versions.some((v) => typeof v.figures.estimated_accuracy === "number")
          ? h("p", { class: "small muted", "data-testid": "estimate-note", text: "Est. accuracy, no labels: the accuracy the model expects of itself from its calibrated probabilities, with a 95% interval. It cannot see concept drift: when what the labels mean changes, the model stays just as confident. Trust Accuracy where labels arrive." })
          : h("span", {}));
        const most = Math.max(1, ...s.versions.map((v) => v.running + v.installing + v.failed));
        fill(placement, table(["Version", ["Running", "num"], "", ["Online", "num"], ["Installing", "num"], ["Failed", "num"], `By ${s.group_by}`],
          s.versions.slice().reverse().map((v) => h("tr", {},
            td(h("strong", { text: `v${v.version}` })), td(fmt.int(v.running), "num"), td(meter(v.running, most, "ok")),
            td(fmt.int(v.online), "num"), td(fmt.int(v.installing), "num"),
            td(v.failed ? h("span", { class: "bad-text", text: String(v.failed) }) : "0", "num"),
            td(Object.entries(v.groups).map(([g, n]) => h("span", { class: "chip", text: `${g || "(none)"} ×${n}` }))))),
          { empty: "No versions." }));
      });
    }
    return { refresh };
  }

  // -- which feature drifted: one small chart per feature over time ------------------------------

  const DRIFT_SHOWN = 8;  // charts drawn at first; the rest on "show all" (a page stays quick)
  const MARKER_STYLE = {
    version_started: [COLORS.violet, "version started"], version_stopped: [COLORS.violet, "version stopped"],
    rollout_started: [COLORS.blue, "rollout started"], rollout_ended: [COLORS.blue, "rollout ended"],
    deployment: [COLORS.blue, "deployment"], alert_fired: [COLORS.red, "alert fired"],
    alert_cleared: [COLORS.green, "alert cleared"],
  };

  // colours go in through the CSSOM: the page's CSP refuses style attributes
  function swatch(color, cls) {
    const el = h("span", { class: `swatch ${cls || ""}` });
    el.style.background = color;
    return el;
  }

  function featureDrift(name, wantedVersion) {
    let version = wantedVersion ? Number(wantedVersion) : null;
    let showAll = false;
    const select = h("select", { "aria-label": "model version", "data-testid": "drift-version", onchange: () => {
      version = Number(select.value); refresh().catch(() => {});
    } });
    const note = h("div", { "data-testid": "drift-note" });
    const grid = h("div", { class: "drift-grid", "data-testid": "drift-charts" });
    const more = h("div", { class: "pager" });
    const markers = h("div", { "data-testid": "drift-markers" });
    const legendBox = h("div", { class: "chart-legend marker-legend" },
      h("span", {}, swatch(COLORS.amber), "PSI"),
      h("span", {}, swatch(COLORS.red), "over its threshold"),
      h("span", {}, swatch(COLORS.gray, "dashed"), "threshold"),
      ...[["version", COLORS.violet], ["rollout, deployment", COLORS.blue], ["alert fired", COLORS.red], ["alert cleared", COLORS.green]]
        .map(([text, color]) => h("span", {}, swatch(color, "marker-swatch"), text)));
    const body = h("div", {}, note, legendBox, grid, more, markers);
    const tools = h("label", { class: "tool" }, "version ", select);

    function setVersions(list) {
      const known = list.slice().sort((a, b) => b - a);
      if (version === null || !known.includes(version)) version = known.length ? known[0] : null;
      const wanted = known.map(String).join(",");
      if (select.dataset.versions !== wanted) {
        fill(select, ...known.map((v) => h("option", { value: v, text: `v${v}` })));
        select.dataset.versions = wanted;
      }
      if (version !== null) select.value = String(version);
    }

    // where the charts start: the selected range, less the empty stretch before the version's
    // first window or marker in it (a version deployed an hour ago fills a 24-hour chart)
    function chartStart(view) {
      const first = [...view.buckets.filter((b) => b.windows > 0).map((b) => b.ts), ...view.markers.map((m) => m.ts)];
      if (!first.length) return view.start;
      return Math.max(view.start, Math.floor(Math.min(...first) / view.bucket_s) * view.bucket_s - view.bucket_s);
    }

    function chart(f, view, marks, start) {
      const pts = f.points.filter((p) => p.ts >= start);
      const slot = h("div", { class: "chart-slot small", "data-testid": "drift-feature-chart", "data-feature": f.name });
      const latest = f.latest;
      const head = h("div", { class: "drift-head" },
        h("span", { class: "mono drift-name", text: f.name }),
        latest ? pill(`PSI ${fmt.psi(latest.psi)}`, latest.drifted ? "bad" : "ok") : pill("too few rows", ""),
        h("span", { class: "muted small", text: f.peak ? `peak ${fmt.psi(f.peak.psi)}` : `needs ${fmt.int(f.min_rows)} rows a bucket` }));
      const box = h("div", { class: "drift-feature" + (latest && latest.drifted ? " drifted" : "") }, head, slot);
      grid.appendChild(box);
      EwCharts.line(slot, { start, end: view.end, bucket: view.bucket_s, height: 130, left: 40, yMin: 0, yMinSpan: 0.15,
        yFormat: (v) => v.toFixed(2), legend: false, markers: marks, title: `PSI of ${f.name}`,
        series: [
          { name: "threshold", color: COLORS.gray, points: pts.map((p) => [p.ts, p.threshold]), dashed: true },
          { name: "PSI", color: COLORS.amber, points: pts.map((p) => [p.ts, p.psi]), area: true },
          { name: "over threshold", color: COLORS.red, points: pts.map((p) => [p.ts, p.drifted ? p.psi : null]) }],
        empty: `No figure in this range: a bucket needs ${fmt.int(f.min_rows)} rows.` });
    }

    async function refresh() {
      if (version === null) { fill(note, notAvailable("No version registered.")); return; }
      let view;
      try {
        view = (await api(`/drift/${encodeURIComponent(name)}`, { version, window: state.window, buckets: 60, top: showAll ? "" : DRIFT_SHOWN })).body;
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) { fill(note, notAvailable(err.message)); fill(grid); fill(markers); return; }
        throw err;
      }
      const skipped = Object.values(view.skipped).reduce((a, b) => a + b, 0);
      fill(note, view.reason ? h("p", { class: view.status === "ok" ? "muted" : "muted not-available", "data-testid": "drift-reason", text: view.reason }) : null,
        view.status === "ok" ? h("p", { class: "muted small", text: `v${view.version} · ${fmt.int(view.devices)} devices · ${fmt.int(view.windows)} metrics windows · ${fmt.int(view.rows_predicted)} rows, added up per ${fmt.span(view.bucket_s)} bucket and compared with the reference profile${skipped ? ` · ${skipped} windows of another profile left out` : ""}` }) : null);
      const firstShown = chartStart(view);
      if (view.status === "ok" && firstShown > view.start) note.appendChild(h("p", { class: "muted small", text: `Charts start at ${fmt.time(firstShown)}: nothing of v${view.version} happened earlier in the last ${fmt.span(view.window_s)}.` }));
      const marks = view.markers.map((m) => ({ t: m.ts, kind: m.kind, color: (MARKER_STYLE[m.kind] || [COLORS.gray])[0], text: m.text }));
      grid.textContent = "";
      legendBox.hidden = view.status !== "ok";
      const start = chartStart(view);
      if (view.status === "ok") for (const f of view.features) chart(f, view, marks, start);
      fill(more, view.features_total > view.features.length
        ? h("button", { type: "button", "data-testid": "drift-show-all", text: `Show all ${view.features_total} features`, onclick: () => { showAll = true; refresh().catch(() => {}); } })
        : showAll && view.features_total > DRIFT_SHOWN ? h("button", { type: "button", text: `Show the ${DRIFT_SHOWN} most drifted`, onclick: () => { showAll = false; refresh().catch(() => {}); } }) : null);
      fill(markers, view.markers.length ? table(["When", "Marker", "What"], view.markers.slice().reverse().map((m) => h("tr", { "data-kind": m.kind },
        td(fmt.time(m.ts)), td(h("span", {}, swatch((MARKER_STYLE[m.kind] || [COLORS.gray])[0], "marker-swatch"), (MARKER_STYLE[m.kind] || [null, m.kind])[1]), "small"),
        td(m.text, "small"))), { testid: "drift-marker-table" }) : h("p", { class: "muted small", text: "No version changes or alerts in this range." }));
    }
    return { body, tools, setVersions, refresh };
  }

  // -- rollouts and deployments ----------------------------------------------------------------

  function progressBar(parts, total) {
    const bar = h("div", { class: "progress", "data-testid": "progress" });
    for (const [value, kind] of parts) {
      const seg = h("span", { class: `seg ${kind}` });
      seg.style.width = total ? `${(value / total) * 100}%` : "0%";
      bar.appendChild(seg);
    }
    return bar;
  }

  function rolloutsPage(root) {
    const rollouts = h("div", { "data-testid": "rollouts" });
    const deployments = h("div", { "data-testid": "deployments" });
    fill(root, h("div", { class: "page-head" }, h("h1", { text: "Rollouts" })),
      card("Staged rollouts", {}, rollouts), card("Deployments", {}, deployments));
    async function refresh() {
      await guarded(async () => {
        const deps = await api("/deployments", { sort: "-created_at", limit: 20 });
        fill(deployments, table(["Deployment", "Version", "Created", "Progress", ["Active", "num"], ["Installing", "num"], ["Failed", "num"], ["Waiting", "num"]],
          deps.body.map((d) => h("tr", {},
            td(d.deployment_id, "mono small"), td(link(`#/models/${encodeURIComponent(d.model)}`, `${d.model}:${d.version}`), "mono"),
            td(fmt.ago(d.created_at)),
            td(progressBar([[d.active, "ok"], [d.installing, "busy"], [d.failed, "bad"]], d.targeted)),
            td(`${d.active}/${d.targeted}`, "num"), td(d.installing, "num"),
            td(d.failed ? h("span", { class: "bad-text", text: String(d.failed) }) : "0", "num"), td(d.waiting, "num"))),
          { empty: "No deployments yet." }));
        let list;
        try { list = (await api("/rollouts", { limit: 50 })).body; }
        catch (err) {
          if (err instanceof ApiError && (err.status === 404 || err.status === 405)) { fill(rollouts, notAvailable("Staged rollouts are not available on this controller.")); return; }
          throw err;
        }
        fill(rollouts, table(["Rollout", "Version", "Status", ["Wave", "num"], "Progress", ["Active", "num"], "Created"], list.map((r) => h("tr", {},
          td(link(`#/rollouts/${encodeURIComponent(r.id)}`, r.name || `#${r.id}`)), td(r.kind === "agent" ? `agent ${r.agent_version}` : `${r.model}:${r.version}`, "mono"),
          td(rolloutStatus(r.status)), td(`${Math.max(r.wave, 0)}/${r.wave_count}`, "num"),
          td(progressBar([[r.active, "ok"], [Math.max(0, r.sent - r.active), "busy"]], r.targets)),
          td(`${r.active}/${r.targets}`, "num"), td(fmt.ago(r.created_at)))), { empty: "No rollouts yet: `edgewise rollout start`." }));
      });
    }
    return { refresh };
  }

  function auditDetail(detail) {
    const d = detail || {};
    const lead = d.why || d.detail || d.reason;
    const rest = Object.entries(d).filter(([k]) => !["why", "detail", "reason", "spec", "previous"].includes(k))
      .map(([k, v]) => { const text = typeof v === "string" ? v : JSON.stringify(v); return `${k}: ${text.length > 48 ? text.slice(0, 47) + "…" : text}`; });
    return [lead, ...rest].filter(Boolean).join(" · ") || "–";
  }

  function rolloutStatus(status) {
    const kind = { completed: "ok", running: "busy", soaking: "busy", pending: "", paused: "warn", aborting: "bad", aborted: "bad", failed: "bad" }[status];
    return pill(status, kind);
  }

  // the device class the rolled-out version is for; an agent version, or a model version
  // whose manifest names no class, goes to any class
  function rolloutClass(r) {
    if (r.kind === "agent") return "any (an agent version)";
    return r.device_class || "any (the version names none)";
  }

  function rolloutPage(root, ref) {
    const head = h("div", { class: "device-head" });
    const waves = h("div", { "data-testid": "waves" });
    const gates = h("div", { "data-testid": "gates" });
    const audit = h("div", { "data-testid": "audit" });
    const skipped = h("div", { "data-testid": "rollout-skipped" });
    fill(root, h("div", { class: "page-head" }, h("div", { class: "crumbs" }, link("#/rollouts", "Rollouts"), " / ", h("span", { text: ref }))),
      head, h("div", { class: "row" }, card("Waves", { class: "span-2" }, waves), card("Gates of the current wave", { class: "span-2" }, gates)),
      card("Skipped (another device class)", {}, skipped),
      card("Audit trail", {}, audit));
    async function refresh() {
      await guarded(async () => {
        let r;
        try { r = (await api(`/rollouts/${encodeURIComponent(ref)}`)).body; }
        catch (err) {
          if (err instanceof ApiError && err.status === 404) { fill(root, card("Rollout not available", {}, notAvailable(err.message))); return; }
          throw err;
        }
        fill(head, h("div", { class: "device-title" }, h("h1", { text: r.name || `rollout ${r.id}` }), rolloutStatus(r.status)),
          h("dl", { class: "facts" },
            h("dt", { text: "Version" }), h("dd", { class: "mono" }, r.kind === "agent" ? `agent ${r.agent_version}` : link(`#/models/${encodeURIComponent(r.model)}`, `${r.model}:${r.version}`)),
            h("dt", { text: "Device class" }), h("dd", { class: "mono", "data-testid": "rollout-device-class", text: rolloutClass(r) }),
            h("dt", { text: "Progress" }), h("dd", { "data-testid": "rollout-progress" }, progressBar([[r.active, "ok"], [Math.max(0, r.sent - r.active), "busy"]], r.targets), ` ${r.active}/${r.targets} devices run it · wave ${Math.max(r.wave, 0)} of ${r.wave_count}`),
            h("dt", { text: "Selector" }), h("dd", { class: "mono", text: (r.spec && r.spec.selector) || "(every device)" }),
            h("dt", { text: "Created" }), h("dd", { text: `${fmt.time(r.created_at)} by ${r.created_by || "–"}` }),
            r.message ? h("dt", { text: "Next" }) : null, r.message ? h("dd", { text: r.message }) : null));
        // a version built for one class leaves out the devices known to be of another: not
        // targets, not failures (docs/rollouts.md)
        const skips = r.skipped || [];
        fill(skipped, h("p", { class: "small", "data-testid": "rollout-skipped-count", text: skips.length
          ? `${fmt.int(skips.length)} device${skips.length === 1 ? "" : "s"} of another class skipped: the version is for ${r.device_class}.`
          : "No device skipped." }),
          skips.length ? table(["Device", "Class", "Reason"], skips.map((s) => h("tr", { "data-device": s.device_id },
            td(link(`#/devices/${encodeURIComponent(s.device_id)}`, s.device_id), "mono"), td(s.device_class, "mono"), td(s.reason, "small"))),
            { testid: "rollout-skipped-devices" }) : null);
        fill(waves, table(["Wave", "Size", "Phase", "Progress", ["Sent", "num"], ["Active", "num"], ["Failed", "num"]], r.waves.map((w) => h("tr", { class: w.phase === "current" ? "current" : "" },
          td(`#${w.wave}`), td(w.size), td(pill(w.phase, w.phase === "done" ? "ok" : w.phase === "current" ? "busy" : "")),
          td(progressBar([[w.active, "ok"], [Math.max(0, w.sent - w.active - w.failed), "busy"], [w.failed, "bad"]], w.devices)),
          td(`${w.sent}/${w.devices}`, "num"), td(w.active, "num"), td(w.failed ? h("span", { class: "bad-text", text: String(w.failed) }) : "0", "num"))),
          { empty: "No waves planned." }));
        fill(gates, table(["Gate", ["Value", "num"], ["Threshold", "num"], "Verdict", "Detail"], (r.gates || []).map((g) => h("tr", {},
          td(g.name, "mono"), td(g.value === null ? "–" : Number(g.value).toPrecision(3), "num"), td(Number(g.threshold).toPrecision(3), "num"),
          td(g.pending ? pill("pending", "busy") : g.passed ? pill("passed", "ok") : pill("failed", "bad")), td(g.detail, "small"))),
          { empty: "No gate is being judged now." }));
        let entries = [];
        try { entries = (await api("/audit", { rollout: r.id, limit: 50 })).body.entries; }
        catch (err) { if (!(err instanceof ApiError && err.status === 404)) throw err; }
        fill(audit, table(["When", "Actor", "Action", "Devices", "Detail"], entries.map((e) => h("tr", {},
          td(fmt.time(e.ts)), td(e.actor, "small"), td(e.action, "mono"),
          td(e.devices.length ? `${e.devices.slice(0, 3).join(", ")}${e.devices.length > 3 ? ` +${e.devices.length - 3}` : ""}` : "–", "small"),
          td(auditDetail(e.detail), "small"))),
          { empty: "No audit entries." }));
      });
    }
    return { refresh };
  }

  // -- experiments -----------------------------------------------------------------------------

  function verdictPill(verdict) {
    const kind = { candidate_better: "ok", control_better: "bad", equivalent: "", inconclusive: "warn", running: "busy" }[verdict];
    return h("span", { class: `pill ${kind || ""}`, text: (verdict || "running").replace("_", " "), "data-testid": "verdict" });
  }

  function experimentStatus(status) {
    return pill(status, { running: "busy", stopped: "", promoted: "ok" }[status]);
  }

  function experimentsPage(root) {
    const list = h("div", { "data-testid": "experiments" });
    fill(root, h("div", { class: "page-head" }, h("h1", { text: "Experiments" })), card("Shadow runs and A/B tests", {}, list));
    async function refresh() {
      await guarded(async () => {
        let rows;
        try { rows = (await api("/experiments", { limit: 50 })).body; }
        catch (err) {
          if (err instanceof ApiError && (err.status === 404 || err.status === 405)) { fill(list, notAvailable("Experiments are not available on this controller.")); return; }
          throw err;
        }
        fill(list, table(["Experiment", "Mode", "Candidate", "Control", "Status", "Verdict", ["Devices", "num"], "Created"], rows.map((e) => h("tr", {},
          td(link(`#/experiments/${encodeURIComponent(e.id)}`, e.id), "mono"), td(e.mode),
          td(`${e.model}:${e.candidate}`, "mono"), td(`${e.model}:${e.control}`, "mono"),
          td(experimentStatus(e.status)), td(verdictPill(e.verdict)), td(e.devices, "num"), td(fmt.ago(e.created_at)))),
          { empty: "No experiments yet: `edgewise experiment start --shadow MODEL:V --against MODEL:V`." }));
      });
    }
    return { refresh };
  }

  function experimentPage(root, ref) {
    const head = h("div", { class: "device-head" });
    const arms = h("div", { "data-testid": "arms" });
    const accuracy = h("div", { class: "chart", "data-testid": "experiment-accuracy" });
    const effect = h("div", { class: "chart", "data-testid": "experiment-effect" });
    const latency = h("div", { class: "chart", "data-testid": "experiment-latency" });
    const shadow = h("div", { "data-testid": "experiment-shadow" });
    fill(root, h("div", { class: "page-head" }, h("div", { class: "crumbs" }, link("#/experiments", "Experiments"), " / ", h("span", { text: ref }))),
      head, card("Arms", {}, arms),
      h("div", { class: "row" }, card("Accuracy per arm over time", { class: "span-2" }, accuracy),
        card("Accuracy difference (candidate − control) with its always-valid interval", { class: "span-2" }, effect)),
      h("div", { class: "row" }, card("p95 latency per arm", { class: "span-2" }, latency), card("Shadow: agreement and disagreements", { class: "span-2" }, shadow)));
    async function refresh() {
      await guarded(async () => {
        let e;
        try { e = (await api(`/experiments/${encodeURIComponent(ref)}`)).body; }
        catch (err) {
          if (err instanceof ApiError && err.status === 404) { fill(root, card("Experiment not available", {}, notAvailable(err.message))); return; }
          throw err;
        }
        const c = e.comparison;
        const pts = (key) => e.series.map((p) => [p.t, p[key]]);
        const start = e.series.length ? e.series[0].t - 60 : e.created_at;
        const end = e.series.length ? e.series[e.series.length - 1].t : Date.now() / 1000;
        const devices = e.devices.both.length + e.devices.candidate.length + e.devices.control.length;
        fill(head, h("div", { class: "device-title" }, h("h1", { text: e.name || e.id }), experimentStatus(e.status), verdictPill(c.verdict)),
          h("dl", { class: "facts" },
            h("dt", { text: "Mode" }), h("dd", { text: e.mode === "shadow" ? `shadow, ${fmt.pct(e.spec.sample, 0)} of calls` : `A/B, ${fmt.pct(e.spec.share, 0)} by ${e.spec.split}` }),
            h("dt", { text: "Arms" }), h("dd", { class: "mono" }, `${e.model}:${e.candidate} (candidate) vs ${e.model}:${e.control} (control)`),
            h("dt", { text: "Devices" }), h("dd", { text: `${devices} · selector ${(e.spec && e.spec.selector) || "(every device)"}` }),
            h("dt", { text: "Test" }), h("dd", { "data-testid": "experiment-test" }, c.effect === null ? `no labelled rows yet; the design predicts ${c.predicted_rows} per arm` :
              `difference ${(c.effect * 100).toFixed(2)} points, always-valid CI [${(c.low * 100).toFixed(2)}, ${(c.high * 100).toFixed(2)}] · ${c.rows} of ${c.predicted_rows} predicted rows${c.paired ? " (paired)" : ""}`),
            h("dt", { text: "Design" }), h("dd", { text: `MDE ${fmt.pct(e.spec.design.mde)} · α ${e.spec.design.alpha} · β ${e.spec.design.beta}` }),
            e.rollout_id ? h("dt", { text: "Promoted" }) : null, e.rollout_id ? h("dd", {}, link(`#/rollouts/${e.rollout_id}`, `rollout #${e.rollout_id}`)) : null));
        fill(arms, table(["Arm", ["Devices", "num"], ["Rows", "num"], ["Labelled", "num"], ["Accuracy", "num"], "Always-valid CI", ["Mean latency", "num"], ["p95 latency", "num"], ["Errors", "num"]],
          ["control", "candidate"].map((name) => { const a = e.arms[name]; return h("tr", { "data-arm": name },
            td(name), td(a.devices, "num"), td(a.rows, "num"), td(a.labelled, "num"), td(fmt.pct(a.accuracy), "num"),
            td(a.accuracy_low === null ? "–" : `[${fmt.pct(a.accuracy_low)}, ${fmt.pct(a.accuracy_high)}]`, "small"),
            td(fmt.ms(a.latency_mean_ms), "num"), td(fmt.ms(a.latency_p95_ms), "num"), td(a.errors, "num")); })));
        EwCharts.line(accuracy, { start, end, height: 200, yMin: 0, yMax: 1, yFormat: (v) => fmt.pct(v, 0), left: 44, series: [
          { name: "control", color: COLORS.gray, points: pts("control_accuracy") },
          { name: "candidate", color: COLORS.blue, points: pts("candidate_accuracy") }],
          empty: "No labels came back yet." });
        EwCharts.line(effect, { start, end, height: 200, yFormat: (v) => `${(v * 100).toFixed(0)} pt`, left: 48, series: [
          { name: "difference", color: COLORS.blue, points: pts("effect") },
          { name: "low", color: COLORS.violet, points: pts("low"), dashed: true },
          { name: "high", color: COLORS.violet, points: pts("high"), dashed: true }],
          thresholds: [{ value: 0, label: "no difference", color: COLORS.gray }],
          empty: "No labels came back yet." });
        EwCharts.line(latency, { start, end, height: 200, yMin: 0, yFormat: (v) => fmt.ms(v), left: 58, series: [
          { name: "control", color: COLORS.gray, points: pts("control_p95_ms") },
          { name: "candidate", color: COLORS.blue, points: pts("candidate_p95_ms") }],
          empty: "No calls timed yet." });
        const s = e.shadow;
        const refused = Object.entries(e.refused || {});
        fill(shadow, s ? h("div", {},
          h("p", { "data-testid": "agreement", text: `${s.compared} rows compared · agreement ${fmt.pct(s.agreement)} · skipped ${s.skipped} · failed ${s.failed} · slow ${s.slow}` }),
          table(["Control answered", "Candidate answered", ["Rows", "num"]], s.disagreements.map(([a, b, n]) => h("tr", {}, td(a, "mono"), td(b, "mono"), td(n, "num"))),
            { empty: "The two versions never disagreed." })) : notAvailable("An A/B test has no shadow: each call is answered by one arm."),
          refused.length ? table(["Refused on", "Reason"], refused.map(([d, why]) => h("tr", {}, td(link(`#/devices/${encodeURIComponent(d)}`, d), "mono"), td(why, "small")))) : null);
      });
    }
    return { refresh };
  }

  // -- enrollment approvals --------------------------------------------------------------------

  // Requests of devices enrolling on a manual-approval claim token, as `edgewise devices pending`
  // lists them; approving issues the device's certificate, rejecting tells it the reason.
  function enrollmentsPage(root) {
    const list = h("div", { "data-testid": "enrollments" });
    const result = h("p", { class: "small", "data-testid": "enrollment-result" });
    fill(root, h("div", { class: "page-head" }, h("h1", { text: "Enrollment" })),
      card("Pending enrollment requests", {}, result, list));
    let shown = null;  // the device ids on screen: a refresh leaves typed reasons alone

    async function decide(deviceId, action, reason) {
      result.className = "small";
      result.textContent = `${action === "approve" ? "approving" : "rejecting"} ${deviceId}…`;
      try {
        const path = `/enrollments/${encodeURIComponent(deviceId)}/${action}`;
        const answer = await send(path, action === "reject" && reason ? { reason } : {});
        result.textContent = action === "approve" ? `Approved ${deviceId}: its certificate is issued.`
          : `Rejected ${deviceId}: ${answer.reason}.`;
        result.className = "small ok-text";
      } catch (err) {
        result.textContent = `${deviceId} not ${action === "approve" ? "approved" : "rejected"}: ${err.message}`;
        result.className = "small error-text";
      }
      shown = null;
      await refresh();
    }

    function row(r) {
      const reason = h("input", { type: "text", class: "reason", placeholder: "reason (optional)", maxlength: 200, "aria-label": `reason to reject ${r.device_id}` });
      return h("tr", { "data-device": r.device_id },
        td(r.device_id, "mono"), td(r.group), td(r.device_class, "mono"),
        td(Object.entries(r.labels || {}).map(([k, v]) => h("span", { class: "chip", text: `${k}=${v}` }))),
        td(fmt.ago(r.requested_at)), td(r.public_key_sha256.slice(0, 16), "mono small"),
        td(h("div", { class: "decide" },
          h("button", { type: "button", class: "approve", text: "Approve", onclick: () => decide(r.device_id, "approve") }),
          reason,
          h("button", { type: "button", class: "reject", text: "Reject", onclick: () => decide(r.device_id, "reject", reason.value.trim()) }))));
    }

    async function refresh() {
      await guarded(async () => {
        let rows;
        try { rows = (await api("/enrollments/pending")).body; }
        catch (err) {
          if (err instanceof ApiError && (err.status === 404 || err.status === 405)) { fill(list, notAvailable("Enrollment approvals are not available on this controller.")); return; }
          throw err;
        }
        const ids = rows.map((r) => r.device_id).join("\n");
        if (ids === shown) return;
        shown = ids;
        fill(list, table(["Device", "Group", "Class", "Labels", "Requested", "Key (sha256)", "Decision"], rows.map(row),
          { testid: "pending-enrollments", empty: "No enrollment request waits for approval." }));
      });
    }
    return { refresh };
  }

  // -- router ----------------------------------------------------------------------------------

  function route() {
    const hash = window.location.hash.replace(/^#/, "") || "/";
    const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
    const root = document.getElementById("view");
    let nav = "fleet";
    if (parts[0] === "devices" && parts[1]) state.page = devicePage(root, parts[1]);
    else if (parts[0] === "models" && parts[1]) { state.page = modelPage(root, parts[1], parts[2]); nav = "models"; }
    else if (parts[0] === "models") { state.page = modelsPage(root); nav = "models"; }
    else if (parts[0] === "rollouts" && parts[1]) { state.page = rolloutPage(root, parts[1]); nav = "rollouts"; }
    else if (parts[0] === "rollouts") { state.page = rolloutsPage(root); nav = "rollouts"; }
    else if (parts[0] === "experiments" && parts[1]) { state.page = experimentPage(root, parts[1]); nav = "experiments"; }
    else if (parts[0] === "experiments") { state.page = experimentsPage(root); nav = "experiments"; }
    else if (parts[0] === "enrollments") { state.page = enrollmentsPage(root); nav = "enrollments"; }
    else state.page = fleetPage(root);
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("on", a.dataset.nav === nav);
    window.scrollTo(0, 0);
    state.page.refresh().catch(() => {});
  }

  document.addEventListener("DOMContentLoaded", () => { setupChrome(); route(); });
})();
