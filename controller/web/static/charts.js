// Edgewise dashboard charts: small SVG line, bar and donut charts with no dependencies.
// EwCharts.line(el, {series, yFormat, thresholds, markers, ...}), EwCharts.bars(el, {...}),
// EwCharts.donut(el, {parts}). Each call replaces the element's content.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceStep(span, count) {
    const raw = span / Math.max(count, 1);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 2.5 ? 2.5 : unit <= 5 ? 5 : 10;
    return nice * power;
  }

  function yScale(values, opts) {
    let lo = opts.yMin !== undefined ? opts.yMin : Math.min(0, ...values);
    let hi = opts.yMax !== undefined ? opts.yMax : Math.max(...values);
    if (opts.yMinSpan && hi - lo < opts.yMinSpan) hi = lo + opts.yMinSpan;
    if (!(hi > lo)) hi = lo + 1;
    const step = niceStep(hi - lo, 4);
    if (opts.yMax === undefined) hi = Math.ceil(hi / step) * step;
    if (opts.yMin === undefined) lo = Math.floor(lo / step) * step;
    const ticks = [];
    for (let v = lo; v <= hi + step / 1e6; v += step) ticks.push(Number(v.toFixed(10)));
    return { lo, hi, ticks };
  }

  const TIME_STEPS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function timeTicks(start, end, width) {
    const wanted = Math.max(2, Math.floor(width / 90));
    const step = TIME_STEPS.find((s) => (end - start) / s <= wanted) || 86400 * 7;
    const ticks = [];
    for (let t = Math.ceil(start / step) * step; t <= end; t += step) ticks.push(t);
    return { ticks, step };
  }

  function timeLabel(t, step) {
    const d = new Date(t * 1000);
    if (step >= 86400) return d.toLocaleDateString([], { month: "short", day: "numeric" });
    if (step < 60) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  }

  function frame(el, opts) {
    el.textContent = "";
    el.classList.add("chart-box");
    const width = Math.max(el.clientWidth || 0, 260);
    const height = opts.height || 190;
    const m = { l: opts.left || 46, r: 14, t: 12, b: 26 };
    const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height,
      role: "img", "aria-label": opts.title || "chart" }, el);
    return { root, width, height, m, iw: width - m.l - m.r, ih: height - m.t - m.b };
  }

  function empty(el, message) {
    el.textContent = "";
    el.classList.add("chart-box");
    const p = document.createElement("p");
    p.className = "chart-empty";
    p.textContent = message;
    el.appendChild(p);
  }

  function axes(f, y, xs, fmt) {
    const { root, m, iw, ih } = f;
    const grid = svg("g", { class: "grid" }, root);
    for (const v of y.ticks) {
      const py = m.t + ih - ((v - y.lo) / (y.hi - y.lo)) * ih;
      svg("line", { x1: m.l, x2: m.l + iw, y1: py, y2: py }, grid);
      const label = svg("text", { x: m.l - 6, y: py + 4, "text-anchor": "end", class: "tick" }, root);
      label.textContent = fmt(v);
    }
    for (const t of xs.ticks) {
      const px = xs.px(t);
      svg("line", { x1: px, x2: px, y1: m.t + ih, y2: m.t + ih + 4, class: "tick-mark" }, root);
      const label = svg("text", { x: px, y: m.t + ih + 17, "text-anchor": "middle", class: "tick" }, root);
      label.textContent = timeLabel(t, xs.step);
    }
    svg("line", { x1: m.l, x2: m.l + iw, y1: m.t + ih, y2: m.t + ih, class: "axis" }, root);
  }

  function tooltip(el, f, xs, rows, describe) {
    const tip = document.createElement("div");
    tip.className = "chart-tip";
    tip.hidden = true;
    el.appendChild(tip);
    const cursor = svg("line", { class: "cursor", y1: f.m.t, y2: f.m.t + f.ih, visibility: "hidden" }, f.root);
    const hit = svg("rect", { x: f.m.l, y: f.m.t, width: f.iw, height: f.ih, class: "hit" }, f.root);
    hit.addEventListener("mousemove", (ev) => {
      const box = f.root.getBoundingClientRect();
      const x = ((ev.clientX - box.left) / box.width) * f.width;
      let best = null;
      for (const r of rows) {
        if (best === null || Math.abs(xs.px(r.t) - x) < Math.abs(xs.px(best.t) - x)) best = r;
      }
      if (!best) return;
      const px = xs.px(best.t);
      cursor.setAttribute("x1", px);
      cursor.setAttribute("x2", px);
      cursor.setAttribute("visibility", "visible");
      tip.textContent = "";
      const head = document.createElement("strong");
      head.textContent = new Date(best.t * 1000).toLocaleString([], { hour12: false });
      tip.appendChild(head);
      for (const line of describe(best)) {
        const div = document.createElement("div");
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = line.color;
        div.appendChild(swatch);
        div.appendChild(document.createTextNode(line.text));
        tip.appendChild(div);
      }
      tip.hidden = false;
      const left = (px / f.width) * box.width;
      tip.style.left = `${Math.min(left + 12, box.width - tip.offsetWidth - 4)}px`;
      tip.style.top = "8px";
    });
    hit.addEventListener("mouseleave", () => {
      tip.hidden = true;
      cursor.setAttribute("visibility", "hidden");
    });
  }

  function legend(el, series) {
    const box = document.createElement("div");
    box.className = "chart-legend";
    for (const s of series) {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch" + (s.dashed ? " dashed" : "");
      swatch.style.background = s.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.name));
      box.appendChild(item);
    }
    el.appendChild(box);
  }

  // vertical lines at events (a version change, an alert), behind the series; what they say
  // shows in the tooltip of the bucket they fall in
  function markerLines(f, xs, markers) {
    const g = svg("g", { class: "markers" }, f.root);
    for (const mk of markers) {
      const px = xs.px(mk.t);
      if (px < f.m.l || px > f.m.l + f.iw) continue;
      const one = svg("g", { class: "marker", "data-kind": mk.kind }, g);
      svg("line", { x1: px, x2: px, y1: f.m.t, y2: f.m.t + f.ih, stroke: mk.color }, one);
      svg("path", { d: `M${px - 4},${f.m.t - 1}L${px + 4},${f.m.t - 1}L${px},${f.m.t + 5}Z`, fill: mk.color }, one);
      svg("title", {}, one).textContent = mk.text;
    }
  }

  // series: [{name, color, points: [[t, v|null]], area?, dashed?}]
  // opts: start, end, yFormat, yMin, yMax, yMinSpan, thresholds: [{value, label, color}], empty,
  //   markers: [{t, kind, color, text}] with bucket (seconds) to list them in the tooltip
  function line(el, opts) {
    const series = opts.series.filter((s) => s.points.some((p) => p[1] !== null && p[1] !== undefined));
    if (!series.length) return empty(el, opts.empty || "No data in this time range yet.");
    const fmt = opts.yFormat || ((v) => String(v));
    const values = series.flatMap((s) => s.points.filter((p) => p[1] !== null).map((p) => p[1]));
    for (const th of opts.thresholds || []) values.push(th.value);
    const f = frame(el, opts);
    const y = yScale(values, opts);
    const start = opts.start, end = opts.end;
    const xs = timeTicks(start, end, f.iw);
    xs.px = (t) => f.m.l + ((t - start) / (end - start)) * f.iw;
    const py = (v) => f.m.t + f.ih - ((v - y.lo) / (y.hi - y.lo)) * f.ih;
    axes(f, y, xs, fmt);
    const markers = opts.markers || [];
    markerLines(f, xs, markers);
    for (const th of opts.thresholds || []) {
      const g = svg("g", { class: "threshold" }, f.root);
      svg("line", { x1: f.m.l, x2: f.m.l + f.iw, y1: py(th.value), y2: py(th.value), stroke: th.color || "#d9480f" }, g);
      const label = svg("text", { x: f.m.l + f.iw - 4, y: py(th.value) - 4, "text-anchor": "end", fill: th.color || "#d9480f" }, g);
      label.textContent = th.label;
    }
    for (const s of series) {
      const g = svg("g", { class: "series", "data-series": s.name }, f.root);
      let d = "", area = "", run = [];
      const flush = () => {
        if (run.length && s.area) {
          area += `M${run[0][0]},${py(Math.max(y.lo, 0))}` + run.map((p) => `L${p[0]},${p[1]}`).join("") +
            `L${run[run.length - 1][0]},${py(Math.max(y.lo, 0))}Z`;
        }
        run = [];
      };
      for (const [t, v] of s.points) {
        if (v === null || v === undefined) { flush(); continue; }
        const p = [xs.px(t).toFixed(1), py(v).toFixed(1)];
        d += (run.length ? "L" : "M") + p[0] + "," + p[1];
        run.push(p);
      }
      flush();
      if (area) svg("path", { d: area, fill: s.color, class: "area" }, g);
      svg("path", { d, stroke: s.color, class: "line" + (s.dashed ? " dashed" : "") }, g);
      const shown = s.points.filter((p) => p[1] !== null && p[1] !== undefined);
      if (shown.length <= 60) {
        for (const [t, v] of shown) svg("circle", { cx: xs.px(t), cy: py(v), r: 2.6, fill: s.color, class: "dot" }, g);
      }
    }
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
    const rows = times.map((t) => ({ t }));
    tooltip(el, f, xs, rows, (row) => [...series.map((s) => {
      const p = s.points.find((q) => q[0] === row.t);
      const v = p ? p[1] : null;
      return { color: s.color, text: `${s.name}: ${v === null || v === undefined ? "–" : fmt(v)}` };
    }), ...markers.filter((mk) => opts.bucket && mk.t >= row.t && mk.t < row.t + opts.bucket)
      .map((mk) => ({ color: mk.color, text: mk.text }))]);
    if (opts.legend !== false) legend(el, series);
  }

  // stacked bars over time. series: [{name, color, points: [[t, v]]}], opts.bucket seconds
  function bars(el, opts) {
    const total = new Map();
    for (const s of opts.series) for (const [t, v] of s.points) total.set(t, (total.get(t) || 0) + (v || 0));
    if (![...total.values()].some((v) => v > 0)) return empty(el, opts.empty || "Nothing in this time range yet.");
    const fmt = opts.yFormat || ((v) => String(v));
    const f = frame(el, opts);
    const y = yScale([...total.values()], { yMin: 0 });
    const start = opts.start, end = opts.end;
    const xs = timeTicks(start, end, f.iw);
    xs.px = (t) => f.m.l + ((t - start) / (end - start)) * f.iw;
    axes(f, y, xs, fmt);
    const bw = Math.max(1, (opts.bucket / (end - start)) * f.iw - 2);
    const base = new Map();
    for (const s of opts.series) {
      const g = svg("g", { class: "series bars", "data-series": s.name }, f.root);
      for (const [t, v] of s.points) {
        if (!v) continue;
        const b = base.get(t) || 0;
        const y0 = f.m.t + f.ih - (b / (y.hi - y.lo)) * f.ih;
        const h = (v / (y.hi - y.lo)) * f.ih;
        svg("rect", { x: xs.px(t) + 1, y: y0 - h, width: bw, height: Math.max(h, 0.5), fill: s.color, rx: 1.5 }, g);
        base.set(t, b + v);
      }
    }
    const rows = [...total.keys()].sort((a, b) => a - b).map((t) => ({ t: t }));
    const shifted = { ...xs, px: (t) => xs.px(t) + bw / 2 };
    tooltip(el, f, shifted, rows, (row) => opts.series.map((s) => {
      const p = s.points.find((q) => q[0] === row.t);
      return { color: s.color, text: `${s.name}: ${fmt(p ? p[1] || 0 : 0)}` };
    }));
    if (opts.legend !== false) legend(el, opts.series);
  }

  // parts: [{value, color, name}]; the first part's share is written in the middle
  function donut(el, opts) {
    el.textContent = "";
    const size = opts.size || 64, r = size / 2 - 6, c = 2 * Math.PI * r;
    const root = svg("svg", { class: "donut", width: size, height: size, viewBox: `0 0 ${size} ${size}` }, el);
    const total = opts.parts.reduce((a, p) => a + p.value, 0);
    svg("circle", { cx: size / 2, cy: size / 2, r, class: "donut-track" }, root);
    let offset = 0;
    for (const p of opts.parts) {
      if (!total || !p.value) continue;
      const len = (p.value / total) * c;
      svg("circle", { cx: size / 2, cy: size / 2, r, stroke: p.color, class: "donut-part",
        "stroke-dasharray": `${len} ${c - len}`, "stroke-dashoffset": -offset,
        transform: `rotate(-90 ${size / 2} ${size / 2})` }, root);
      offset += len;
    }
    const label = svg("text", { x: size / 2, y: size / 2 + 4, "text-anchor": "middle", class: "donut-label" }, root);
    label.textContent = total ? `${Math.round((opts.parts[0].value / total) * 100)}%` : "–";
  }

  window.EwCharts = { line, bars, donut };
})();
