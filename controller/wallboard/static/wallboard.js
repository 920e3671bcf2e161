// Supervisor wallboard: signs in with a supervisor (or admin) token, keeps one WebSocket open
// to /api/wallboard/stream (snapshot, then deltas; a reconnect gets a fresh snapshot) and
// draws queues, agents and today's charts. Actions go to the agents' own routes.
// Everything is inserted as text (textContent), never as HTML.

import { DEFAULT_LANG, LANGUAGES, pickLanguage, translate } from "./i18n.js";
import { barChart, slChart, stackedBars } from "./charts.js";

const TOKEN_KEY = "acd-wallboard-token";
const LANG_KEY = "acd-wallboard-lang";

const state = {
  lang: DEFAULT_LANG,
  token: null,
  me: null,
  ws: null,
  retry: 0,
  offset: 0, // server clock - this PC's clock, ms
  sl: 20,
  target: 0.8,
  queues: {},
  agents: {},
  charts: null,
  chartQueue: "*",
  pauseFor: null,
};

const $ = (sel) => document.querySelector(sel);
const t = (key, params) => translate(state.lang, key, params);

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// ------------------------------------------------------------------ time

function serverNow() {
  return Date.now() + state.offset;
}

function seconds(iso) {
  if (!iso) return null;
  return Math.max(0, (serverNow() - Date.parse(iso)) / 1000);
}

function duration(s) {
  if (s === null || s === undefined) return t("none");
  const total = Math.floor(s);
  const hh = Math.floor(total / 3600);
  const mm = Math.floor((total % 3600) / 60);
  const ss = String(total % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** Longest wait against the service-level seconds: ok, warn (past it), bad (past twice it). */
function waitLevel(s) {
  if (s === null) return "ok";
  if (s > state.sl * 2) return "bad";
  return s > state.sl ? "warn" : "ok";
}

function slLevel(value) {
  if (value === null || value === undefined) return "ok";
  if (value < state.target - 0.1) return "bad";
  return value < state.target ? "warn" : "ok";
}

function pct(value) {
  return value === null || value === undefined ? t("none") : `${Math.round(value * 100)}%`;
}

/** Elements showing a running time carry data-since; one timer updates them all. */
function tickTimes() {
  for (const node of document.querySelectorAll("[data-since]")) {
    const s = seconds(node.dataset.since);
    node.textContent = duration(s);
    if (node.dataset.level === "wait") node.dataset.threshold = waitLevel(s);
  }
}

// ------------------------------------------------------------------ sign-in

function savedToken() {
  return localStorage.getItem(TOKEN_KEY) || sessionStorage.getItem(TOKEN_KEY);
}

function tokenFromFragment() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(data.message || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return data;
}

async function signIn(token, remember) {
  state.token = token;
  let me;
  try {
    me = await api("GET", "/api/me");
  } catch (err) {
    state.token = null;
    return err.status === 401 ? t("login.invalid") : t("login.failed", { message: err.message });
  }
  if (me.role === "agent") {
    state.token = null;
    return t("login.agent");
  }
  state.me = me;
  if (remember !== undefined) {
    localStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(TOKEN_KEY);
    (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
  }
  showBoard();
  return null;
}

function showLogin(error) {
  $("#board-view").hidden = true;
  $("#sign-out").hidden = true;
  $("#login-view").hidden = false;
  const box = $("#login-error");
  box.hidden = !error;
  box.textContent = error || "";
  $("#token").setAttribute("aria-invalid", error ? "true" : "false");
  $("#token").focus();
}

function showBoard() {
  $("#login-view").hidden = true;
  $("#board-view").hidden = false;
  $("#sign-out").hidden = false;
  renderViewer();
  connect();
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.me = null;
  if (state.ws) {
    state.ws.onclose = null;
    state.ws.close();
    state.ws = null;
  }
  setConnection("disconnected");
  showLogin(null);
}

function renderViewer() {
  const me = state.me;
  if (!me) return;
  $("#viewer").textContent = me.role === "admin"
    ? t("viewer.admin")
    : t("viewer.supervisor", { name: me.name || me.supervisor_id, queues: (me.queues || []).join(", ") });
}

// ------------------------------------------------------------------ stream

function setConnection(which) {
  const box = document.querySelector("[data-testid=connection]");
  box.dataset.state = which;
  box.querySelector(".conn-text").textContent = t(`conn.${which}`);
}

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/wallboard/stream?token=${encodeURIComponent(state.token)}`);
  state.ws = ws;
  ws.onopen = () => {
    state.retry = 0;
    setConnection("connected");
  };
  ws.onmessage = (msg) => {
    let frame;
    try {
      frame = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (frame.server_time) state.offset = Date.parse(frame.server_time) - Date.now();
    onFrame(frame);
  };
  ws.onclose = () => {
    if (state.ws !== ws || !state.token) return;
    setConnection("connecting");
    // back off 1, 2, 4 ... 15 s; the server sends a whole snapshot on the next connection
    const delay = Math.min(15000, 1000 * 2 ** state.retry);
    state.retry += 1;
    setTimeout(() => {
      if (state.ws === ws && state.token) connect();
    }, delay);
  };
}

function onFrame(frame) {
  if (frame.type === "snapshot") {
    state.sl = frame.service_level_seconds;
    state.target = frame.service_level_target;
    state.queues = frame.queues;
    state.agents = frame.agents;
    renderQueues();
    renderAgents();
  } else if (frame.type === "delta") {
    for (const [name, view] of Object.entries(frame.queues || {})) {
      if (view === null) delete state.queues[name];
      else state.queues[name] = view;
    }
    for (const [id, view] of Object.entries(frame.agents || {})) {
      if (view === null) delete state.agents[id];
      else state.agents[id] = view;
    }
    if (Object.keys(frame.queues || {}).length) renderQueues();
    const changed = Object.keys(frame.agents || {});
    if (changed.length) renderAgents(changed);
  } else if (frame.type === "charts") {
    state.charts = frame;
    renderChartChoices();
    renderCharts();
    renderQueues();
    renderAgents();
  }
}

// ------------------------------------------------------------------ queues

function todayOf(name) {
  const rows = state.charts && state.charts.queues[name];
  return rows && rows.length ? rows[rows.length - 1] : null;
}

function stat(label, value, extra) {
  return h("div", { class: "stat", ...(extra || {}) }, h("span", { class: "stat-label", text: label }), value);
}

function renderQueues() {
  const host = $("#queues");
  const cards = [];
  for (const name of Object.keys(state.queues).sort()) {
    const q = state.queues[name];
    const today = todayOf(name);
    const longest = seconds(q.longest_since);
    const stats = h(
      "div",
      { class: "stats" },
      stat(t("queue.waiting"), h("span", { class: "stat-value", "data-testid": "waiting-count", text: String(q.waiting.length) })),
      stat(
        t("queue.longest"),
        h("span", {
          class: "stat-value",
          "data-testid": "longest-wait",
          "data-since": q.longest_since || null,
          "data-level": "wait",
          "data-threshold": waitLevel(longest),
          text: q.longest_since ? duration(longest) : t("none"),
        }),
      ),
      stat(t("queue.talking"), h("span", { class: "stat-value", text: String(q.talking) })),
      stat(
        t("queue.sl"),
        h("span", {
          class: "stat-value",
          "data-testid": "service-level",
          "data-threshold": slLevel(today && today.service_level),
          text: pct(today && today.service_level),
        }),
      ),
      stat(t("queue.asa"), h("span", { class: "stat-value", text: today && today.average_speed_of_answer !== null ? `${Math.round(today.average_speed_of_answer)} s` : t("none") })),
    );
    const callers = q.waiting.length
      ? h("ol", { class: "callers", "data-testid": "callers" }, ...q.waiting.map((c) => h(
        "li",
        { "data-testid": "caller", "data-call": c.call_id },
        h("span", { class: "caller-id", text: c.caller_name ? `${c.caller_name} (${c.caller_number})` : c.caller_number || c.call_id }),
        c.priority ? h("span", { class: "badge", text: t("queue.priority", { n: c.priority }) }) : null,
        h("span", { class: "timer", "data-since": c.arrived_at, "data-level": "wait", "data-threshold": waitLevel(seconds(c.arrived_at)), text: duration(seconds(c.arrived_at)) }),
      )))
      : h("p", { class: "muted", text: t("queue.nobody") });
    const ringing = q.ringing.length
      ? h("ul", { class: "ringing", "data-testid": "ringing" }, ...q.ringing.map((r) => h(
        "li",
        { "data-testid": "ring", "data-agent": r.agent_id },
        h("span", { text: t("queue.ring_to", { caller: r.caller_number || r.call_id, agent: r.agent_name }) }),
        h("span", { class: "timer", "data-since": r.since, text: duration(seconds(r.since)) }),
      )))
      : h("p", { class: "muted", text: t("queue.ringing_none") });
    const byState = h("ul", { class: "by-state" }, ...Object.entries(q.agents).map(([s, n]) => h(
      "li", { class: `pill st-${s}`, "data-state": s }, `${t(`state.${s}`)}: ${n}`,
    )));
    cards.push(h(
      "article",
      { class: "card queue", "data-testid": "queue", "data-queue": name, "aria-labelledby": `q-${name}` },
      h("h3", { id: `q-${name}`, text: name }),
      stats,
      h("h4", { text: `${t("queue.callers")} (${q.waiting.length})` }),
      callers,
      h("h4", { text: t("queue.ringing") }),
      ringing,
      h("h4", { text: t("queue.agents") }),
      byState,
    ));
  }
  host.replaceChildren(...cards);
}

// ------------------------------------------------------------------ agents

/** Today's offer outcomes of an agent; null until the first charts frame (shown as "—"). */
function outcomesOf(id) {
  if (!state.charts) return null;
  return state.charts.outcomes[id] || { accepted: 0, rejected: 0, no_answer: 0, busy: 0, unreachable: 0 };
}

/** Rebuild the rows of `changed` agents only (all of them without it); keeps the focused button. */
function renderAgents(changed) {
  const body = $("#agents-body");
  const focused = document.activeElement && document.activeElement.dataset.action
    ? `${document.activeElement.dataset.agent}:${document.activeElement.dataset.action}` : null;
  const rowOf = (id) => body.querySelector(`tr[data-agent="${CSS.escape(id)}"]`);
  if (changed && changed.every((id) => state.agents[id] && rowOf(id))) {
    for (const id of changed) rowOf(id).replaceWith(agentRow(id));
  } else {
    const ids = Object.keys(state.agents).sort((a, b) => state.agents[a].name.localeCompare(state.agents[b].name));
    if (!ids.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "muted", text: t("agents.none") })));
      return;
    }
    body.replaceChildren(...ids.map(agentRow));
  }
  if (focused) {
    const [agent, action] = focused.split(":");
    const again = body.querySelector(`[data-agent="${CSS.escape(agent)}"][data-action="${action}"]`);
    if (again) again.focus();
  }
}

function agentRow(id) {
  const a = state.agents[id];
  const o = outcomesOf(id);
  const current = a.call || a.offer;
  const stateCell = h(
    "td",
    { "data-testid": "agent-state" },
    h("span", { class: `pill st-${a.state}`, "data-state": a.state, text: t(`state.${a.state}`) }),
    a.pause_reason ? h("span", { class: "reason", text: ` ${a.pause_reason}` }) : null,
    a.not_responding ? h("span", { class: "badge bad", "data-testid": "not-responding", text: t("agents.not_responding") }) : null,
  );
  const actions = h("td", { class: "actions" });
  const button = (action, label, aria) => h("button", {
    type: "button", class: "btn btn-small", "data-action": action, "data-agent": id,
    "data-testid": `action-${action}`, "aria-label": t(aria, { name: a.name }), text: t(label),
  });
  if (a.state !== "logged_out") {
    if (a.state !== "paused") actions.append(button("pause", "action.pause", "action.pause_label"));
    if (a.state === "paused" || a.state === "not_responding") actions.append(button("ready", "action.ready", "action.ready_label"));
    actions.append(button("logout", "action.logout", "action.logout_label"));
  }
  return h(
    "tr",
    { "data-testid": "agent", "data-agent": id },
    h("th", { scope: "row", text: a.name }),
    stateCell,
    h("td", { class: "timer", "data-since": a.since || null, text: duration(seconds(a.since)) }),
    h("td", { "data-testid": "agent-caller", text: current ? current.caller_name || current.caller_number || t("none") : t("none") }),
    // calls taken today from the history (accepted offers); the engine's count until it arrives
    h("td", { class: "num", "data-testid": "taken", text: String(o ? o.accepted : a.calls_taken) }),
    h("td", { class: "num", "data-testid": "rejected", text: o ? String(o.rejected) : t("none") }),
    h("td", { class: "num", "data-testid": "missed", text: o ? String(o.no_answer) : t("none") }),
    h("td", { class: "num", "data-testid": "busy", text: o ? String(o.busy) : t("none") }),
    actions,
  );
}

async function act(agentId, action, body) {
  const box = $("#action-error");
  box.hidden = true;
  try {
    const view = await api("POST", `/api/agents/${encodeURIComponent(agentId)}/${action}`, body);
    $("#announce").textContent = t("action.done", { name: view.name, state: t(`state.${view.state}`) });
  } catch (err) {
    box.textContent = t("action.failed", { message: err.message });
    box.hidden = false;
  }
}

function onAgentsClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const { agent, action } = button.dataset;
  if (action === "pause") {
    state.pauseFor = agent;
    $("#pause-who").textContent = t("pause.who", { name: state.agents[agent]?.name || agent });
    $("#pause-reason").value = "";
    $("#pause-dialog").showModal();
    $("#pause-reason").focus();
  } else {
    act(agent, action);
  }
}

// ------------------------------------------------------------------ charts

function renderChartChoices() {
  const select = $("#chart-queue");
  const names = Object.keys((state.charts && state.charts.queues) || {}).filter((n) => n !== "*").sort();
  const wanted = ["*", ...names];
  if (!wanted.includes(state.chartQueue)) state.chartQueue = "*";
  select.replaceChildren(...wanted.map((n) => h("option", { value: n, text: n === "*" ? t("charts.all") : n })));
  select.value = state.chartQueue;
}

/** The day from its first call (at least the last 4 hours), so the bars stay readable. */
function visibleRows(all) {
  const first = all.findIndex((r) => r.offered > 0);
  const start = Math.max(0, Math.min(first < 0 ? all.length : first, all.length - 16));
  return all.slice(start);
}

function renderCharts() {
  const c = state.charts;
  const rows = visibleRows((c && c.queues[state.chartQueue]) || []);
  const outcomes = (c && c.outcomes) || {};
  $("#charts-empty").hidden = rows.some((r) => r.offered > 0) || Object.keys(outcomes).length > 0;
  const labels = rows.map((r) => new Date(r.start).toLocaleTimeString(state.lang, { hour: "2-digit", minute: "2-digit" }));
  const keys = ["offered", "answered", "abandoned", "overflowed"];
  const series = keys.map((k) => ({ key: k, label: t(`series.${k}`), cls: `s-${k}`, values: rows.map((r) => r[k]) }));
  const total = Object.fromEntries(keys.map((k) => [k, rows.reduce((n, r) => n + r[k], 0)]));
  barChart($("#chart-volume"), labels, series, t("charts.volume"), t("chart.volume_desc", { n: rows.length, ...total }));
  const last = rows.length ? rows[rows.length - 1] : null;
  const asaNow = last && last.average_speed_of_answer !== null ? `${Math.round(last.average_speed_of_answer)} s` : t("none");
  slChart(
    $("#chart-sl"), labels, rows.map((r) => r.service_level), rows.map((r) => r.average_speed_of_answer), state.target,
    { sl: t("series.sl"), asa: t("series.asa"), target: t("series.target", { pct: pct(state.target) }) },
    t("charts.sl"), t("chart.sl_desc", { sl: pct(last && last.service_level), target: pct(state.target), asa: asaNow }),
  );
  const okeys = ["accepted", "rejected", "no_answer", "busy", "unreachable"].map((k) => ({ key: k, label: t(`outcome.${k}`), cls: `o-${k}` }));
  const agentRows = Object.keys(outcomes).sort().map((id) => ({ id, name: state.agents[id]?.name || id, counts: outcomes[id] }));
  stackedBars($("#chart-outcomes"), agentRows, okeys, t("charts.outcomes"), t("chart.outcomes_desc", { n: agentRows.length }));
}

// ------------------------------------------------------------------ language

function applyLanguage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.title = t("app.title");
  const conn = document.querySelector("[data-testid=connection]");
  conn.querySelector(".conn-text").textContent = t(`conn.${conn.dataset.state}`);
  renderViewer();
  if (state.me) {
    renderQueues();
    renderAgents();
    if (state.charts) {
      renderChartChoices();
      renderCharts();
    }
  }
}

// ------------------------------------------------------------------ start

function start() {
  state.lang = pickLanguage(localStorage.getItem(LANG_KEY) || DEFAULT_LANG);
  const select = $("#lang-select");
  select.replaceChildren(...LANGUAGES.map((l) => h("option", { value: l.code, text: l.label })));
  select.value = state.lang;
  select.addEventListener("change", () => {
    state.lang = pickLanguage(select.value);
    localStorage.setItem(LANG_KEY, state.lang);
    applyLanguage();
  });
  applyLanguage();
  $("#login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (!token) {
      showLogin(t("login.empty"));
      return;
    }
    const error = await signIn(token, $("#remember").checked);
    if (error) showLogin(error);
    else $("#token").value = "";
  });
  $("#sign-out").addEventListener("click", signOut);
  $("#agents-body").addEventListener("click", onAgentsClick);
  $("#chart-queue").addEventListener("change", (event) => {
    state.chartQueue = event.target.value;
    renderCharts();
  });
  $("#pause-cancel").addEventListener("click", () => $("#pause-dialog").close());
  $("#pause-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const agent = state.pauseFor;
    $("#pause-dialog").close();
    if (agent) act(agent, "pause", { reason: $("#pause-reason").value.trim() });
  });
  setInterval(tickTimes, 1000);
  const fromFragment = tokenFromFragment();
  const token = fromFragment || savedToken();
  if (token) {
    signIn(token, fromFragment ? false : undefined).then((error) => {
      if (error) showLogin(error);
    });
  } else {
    showLogin(null);
  }
}

start();
