// The settle console: polls this node's /metrics (Prometheus text),
// /v1/cycles and /v1/forecast, and renders them. Read-only; no build step,
// no dependency. Raw values are kept in data-value attributes (counters as
// the node exported them) so that tests and scripts read what is shown.
"use strict";

const POLL_INTERVAL_MS = 1500;
// A fetch that takes longer is abandoned and reported.
const FETCH_TIMEOUT_MS = 5000;
// Polls kept for the throughput sparkline (about 6 minutes).
const HISTORY_POINTS_MAX = 240;
// Snapshots of the latency histogram kept for the windowed quantiles.
const LATENCY_WINDOW_MS = 10000;
const SNAPSHOTS_MAX = 64;
// Recent cycles shown.
const CYCLES_SHOWN_MAX = 20;
// Rows of the balances table (the node exports at most 1,024 per shard).
const BALANCE_ROWS_MAX = 1024;
const TOKEN_KEY = "settle-console-token";
// Minor units per major unit of the currencies the engine knows; 100 otherwise.
const MINOR_DIGITS = { JPY: 0, KRW: 0, CLP: 0, ISK: 0, BHD: 3, KWD: 3, OMR: 3 };

const state = {
  polls: 0,
  lastOk: 0,
  history: [],      // {t, tps}
  snapshots: [],    // {t, buckets: [[le, cum]...]}
  lastAnswered: null,
  timer: null,
};

// ---- credentials ---------------------------------------------------------

// The token comes from the URL fragment (never sent to the server) or the
// login field, and is kept in this tab's sessionStorage only.
function takeTokenFromFragment() {
  const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function fetchWithToken(path) {
  const headers = {};
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    return await fetch(path, { headers, cache: "no-store", credentials: "omit", signal: abort.signal });
  } finally {
    clearTimeout(timer);
  }
}

class FetchError extends Error {
  constructor(path, status, message) {
    super(message);
    this.path = path;
    this.status = status;
  }
}

async function errorOf(path, response) {
  let detail = "";
  try {
    const body = await response.json();
    detail = body.error || "";
  } catch (_) { /* not JSON */ }
  let hint = "";
  if (response.status === 401) hint = " — sign in with a bearer token (auditor, operator or admin)";
  if (response.status === 403) hint = " — this role may not read it (use an auditor, operator or admin token)";
  return new FetchError(path, response.status, `${path}: ${response.status} ${response.statusText}${detail ? ": " + detail : ""}${hint}`);
}

async function getText(path) {
  const response = await fetchWithToken(path);
  if (!response.ok) throw await errorOf(path, response);
  return response.text();
}

async function getJson(path) {
  const response = await fetchWithToken(path);
  if (!response.ok) throw await errorOf(path, response);
  return response.json();
}

// ---- the Prometheus text format -------------------------------------------

function parseValue(text) {
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  return Number(text);
}

// Samples by metric name: [{labels, value}]. Comments (# HELP, # TYPE, # EOF) are skipped.
function parseMetrics(text) {
  const samples = new Map();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line[0] === "#") continue;
    const labels = {};
    let i = 0;
    while (i < line.length && line[i] !== "{" && line[i] !== " ") i++;
    const name = line.slice(0, i);
    if (line[i] === "{") {
      i++;
      while (i < line.length && line[i] !== "}") {
        const eq = line.indexOf("=", i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim();
        let j = eq + 1;
        if (line[j] !== '"') break;
        j++;
        let value = "";
        while (j < line.length && line[j] !== '"') {
          if (line[j] === "\\" && j + 1 < line.length) {
            const next = line[j + 1];
            value += next === "n" ? "\n" : next;
            j += 2;
          } else {
            value += line[j];
            j++;
          }
        }
        labels[key] = value;
        i = j + 1;
        while (line[i] === "," || line[i] === " ") i++;
      }
      i++;
    }
    const rest = line.slice(i).trim().split(/\s+/);
    if (!name || rest.length === 0) continue;
    if (!samples.has(name)) samples.set(name, []);
    samples.get(name).push({ labels, value: parseValue(rest[0]) });
  }
  return samples;
}

function matches(labels, filter) {
  return Object.entries(filter).every(([k, v]) => labels[k] === v);
}

function series(metrics, name, filter = {}) {
  return (metrics.get(name) || []).filter((s) => matches(s.labels, filter));
}

function sum(metrics, name, filter = {}) {
  const found = series(metrics, name, filter);
  return found.length ? found.reduce((a, s) => a + s.value, 0) : null;
}

// Cumulative buckets [[le, count]] of a histogram without labels, sorted by le.
function buckets(metrics, name) {
  return series(metrics, name + "_bucket")
    .map((s) => [parseValue(s.labels.le), s.value])
    .sort((a, b) => a[0] - b[0]);
}

// histogram_quantile as Prometheus computes it: linear within the bucket the
// rank falls in; the highest finite bound if it falls in +Inf.
function quantile(q, cumulative) {
  if (cumulative.length === 0) return null;
  const total = cumulative[cumulative.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of cumulative) {
    if (count >= rank) {
      if (le === Infinity) return lower;
      if (count === below) return le;
      return lower + (le - lower) * ((rank - below) / (count - below));
    }
    lower = le;
    below = count;
  }
  return lower;
}

function difference(now, then) {
  return now.map(([le, count], i) => [le, count - (then[i] ? then[i][1] : 0)]);
}

// ---- formatting -----------------------------------------------------------

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const twoDigits = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });

function ms(value) {
  if (value === null || !isFinite(value)) return "–";
  if (value < 1) return value.toFixed(3);
  if (value < 100) return value.toFixed(2);
  return integer.format(value);
}

function money(value) {
  return value === null ? "–" : twoDigits.format(value);
}

function count(value) {
  return value === null ? "–" : integer.format(value);
}

function major(minor, currency) {
  const digits = currency in MINOR_DIGITS ? MINOR_DIGITS[currency] : 2;
  return new Intl.NumberFormat("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    .format(minor / Math.pow(10, digits));
}

function clock(date) {
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

// Sets an element's text and its raw value.
function show(id, value, text) {
  const el = document.getElementById(id);
  if (!el) return;
  el.dataset.value = value === null || value === undefined ? "" : String(value);
  el.textContent = text;
}

function cell(row, text, attrs = {}) {
  const td = document.createElement("td");
  for (const [k, v] of Object.entries(attrs)) td.setAttribute(k, v);
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function badge(row, text, kind) {
  const td = cell(row, "");
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  td.appendChild(span);
  return td;
}

function replaceRows(tbody, rows) {
  tbody.replaceChildren(...rows);
}

// ---- panels ---------------------------------------------------------------

function renderThroughput(m, now) {
  const results = ["created", "duplicate", "conflict", "rejected", "unavailable"];
  let answered = 0;
  for (const result of results) {
    const v = sum(m, "settle_transactions_total", { result }) || 0;
    if (result !== "unavailable") answered += v;
    show(`tx-${result}-total`, v, count(v));
  }
  show("tx-answered-total", answered, count(answered));
  const tps = sum(m, "settle_transactions_per_second");
  show("tx-per-second", tps, tps === null ? "–" : integer.format(tps));
  if (state.lastAnswered) {
    const seconds = (now - state.lastAnswered.t) / 1000;
    const rate = seconds > 0 ? (answered - state.lastAnswered.value) / seconds : 0;
    show("tx-poll-rate", rate, integer.format(Math.max(0, rate)));
  }
  state.lastAnswered = { t: now, value: answered };
  state.history.push({ t: now, tps: tps || 0 });
  while (state.history.length > HISTORY_POINTS_MAX) state.history.shift();
  drawSpark();
}

function drawSpark() {
  const line = document.querySelector("#throughput-spark polyline");
  const h = state.history;
  if (h.length < 2) return;
  const max = Math.max(1, ...h.map((p) => p.tps));
  const t0 = h[0].t;
  const span = Math.max(1, h[h.length - 1].t - t0);
  line.setAttribute("points", h.map((p) =>
    `${((p.t - t0) / span * 300).toFixed(1)},${(58 - p.tps / max * 54).toFixed(1)}`).join(" "));
}

function renderLatency(m, now) {
  const all = buckets(m, "settle_transaction_latency_ms");
  state.snapshots.push({ t: now, buckets: all });
  while (state.snapshots.length > SNAPSHOTS_MAX) state.snapshots.shift();
  // The oldest snapshot within the window is the baseline.
  const base = state.snapshots.find((s) => now - s.t <= LATENCY_WINDOW_MS) || state.snapshots[0];
  let windowed = base === state.snapshots[state.snapshots.length - 1] ? all : difference(all, base.buckets);
  // The node restarted (its counters began again): since its start, then.
  if (windowed.some(([, c]) => c < 0)) windowed = all;
  const seconds = Math.round((now - base.t) / 1000);
  const idle = windowed.length > 0 && windowed[windowed.length - 1][1] === 0;
  document.getElementById("latency-window-label").textContent =
    (seconds > 0 ? `last ${seconds} s` : "since start") + (idle ? " (idle)" : "");
  const rows = [["", windowed], ["all-", all]];
  for (const [prefix, b] of rows) {
    for (const [q, suffix] of [[0.5, "p50"], [0.99, "p99"], [0.999, "p999"]]) {
      const v = quantile(q, b);
      show(`latency-${prefix}${suffix}`, v, ms(v));
    }
  }
  const settlement = buckets(m, "settle_settlement_latency_ms");
  for (const [q, suffix] of [[0.5, "p50"], [0.99, "p99"], [0.999, "p999"]]) {
    const v = quantile(q, settlement);
    show(`settlement-${suffix}`, v, ms(v));
  }
}

function renderSettlement(m) {
  const cycles = sum(m, "settle_cycles_settled_total");
  const settled = sum(m, "settle_settled_transactions_total");
  const costs = sum(m, "settle_settlement_costs_total");
  const fx = sum(m, "settle_fx_costs_total");
  const savings = sum(m, "settle_cost_savings_total");
  const perTx = sum(m, "settle_cost_per_transaction");
  show("cycles-settled-total", cycles, count(cycles));
  show("settled-transactions-total", settled, count(settled));
  show("settlement-costs-usd", costs, money(costs));
  show("fx-costs-usd", fx, money(fx));
  show("cost-savings-usd", savings, money(savings));
  show("cost-per-transaction-usd", perTx, perTx === null ? "–" : perTx.toFixed(4));
  const naive = (costs || 0) + (savings || 0);
  const pct = naive > 0 ? 100 * (savings || 0) / naive : null;
  show("cost-savings-pct", pct, pct === null ? "–" : pct.toFixed(1));
}

function renderHealth(m) {
  const items = [
    ["settlement-failures-total", "settle_settlement_failures_total"],
    ["data-loss-events-total", "settle_data_loss_events_total"],
    ["log-entries-rejected-total", "settle_log_entries_rejected_total"],
    ["transactions-rolled-total", "settle_transactions_rolled_total"],
    ["connections-refused-total", "settle_connections_refused_total"],
  ];
  for (const [id, name] of items) {
    const v = sum(m, name);
    show(id, v, count(v));
    document.getElementById(id).classList.toggle("nonzero", (v || 0) > 0 && id !== "transactions-rolled-total");
  }
}

function renderShards(m) {
  const groups = series(m, "settle_raft_term").map((s) => s.labels.group);
  const one = (name, filter) => sum(m, name, filter);
  const rows = groups.map((group) => {
    const row = document.createElement("tr");
    row.dataset.group = group;
    const leader = one("settle_raft_leader", { group });
    const isLeader = one("settle_raft_is_leader", { group }) === 1;
    row.dataset.leader = String(leader);
    cell(row, group);
    if (leader) cell(row, `node ${leader}`, { "data-value": leader });
    else badge(row, "none", "none");
    if (isLeader) badge(row, "leader", "yes");
    else cell(row, "follower");
    cell(row, count(one("settle_raft_term", { group })));
    cell(row, count(one("settle_consensus_rounds_completed_total", { group })));
    const commitLag = one("settle_raft_commit_lag_entries", { group });
    cell(row, count(commitLag), { "data-value": commitLag, class: commitLag > 0 ? "nonzero" : "" });
    cell(row, count(one("settle_raft_apply_lag_entries", { group })));
    const replication = one("settle_raft_replication_lag_entries", { group });
    cell(row, replication === null ? "–" : count(replication));
    for (const window of ["RTGS", "T0", "T1", "T2"]) {
      const pending = one("settle_pending_transactions", { shard: group, window });
      cell(row, pending === null ? "–" : count(pending), { "data-window": window });
    }
    return row;
  });
  replaceRows(document.querySelector("#shards tbody"), rows);
}

function renderBalances(m) {
  const samples = series(m, "settle_balance_minor");
  const incoming = new Map(series(m, "settle_incoming_minor")
    .map((s) => [s.labels.participant + "/" + s.labels.currency, s.value]));
  const currencies = [...new Set(samples.map((s) => s.labels.currency))].sort();
  const participants = [...new Set(samples.map((s) => s.labels.participant))].sort().slice(0, BALANCE_ROWS_MAX);
  const byKey = new Map(samples.map((s) => [s.labels.participant + "/" + s.labels.currency, s.value]));
  const head = document.querySelector("#balances thead tr");
  const headCells = [document.createElement("th")];
  headCells[0].textContent = "participant";
  for (const c of currencies) {
    const th = document.createElement("th");
    th.textContent = c;
    headCells.push(th);
  }
  head.replaceChildren(...headCells);
  const rows = participants.map((p) => {
    const row = document.createElement("tr");
    cell(row, p);
    for (const c of currencies) {
      const key = p + "/" + c;
      if (!byKey.has(key)) {
        cell(row, "–");
        continue;
      }
      const v = byKey.get(key);
      const td = cell(row, major(v, c), { class: "balance" + (v < 0 ? " negative" : ""), "data-participant": p, "data-currency": c, "data-value": v });
      const inc = incoming.get(key) || 0;
      if (inc > 0) td.title = `${major(inc, c)} ${c} incoming, wire not confirmed`;
    }
    return row;
  });
  replaceRows(document.querySelector("#balances tbody"), rows);
}

function renderRails(m) {
  const names = ["closed", "half-open", "open"];
  const rails = series(m, "settle_rail_breaker_state");
  const rows = rails.map((s) => {
    const row = document.createElement("tr");
    row.dataset.rail = s.labels.rail;
    cell(row, s.labels.rail);
    const breaker = names[s.value] || String(s.value);
    badge(row, breaker, breaker).dataset.value = s.value;
    cell(row, count(sum(m, "settle_rail_breaker_opened_total", { rail: s.labels.rail })));
    return row;
  });
  replaceRows(document.querySelector("#rails tbody"), rows);
  document.getElementById("rails-note").textContent = rails.length ? ""
    : "no rails on this node (wires run on the control group's leader with --execution simulated)";
  const events = series(m, "settle_rail_wire_events_total");
  const list = [];
  for (const e of events) {
    const dt = document.createElement("dt");
    dt.textContent = "wires " + e.labels.event.replace("_", " ");
    const dd = document.createElement("dd");
    dd.textContent = count(e.value);
    dd.dataset.value = e.value;
    list.push(dt, dd);
  }
  document.getElementById("wire-events").replaceChildren(...list);
}

function renderCycles(answer) {
  const cycles = (answer.cycles || []).slice().reverse().slice(0, CYCLES_SHOWN_MAX);
  const rows = cycles.map((c) => {
    const row = document.createElement("tr");
    row.dataset.cycle = c.cycle_id;
    cell(row, String(c.cycle_id));
    cell(row, String(c.window));
    badge(row, String(c.status), String(c.status).toLowerCase());
    cell(row, String(c.method));
    cell(row, count(c.candidates));
    cell(row, count(c.settled), { "data-value": c.settled });
    cell(row, count(c.deferred));
    cell(row, money(c.cost ? c.cost.total : null));
    cell(row, money(c.naive_cost ? c.naive_cost.total : null));
    const naive = c.naive_cost ? c.naive_cost.total : 0;
    const saved = c.settled > 0 && naive > 0 ? 100 * (naive - c.cost.total) / naive : null;
    cell(row, saved === null ? "–" : saved.toFixed(1) + " %");
    const took = c.applied_at_us && c.started_at_us ? (c.applied_at_us - c.started_at_us) / 1000 : null;
    cell(row, took === null ? "–" : ms(took) + " ms");
    cell(row, c.applied_at_us ? clock(new Date(c.applied_at_us / 1000)) : "–");
    return row;
  });
  replaceRows(document.querySelector("#cycles tbody"), rows);
  document.getElementById("cycles-note").textContent = rows.length ? "" : "no cycle yet";
}

function renderForecast(el, answer) {
  el.replaceChildren();
  el.dataset.state = "ok";
  // The forecast's shape is the node's; show its first list as a table.
  const list = Array.isArray(answer) ? answer
    : Object.values(answer).find((v) => Array.isArray(v)) || [];
  if (list.length === 0) {
    el.textContent = "forecast: nothing to show";
    return;
  }
  const keys = Object.keys(list[0]).filter((k) => typeof list[0][k] !== "object");
  const table = document.createElement("table");
  const head = document.createElement("tr");
  for (const k of keys) {
    const th = document.createElement("th");
    th.textContent = k.replace(/_/g, " ");
    head.appendChild(th);
  }
  table.appendChild(head);
  for (const item of list.slice(0, 50)) {
    const row = document.createElement("tr");
    for (const k of keys) {
      const v = item[k];
      cell(row, typeof v === "number" && !Number.isInteger(v) ? v.toFixed(2) : String(v));
    }
    table.appendChild(row);
  }
  el.appendChild(table);
}

async function pollForecast() {
  const el = document.getElementById("forecast");
  try {
    const response = await fetchWithToken("/v1/forecast");
    if (response.status !== 200) {
      el.dataset.state = "none";
      el.textContent = `no forecast (${response.status === 404 ? "not served by this node" : "HTTP " + response.status})`;
      return;
    }
    renderForecast(el, await response.json());
  } catch (e) {
    el.dataset.state = "none";
    el.textContent = "no forecast";
  }
}

async function pollCycles() {
  // after = 2^53 - 1 lists nothing and says the next cycle id.
  const head = await getJson("/v1/cycles?after=9007199254740991&max=1");
  const next = head.next_cycle_id || 0;
  const after = Math.max(0, next - 1 - CYCLES_SHOWN_MAX);
  renderCycles(await getJson(`/v1/cycles?after=${after}&max=${CYCLES_SHOWN_MAX}`));
}

// ---- the loop -------------------------------------------------------------

function showError(message) {
  const banner = document.getElementById("error-banner");
  if (message) {
    banner.textContent = message;
    banner.hidden = false;
  } else {
    banner.hidden = true;
    banner.textContent = "";
  }
}

function markStatus() {
  const dot = document.getElementById("status-dot");
  const age = document.getElementById("last-update-age");
  if (!state.lastOk) return;
  const seconds = Math.round((Date.now() - state.lastOk) / 1000);
  age.textContent = seconds >= 2 ? `(${seconds} s ago)` : "";
  if (!dot.classList.contains("bad")) {
    dot.className = "dot " + (seconds > 5 ? "stale" : "ok");
  }
}

async function poll() {
  const now = Date.now();
  const errors = [];
  try {
    const m = parseMetrics(await getText("/metrics"));
    renderThroughput(m, now);
    renderLatency(m, now);
    renderSettlement(m);
    renderHealth(m);
    renderShards(m);
    renderBalances(m);
    renderRails(m);
  } catch (e) {
    errors.push(e.message || String(e));
  }
  try {
    await pollCycles();
  } catch (e) {
    errors.push(e.message || String(e));
  }
  await pollForecast();
  const dot = document.getElementById("status-dot");
  if (errors.length === 0) {
    state.polls += 1;
    state.lastOk = Date.now();
    const time = document.getElementById("last-update");
    time.textContent = clock(new Date(state.lastOk));
    time.dateTime = new Date(state.lastOk).toISOString();
    time.dataset.pollCount = String(state.polls);
    dot.className = "dot ok";
    dot.title = "polling every " + POLL_INTERVAL_MS / 1000 + " s";
    showError("");
  } else {
    dot.className = "dot bad";
    dot.title = "the last poll failed";
    showError("Could not update: " + errors.join("; ") + (state.lastOk ? " (figures below are from the last good update)" : ""));
  }
  markStatus();
  state.timer = setTimeout(poll, POLL_INTERVAL_MS);
}

function restart() {
  clearTimeout(state.timer);
  poll();
}

function start() {
  takeTokenFromFragment();
  document.getElementById("node-address").textContent = location.host;
  const forget = document.getElementById("forget-token");
  forget.hidden = !token();
  document.getElementById("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    forget.hidden = !token();
    restart();
  });
  forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    forget.hidden = true;
    restart();
  });
  setInterval(markStatus, 1000);
  poll();
}

document.addEventListener("DOMContentLoaded", start);
