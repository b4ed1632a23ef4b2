// Kiki dashboard: polls /api/stats every second, turns totals into rates, and draws the last
// two minutes on small hand-drawn canvas line charts. No dependencies.

const POLL_MS = 1000;
const WINDOW_MS = 120000;
const TIMEOUT_MS = 3000;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting

function fmtNum(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(digits) + "G";
  if (a >= 1e6) return (v / 1e6).toFixed(digits) + "M";
  if (a >= 1e4) return (v / 1e3).toFixed(digits) + "k";
  if (a >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(a < 1 ? 2 : digits);
}

function fmtBytes(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v >= 1024 * 1024) return (v / 1024 / 1024).toFixed(1) + " MiB";
  if (v >= 1024) return (v / 1024).toFixed(1) + " KiB";
  return Math.round(v) + " B";
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v >= 10000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms";
}

function fmtAgo(ms) {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function cssVar(el, name, fallback) {
  const v = getComputedStyle(el).getPropertyValue(name).trim();
  return v || fallback;
}

// ---------------------------------------------------------------- charts

/** A small line chart of the last WINDOW_MS; `null` values break the line. */
class Chart {
  constructor(parent, { id, title, series, fmt, unit = "", minTop = 1 }) {
    this.series = series;
    this.minTop = minTop;
    this.fmt = fmt || ((v) => fmtNum(v));
    this.unit = unit;
    this.points = []; // {t, v: [..]}
    const card = document.createElement("article");
    card.className = "panel chart";
    card.id = `chart-${id}`;
    const head = document.createElement("header");
    const h = document.createElement("h2");
    h.textContent = title;
    h.id = `chart-${id}-title`;
    this.value = document.createElement("div");
    this.value.className = "value";
    this.value.id = `v-${id}`;
    this.value.textContent = "–";
    head.append(h, this.value);
    this.canvas = document.createElement("canvas");
    this.canvas.id = `canvas-${id}`;
    this.canvas.setAttribute("role", "img");
    this.canvas.setAttribute("aria-labelledby", h.id);
    this.canvas.dataset.points = "0";
    this.legend = document.createElement("div");
    this.legend.className = "legend";
    this.legendValues = series.map((s, i) => {
      const span = document.createElement("span");
      const sw = document.createElement("i");
      sw.style.background = `var(--c${i + 1})`;
      const label = document.createElement("span");
      label.textContent = `${s.label} `;
      const val = document.createElement("b");
      val.textContent = "–";
      span.append(sw, label, val);
      if (series.length > 1) this.legend.append(span);
      return val;
    });
    card.append(head, this.canvas, this.legend);
    parent.append(card);
  }

  push(t, values) {
    this.points.push({ t, v: values });
    while (this.points.length && this.points[0].t < t - WINDOW_MS - 5000) this.points.shift();
    const first = values[0];
    this.value.textContent = first === null || first === undefined ? "–" : this.fmt(first) + this.unit;
    values.forEach((v, i) => (this.legendValues[i].textContent = v === null || v === undefined ? "–" : this.fmt(v) + this.unit));
    this.canvas.dataset.points = String(this.points.filter((p) => p.v.some((v) => v !== null)).length);
    this.canvas.dataset.last = JSON.stringify(values);
    let max = null;
    for (const p of this.points) for (const v of p.v) if (v !== null && v !== undefined && (max === null || v > max)) max = v;
    this.canvas.dataset.max = max === null ? "" : String(max);
    this.canvas.setAttribute(
      "aria-label",
      this.series.map((s, i) => `${s.label}: ${values[i] === null ? "no data" : this.fmt(values[i]) + this.unit}`).join(", "),
    );
  }

  draw(now) {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    const grid = cssVar(c, "--line", "#ddd");
    const muted = cssVar(c, "--faint", "#888");
    const font = `${Math.round(10 * dpr)}px system-ui, sans-serif`;
    const t0 = now - WINDOW_MS;
    let max = 0;
    let any = false;
    for (const p of this.points) {
      if (p.t < t0) continue;
      for (const v of p.v) {
        if (v === null || v === undefined) continue;
        any = true;
        if (v > max) max = v;
      }
    }
    const niceTop = niceCeil(Math.max(max, this.minTop));
    const top = niceTop;
    g.font = font;
    const padL = Math.ceil(Math.max(...[0, 0.5, 1].map((f) => g.measureText(this.fmt(niceTop * f)).width)) + 8 * dpr);
    const padR = 4 * dpr;
    const padT = 6 * dpr;
    const padB = 14 * dpr;
    const pw = w - padL - padR;
    const ph = h - padT - padB;

    const y = (v) => padT + ph - (v / top) * ph;
    const x = (t) => padL + ((t - t0) / WINDOW_MS) * pw;

    g.font = font;
    g.lineWidth = Math.max(1, dpr);
    g.strokeStyle = grid;
    g.fillStyle = muted;
    g.textBaseline = "middle";
    g.textAlign = "right";
    for (const f of [0, 0.5, 1]) {
      const yy = Math.round(y(top * f)) + 0.5;
      g.beginPath();
      g.moveTo(padL, yy);
      g.lineTo(w - padR, yy);
      g.stroke();
      g.fillText(this.fmt(top * f), padL - 4 * dpr, yy);
    }
    g.textBaseline = "alphabetic";
    g.textAlign = "left";
    g.fillText("−2 min", padL, h - 2 * dpr);
    g.textAlign = "center";
    g.fillText("−1 min", padL + pw / 2, h - 2 * dpr);
    g.textAlign = "right";
    g.fillText("now", w - padR, h - 2 * dpr);

    if (!any) {
      g.textAlign = "center";
      g.textBaseline = "middle";
      g.fillText("no data yet", padL + pw / 2, padT + ph / 2);
      return;
    }
    g.save();
    g.beginPath();
    g.rect(padL, 0, pw + padR, h);
    g.clip();
    g.lineWidth = 1.75 * dpr;
    g.lineJoin = "round";
    this.series.forEach((s, i) => {
      g.strokeStyle = cssVar(c, `--c${i + 1}`, "#2457d6");
      g.beginPath();
      let pen = false;
      let lone = null;
      let run = 0;
      for (const p of this.points) {
        const v = p.v[i];
        if (v === null || v === undefined) {
          if (run === 1 && lone) g.fillRect(lone[0] - dpr, lone[1] - dpr, 2 * dpr, 2 * dpr);
          pen = false;
          run = 0;
          continue;
        }
        const px = x(p.t);
        const py = y(v);
        if (pen) g.lineTo(px, py);
        else g.moveTo(px, py);
        pen = true;
        run += 1;
        lone = [px, py];
      }
      g.stroke();
      if (run === 1 && lone) {
        g.fillStyle = g.strokeStyle;
        g.fillRect(lone[0] - 1.5 * dpr, lone[1] - 1.5 * dpr, 3 * dpr, 3 * dpr);
      }
    });
    g.restore();
  }
}

function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const chartsEl = $("charts");
const charts = {
  msgs: new Chart(chartsEl, { id: "msgs", title: "Pub/Sub messages/s", series: [{ label: "msg/s" }], unit: "/s" }),
  bytes: new Chart(chartsEl, { id: "bytes", title: "Pub/Sub bytes/s", series: [{ label: "bytes/s" }], fmt: fmtBytes, unit: "/s" }),
  tasks: new Chart(chartsEl, {
    id: "tasks",
    title: "Task backlog and pending",
    series: [{ label: "backlog" }, { label: "pending" }],
    minTop: 2,
  }),
  enq: new Chart(chartsEl, { id: "enq", title: "Tasks enqueued/s", series: [{ label: "tasks/s" }], unit: "/s" }),
  finals: new Chart(chartsEl, {
    id: "finals",
    title: "Finals/s and partials/s",
    series: [{ label: "finals/s" }, { label: "partials/s" }],
    unit: "/s",
  }),
  sessions: new Chart(chartsEl, { id: "sessions", title: "Sessions active", series: [{ label: "sessions" }], minTop: 2 }),
  latency: new Chart(chartsEl, {
    id: "latency",
    title: "Final latency",
    series: [{ label: "p50" }, { label: "p95" }, { label: "p99" }],
    fmt: fmtMs,
    minTop: 100,
  }),
  recovery: new Chart(chartsEl, {
    id: "recovery",
    title: "Reclaims/s and dead letters/s",
    series: [{ label: "reclaimed/s" }, { label: "dead-lettered/s" }],
    unit: "/s",
  }),
  workers: new Chart(chartsEl, {
    id: "workers",
    title: "Workers alive and oldest pending task",
    series: [{ label: "workers" }, { label: "oldest pending s" }],
    minTop: 2,
  }),
  rtf: new Chart(chartsEl, { id: "rtf", title: "Real-time factor (inference)", series: [{ label: "RTF" }], fmt: (v) => (v === 0 ? "0" : v.toFixed(v < 1 ? 2 : 1)) }),
};

// ---------------------------------------------------------------- tables

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text instanceof Node) td.append(text);
  else td.textContent = text;
  return td;
}

function pill(text, cls) {
  const s = document.createElement("span");
  s.className = `pill ${cls}`;
  s.textContent = text;
  return s;
}

function fillBody(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
}

function emptyRow(cols, text) {
  const tr = document.createElement("tr");
  const td = cell(text, "muted");
  td.colSpan = cols;
  tr.append(td);
  return tr;
}

const COUNTERS = [
  ["dead_letters", "Dead letters", fmtNum],
  ["tasks_reclaimed_total", "Tasks reclaimed", fmtNum],
  ["tasks_dead_lettered_total", "Tasks dead-lettered", fmtNum],
  ["sessions_refused_total", "Sessions refused (busy)", fmtNum],
  ["partials_shed_total", "Partials shed (backlog)", fmtNum],
  ["replays_total", "Replays", fmtNum],
  ["subscriber_reconnects_total", "Subscriber reconnects", fmtNum],
  ["plugin_errors_total", "Plugin errors (this gateway)", fmtNum],
  ["duplicates_dropped_total", "Duplicates dropped", fmtNum],
  ["sessions_total", "Sessions", fmtNum],
  ["tasks_enqueued_total", "Tasks enqueued", fmtNum],
  ["finals_delivered_total", "Finals delivered", fmtNum],
  ["partials_delivered_total", "Partials delivered", fmtNum],
  ["pubsub_messages_total", "Pub/Sub messages", fmtNum],
  ["pubsub_bytes_total", "Pub/Sub bytes", fmtBytes],
];
const ALERTING = new Set(["dead_letters", "tasks_dead_lettered_total", "sessions_refused_total", "plugin_errors_total", "subscriber_reconnects_total"]);

function exact(v, f) {
  return f === fmtBytes ? fmtBytes(v) : Number(v).toLocaleString("en-US");
}

/** A worker's rate of `key` between this poll and the last (its totals since it started). */
function workerRate(w, key, dtMs) {
  const before = prevWorkers.get(w.id);
  if (!before || !(dtMs > 0) || typeof w[key] !== "number" || w[key] < before[key]) return null;
  return ((w[key] - before[key]) * 1000) / dtMs;
}

function renderTables(s) {
  const workers = Array.isArray(s.workers) ? s.workers : [];
  const dt = prevWorkersAt ? s.now_ms - prevWorkersAt : 0;
  fillBody(
    $("workers"),
    workers.length
      ? workers.map((w) => {
          const tr = document.createElement("tr");
          const fresh = w.last_beat_ms_ago < 5000;
          const segs = workerRate(w, "segments", dt);
          const busy = workerRate(w, "busy_ms", dt);
          const rtf = w.audio_ms > 0 ? w.busy_ms / w.audio_ms : null;
          tr.append(
            cell(w.id, "mono"),
            cell(w.model || "–"),
            cell(fmtNum(segs), "num"),
            cell(busy === null ? "–" : `${Math.round(Math.min(busy / 1000, 1) * 100)}%`, "num"),
            cell(rtf === null ? "–" : rtf.toFixed(3), "num"),
            cell(fmtNum(w.pending ?? null), "num"),
            cell(fmtNum(w.plugin_errors ?? null), "num"),
            cell(fmtAgo(w.last_beat_ms_ago) + " ago", "num"),
            cell(pill(fresh ? "alive" : "late", fresh ? "ok" : "warn")),
          );
          return tr;
        })
      : [emptyRow(9, "No worker has beaten in the last 10 s.")],
  );
  prevWorkers = new Map(workers.map((w) => [w.id, w]));
  prevWorkersAt = s.now_ms;
  const plugins = Array.isArray(s.plugins) ? s.plugins : [];
  fillBody(
    $("plugins"),
    plugins.length
      ? plugins.map((p) => {
          const tr = document.createElement("tr");
          tr.append(cell(p.kind), cell(p.name), cell(p.version, "mono"));
          return tr;
        })
      : [emptyRow(3, "No plugins reported.")],
  );
  const known = new Set(COUNTERS.map((c) => c[0]));
  // Counters the page does not know yet (new `*_total` fields) are listed too.
  const extra = Object.keys(s)
    .filter((k) => k.endsWith("_total") && !known.has(k) && typeof s[k] === "number")
    .map((k) => [k, k.replace(/_total$/, "").replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase()), fmtNum]);
  const rows = [];
  for (const [key, label, f] of [...COUNTERS, ...extra]) {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = label;
    const present = typeof s[key] === "number";
    const td = cell(present ? exact(s[key], f) : "not reported", present ? "num" : "num muted");
    td.id = `c-${key}`;
    if (present) td.dataset.value = String(s[key]);
    if (present && ALERTING.has(key) && s[key] > 0) td.append(" ", pill("check", "warn"));
    tr.append(th, td);
    rows.push(tr);
  }
  fillBody($("counters"), rows);
}

// ---------------------------------------------------------------- polling

let prev = null;
let prevWorkers = new Map();
let prevWorkersAt = 0;
let okSince = null;

function rate(cur, key) {
  if (!prev) return null;
  const dt = (cur.now_ms - prev.now_ms) / 1000;
  const a = prev[key];
  const b = cur[key];
  if (!(dt > 0) || typeof a !== "number" || typeof b !== "number" || b < a) return null; // restart: a gap
  return (b - a) / dt;
}

function setPoll(state, text) {
  $("poll").dataset.state = state;
  $("poll-text").textContent = text;
}

function onStats(s, t) {
  charts.msgs.push(t, [rate(s, "pubsub_messages_total")]);
  charts.bytes.push(t, [rate(s, "pubsub_bytes_total")]);
  charts.tasks.push(t, [s.backlog ?? null, s.pending ?? null]);
  charts.enq.push(t, [rate(s, "tasks_enqueued_total")]);
  charts.finals.push(t, [rate(s, "finals_delivered_total"), rate(s, "partials_delivered_total")]);
  charts.sessions.push(t, [s.sessions_active ?? null]);
  const l = s.latency_ms;
  charts.latency.push(t, l ? [l.p50, l.p95, l.p99] : [null, null, null]);
  charts.rtf.push(t, [typeof s.rtf === "number" ? s.rtf : null]);
  charts.recovery.push(t, [rate(s, "tasks_reclaimed_total"), rate(s, "tasks_dead_lettered_total")]);
  charts.workers.push(t, [(s.workers || []).length, typeof s.oldest_pending_ms === "number" ? s.oldest_pending_ms / 1000 : null]);
  prev = s;

  $("m-gateway").textContent = s.gateway || "–";
  $("m-redis").textContent = s.redis_ok ? "ok" : "unreachable";
  $("m-subscriber").textContent = s.subscriber_live ? "live" : "down";
  $("m-workers").textContent = String((s.workers || []).length);
  $("m-updated").textContent = new Date().toLocaleTimeString();
  renderTables(s);
  const healthy = s.redis_ok && s.subscriber_live && (s.workers || []).length > 0;
  setPoll(healthy ? "ok" : "connecting", healthy ? "Healthy" : !s.redis_ok ? "Redis unreachable" : !s.subscriber_live ? "Subscriber down" : "No workers");
}

function onGap(t, why) {
  for (const c of Object.values(charts)) c.push(t, c.series.map(() => null));
  prev = null; // rates restart after an outage
  okSince = null;
  setPoll("down", why);
}

async function poll() {
  const started = performance.now();
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const token = new URLSearchParams(location.search).get("token");
    const url = token ? `/api/stats?token=${encodeURIComponent(token)}` : "/api/stats";
    const res = await fetch(url, { cache: "no-store", signal: ctl.signal });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const s = await res.json();
    if (okSince === null) okSince = Date.now();
    onStats(s, Date.now());
  } catch (e) {
    onGap(Date.now(), e.name === "AbortError" ? "No answer" : `Unreachable (${e.message})`);
  } finally {
    clearTimeout(timer);
  }
  drawAll();
  setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
}

function drawAll() {
  const now = Date.now();
  for (const c of Object.values(charts)) c.draw(now);
}

window.addEventListener("resize", drawAll);
poll();
