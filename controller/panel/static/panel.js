// Agent panel: sign-in, the agent's state, live call offers (controller WebSocket) and
// WhatsApp chats (sidecar HTTP + WebSocket). Contract: docs/panel.md.
//
// One `state` object holds everything; each screen region has its own render function that
// reads it. Data from the network is only ever inserted with textContent / attributes, never
// as HTML.

import { DEFAULT_LANG, LANGUAGES, explanationKey, hasString, pickLanguage, translate } from "./i18n.js";

// --------------------------------------------------------------------------- state

const TOKEN_KEY = "acd-panel-token";
const LANG_KEY = "acd-panel-lang";
// Pause reasons offered in the select; the API gets the words in the agent's language (they are
// shown as such to supervisors and in reports), plus a free-text "other".
const PAUSE_REASONS = ["break", "lunch", "training", "meeting"];

const state = {
  lang: DEFAULT_LANG,
  config: { whatsapp_url: null, language: DEFAULT_LANG, demo: false },
  token: null,
  me: null, // {agent_id, name}
  clockOffset: 0, // server time − local time, ms (from frames' server_time)

  // controller stream
  agent: null,
  offer: null,
  call: null,
  offerBusy: false, // an accept/reject request is in flight
  offerError: null,

  // WhatsApp
  chat: {
    conversations: new Map(), // id → conversation, in the order first seen
    unread: new Set(),
    selected: null, // conversation id
    messages: [], // the selected conversation's messages, sorted by sort_key
    byId: new Map(), // message id → message (selected conversation)
    expanded: new Set(), // message ids whose error details are open
    cursor: null, // highest stream cursor seen (resume point)
    older: null, // page token for the messages before the oldest shown; null = the chat starts there
    loadingOlder: false,
    olderError: null,
    parked: new Map(), // id → {message, cursor}: stream versions of messages older than the pages loaded
    alerts: new Map(), // key → alert, shown as banners
    dismissed: new Set(),
    templates: null, // null = not loaded yet
    loadError: null,
    sending: false,
  },
};

const streams = { calls: null, chat: null };

// --------------------------------------------------------------------------- small helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function t(key, params) {
  return translate(state.lang, key, params);
}

/** Build an element: h("p", {class: "x", dataset: {a: 1}}, "text", child). Strings become text nodes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function show(el, visible) {
  if (el) el.hidden = !visible;
}

function serverNow() {
  return Date.now() + state.clockOffset;
}

function parseTime(iso) {
  if (!iso) return null;
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/** 75 → "1:15"; 3725 → "1:02:05". */
function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** A Date for epoch milliseconds, or null for what no Date can hold (1e300 s, Infinity, NaN). */
function validDate(ms) {
  const d = typeof ms === "number" ? new Date(ms) : null;
  return d && Number.isFinite(d.getTime()) ? d : null;
}

function formatTime(ms, withSeconds = false) {
  const d = validDate(ms);
  if (!d) return "";
  const opts = withSeconds ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(state.lang, opts).format(d);
}

function formatDateTime(ms) {
  const d = validDate(ms);
  return d ? new Intl.DateTimeFormat(state.lang, { dateStyle: "short", timeStyle: "short" }).format(d) : "";
}

function outcomeText(outcome) {
  const key = `outcome.${outcome}`;
  return hasString(key) ? t(key) : t("outcome.unknown", { outcome: outcome ?? "?" });
}


// --------------------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** JSON request with the agent token; throws ApiError carrying the API's `message`/`error` text. */
async function api(path, { method = "GET", body, base = "" } = {}) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(base + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, t("api.network"), null);
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data.message === "string" && data.message) ||
      (data && typeof data.error === "string" && data.error) ||
      (text && !data ? text.slice(0, 300) : "") ||
      t("api.status", { status: response.status });
    throw new ApiError(response.status, message, data);
  }
  return data;
}

function sidecarUrl(path) {
  return state.config.whatsapp_url.replace(/\/+$/, "") + path;
}

function wsUrl(httpUrl) {
  return httpUrl.replace(/^http/, "ws");
}

// --------------------------------------------------------------------------- reconnecting WebSocket

/**
 * A WebSocket that reconnects with backoff (0.5 s doubling to 10 s, ±25 % jitter) and reports
 * connected | connecting | disconnected. After three failed attempts in a row it reports
 * "disconnected" while it keeps trying, so a long outage is visible as such.
 */
class Stream {
  constructor({ url, onFrame, onOpen, onStatus, connectedOnOpen = true }) {
    this.url = url; // function: URL for the next attempt (the chat stream resumes with ?after=)
    // false: "connected" only once the first frame is applied (the controller's snapshot), so
    // the indicator never says connected while the page still shows stale state.
    this.connectedOnOpen = connectedOnOpen;
    this.onFrame = onFrame;
    this.onOpen = onOpen;
    this.onStatus = onStatus;
    this.failures = 0;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.onStatus("disconnected");
  }

  connect() {
    if (this.stopped) return;
    this.onStatus(this.failures >= 3 ? "disconnected" : "connecting");
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.retry();
      return;
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      // Both servers refuse a bad token during the handshake, so an open socket is a good one.
      opened = true;
      this.failures = 0;
      this.onOpen?.();
      if (this.connectedOnOpen) this.onStatus("connected");
    };
    let first = true;
    ws.onmessage = (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        frame = null;
      }
      if (frame && typeof frame === "object") this.onFrame(frame);
      if (first) {
        first = false;
        this.onStatus("connected");
      }
    };
    ws.onclose = () => {
      this.ws = null;
      // A socket that opened and then dropped retries quickly; refused attempts back off.
      this.failures = opened ? 1 : this.failures + 1;
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.onStatus(this.failures >= 3 ? "disconnected" : "connecting");
    const base = Math.min(10000, 500 * 2 ** Math.max(0, this.failures - 1));
    const delay = base * (0.75 + Math.random() * 0.5);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}

function renderConnection(which, status) {
  const el = $(which === "calls" ? "[data-testid=connection]" : "[data-testid=chat-connection]");
  el.dataset.state = status;
  $(".conn-text", el).textContent = t(`conn.${status}`);
}

// --------------------------------------------------------------------------- sign-in

function storedToken() {
  return localStorage.getItem(TOKEN_KEY) || sessionStorage.getItem(TOKEN_KEY);
}

function storeToken(token, remember) {
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  (remember ? localStorage : sessionStorage).setItem(TOKEN_KEY, token);
}

/** `#token=...` in the address: take it, then remove it so it is not bookmarked or shared. */
function tokenFromFragment() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname + location.search);
  try {
    return decodeURIComponent(match[1]);
  } catch {
    return match[1];
  }
}

function showLoginError(text) {
  const el = $("[data-testid=login-error]");
  el.textContent = text || "";
  show(el, Boolean(text));
  $("#token").setAttribute("aria-invalid", text ? "true" : "false");
}

function showLogin(errorText) {
  show($("#login-view"), true);
  show($("#agent-view"), false);
  show($("#sign-out"), false);
  show($("#connections"), false);
  showLoginError(errorText);
  $("#token").focus();
}

/** Check a token with GET /api/me; on success start the agent view. Returns an error text or null. */
async function signIn(token, remember) {
  state.token = token;
  let me;
  try {
    me = await api("/api/me");
  } catch (err) {
    state.token = null;
    if (err.status === 401 || err.status === 403) return t("login.invalid");
    if (err.status === 0) return t("login.offline");
    return t("login.failed", { message: err.message });
  }
  if (!me || me.role !== "agent" || !me.agent_id) {
    state.token = null;
    return t("login.admin");
  }
  if (remember !== undefined) storeToken(token, remember);
  state.me = me;
  startAgentView();
  return null;
}

async function onLoginSubmit(event) {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) {
    showLoginError(t("login.empty"));
    $("#token").focus();
    return;
  }
  const button = $("[data-testid=login-submit]");
  button.disabled = true;
  button.textContent = t("login.checking");
  const error = await signIn(token, $("#remember").checked);
  button.disabled = false;
  button.textContent = t("login.submit");
  if (error) {
    showLoginError(error);
    $("#token").focus();
  } else {
    $("#token").value = "";
  }
}

function signOut() {
  localStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(TOKEN_KEY);
  for (const key of Object.keys(streams)) {
    streams[key]?.stop();
    streams[key] = null;
  }
  state.token = null;
  state.me = null;
  state.agent = state.offer = state.call = null;
  resetChat();
  $("#offer-slot").replaceChildren();
  $("#alerts").replaceChildren();
  show($("#chat"), false);
  show($("[data-testid=chat-connection]"), false);
  $(".columns").classList.add("no-chat");
  showLogin(null);
}

function startAgentView() {
  show($("#login-view"), false);
  show($("#agent-view"), true);
  show($("#sign-out"), true);
  show($("#connections"), true);
  $("[data-testid=agent-name]").textContent = state.me.name || state.me.agent_id;
  renderAll();
  $("#state-heading").focus?.();

  streams.calls = new Stream({
    url: () =>
      `${wsUrl(location.origin)}/api/agents/${encodeURIComponent(state.me.agent_id)}/stream?token=${encodeURIComponent(state.token)}`,
    onFrame: onControllerFrame,
    connectedOnOpen: false,
    onOpen: () => {
      state.lastSeq = -1;
    },
    onStatus: (s) => renderConnection("calls", s),
  });
  streams.calls.start();
  // The stream's snapshot fills everything; this GET shows the state even before it arrives.
  api(`/api/agents/${encodeURIComponent(state.me.agent_id)}`)
    .then((agent) => {
      if (!state.agent) {
        state.agent = agent;
        renderStateBar();
      }
    })
    .catch(() => {});

  if (state.config.whatsapp_url) startChat();
}

// --------------------------------------------------------------------------- controller frames

function noteServerTime(frame) {
  const ms = parseTime(frame.server_time);
  if (ms !== null) state.clockOffset = ms - Date.now();
}

function onControllerFrame(frame) {
  noteServerTime(frame);
  // seq increases per connection; an old or repeated frame is ignored.
  if (typeof frame.seq === "number") {
    if (frame.type !== "snapshot" && state.lastSeq !== undefined && frame.seq <= state.lastSeq) return;
    state.lastSeq = frame.seq;
  }
  switch (frame.type) {
    case "snapshot":
      // Whole state after (re)connecting: replace, do not merge.
      state.agent = frame.agent ?? null;
      state.call = frame.call ?? null;
      setOffer(frame.offer ?? null, { quiet: true });
      break;
    case "agent":
      state.agent = frame.agent ?? state.agent;
      break;
    case "offer":
      if (frame.offer) setOffer(frame.offer);
      break;
    case "offer_ended":
      endOffer(frame);
      break;
    case "call":
      state.call = frame.call ?? null;
      break;
    default:
      return; // unknown frame types are ignored
  }
  renderStateBar();
  renderCalls();
}

function setOffer(offer, { quiet = false } = {}) {
  const isNew = offer && (!state.offer || state.offer.id !== offer.id);
  if (!offer || isNew) {
    state.offerBusy = false;
    state.offerError = null;
  }
  state.offer = offer;
  renderOffer(isNew && !quiet);
  if (isNew) notifyOffer(offer);
}

function endOffer(frame) {
  if (!state.offer || state.offer.id !== frame.offer_id) return;
  // The detail is a technical word (ring_timeout, answered_elsewhere…): shown only when the
  // outcome itself does not say enough.
  const known = hasString(`outcome.${frame.outcome}`) && frame.outcome !== "failed";
  const detail = frame.detail && !known ? ` (${frame.detail})` : "";
  setOffer(null);
  toast(t("toast.offer_ended", { outcome: outcomeText(frame.outcome) }) + detail, frame.outcome);
}

/** Optional desktop notification, only if the agent already granted it (no permission prompt). */
function notifyOffer(offer) {
  if (!("Notification" in window) || Notification.permission !== "granted" || !document.hidden) return;
  try {
    new Notification(t("offer.heading"), {
      body: `${offer.caller_name || ""} ${offer.caller_number || ""} · ${offer.queue || ""}`.trim(),
      tag: `offer-${offer.id}`,
      silent: true,
    });
  } catch {
    /* not available in this context */
  }
}

// --------------------------------------------------------------------------- state bar

function renderStateBar() {
  const agent = state.agent;
  const badge = $("[data-testid=agent-state]");
  const reason = $("[data-testid=state-reason]");
  const help = $("#state-help");
  const word = agent?.state ?? "";
  $("[data-testid=agent-name]").textContent = agent?.name || state.me?.name || state.me?.agent_id || "";
  badge.dataset.state = word;
  badge.textContent = !agent
    ? t("state.loading")
    : hasString(`state.${word}`)
      ? t(`state.${word}`)
      : t("state.unknown", { state: word });

  const showReason = agent && (word === "paused" || word === "not_responding") && agent.pause_reason;
  reason.textContent = showReason ? t("state.reason", { reason: reasonText(agent.pause_reason) }) : "";
  show(reason, Boolean(showReason));

  const helpKey = { not_responding: "state.not_responding_help", unreachable: "state.unreachable_help", logged_out: "state.logged_out_help" }[word];
  help.textContent = helpKey ? t(helpKey) : "";
  show(help, Boolean(helpKey));

  renderWrapup();

  const loggedOut = word === "logged_out";
  const ready = $("[data-testid=state-ready]");
  // Ready only where it changes something: back from a pause or from "not responding".
  show(ready, word === "paused" || word === "not_responding");
  // "Not responding" needs the agent's attention: the Ready button is made prominent.
  ready.classList.toggle("btn-big", word === "not_responding");
  show($("[data-testid=state-login]"), loggedOut);
  show($("#pause-group"), Boolean(agent) && !loggedOut);
  show($("[data-testid=state-logout]"), Boolean(agent) && !loggedOut);
}

function renderWrapup() {
  const el = $("[data-testid=wrapup-countdown]");
  const until = state.agent?.state === "wrapup" ? parseTime(state.agent.wrapup_until) : null;
  if (until === null) {
    show(el, false);
    el.textContent = "";
    return;
  }
  const left = Math.max(0, Math.ceil((until - serverNow()) / 1000));
  el.textContent = t("state.wrapup_left", { time: formatDuration(left) });
  el.dataset.seconds = String(left);
  show(el, true);
}

function renderPauseReasons() {
  const select = $("[data-testid=pause-reason]");
  const index = Math.max(0, select.selectedIndex);
  select.replaceChildren(
    ...PAUSE_REASONS.map((r) => h("option", { value: t(`reason.${r}`), text: t(`reason.${r}`) })),
    h("option", { value: "__other", text: t("reason.other") }),
  );
  select.selectedIndex = index; // same choice across a language change
  $("#pause-other").placeholder = t("pause.other_placeholder");
  show($("#pause-other"), select.value === "__other");
}

/** The controller's own reasons are English sentences; the known ones are shown translated. */
function reasonText(reason) {
  const missed = /^(\d+) offers? not answered$/.exec(reason);
  if (missed) return t("reason.not_answered", { n: missed[1] });
  return reason;
}

function showStateError(text) {
  const el = $("#state-error");
  el.textContent = text || "";
  show(el, Boolean(text));
}

async function agentAction(action, body) {
  showStateError(null);
  const buttons = $$(".state-actions button");
  buttons.forEach((b) => (b.disabled = true));
  try {
    const agent = await api(`/api/agents/${encodeURIComponent(state.me.agent_id)}/${action}`, {
      method: "POST",
      body: body ?? {},
    });
    if (agent && agent.state) {
      state.agent = { ...state.agent, ...agent };
      renderStateBar();
    }
  } catch (err) {
    showStateError(t("api.error", { message: err.message }));
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

function pauseReasonValue() {
  const choice = $("[data-testid=pause-reason]").value;
  return choice === "__other" ? $("#pause-other").value.trim() : choice;
}

// --------------------------------------------------------------------------- offer card

function renderCalls() {
  renderActiveCall();
  renderDemoPhone();
  show($("#idle-note"), !state.offer && !state.call);
}

/** Build the card once per offer (so focus and buttons survive updates), then fill it. */
function renderOffer(focus = false) {
  const slot = $("#offer-slot");
  const offer = state.offer;
  let card = $("[data-testid=offer-card]", slot);
  if (!offer) {
    if (card) {
      const hadFocus = card.contains(document.activeElement);
      card.remove();
      // Focus must not vanish with the card: put it back on the state heading.
      if (hadFocus) $("#state-heading").focus();
    }
    renderCalls();
    return;
  }
  if (card && card.dataset.offerId !== offer.id) {
    card.remove();
    card = null;
  }
  if (!card) {
    card = buildOfferCard(offer);
    slot.replaceChildren(card);
  }
  fillOfferCard(card, offer);
  renderCalls();
  if (focus) focusOffer(card, offer);
}

function focusOffer(card, offer) {
  const active = document.activeElement;
  const typing = active && (active.tagName === "TEXTAREA" || (active.tagName === "INPUT" && active.type !== "checkbox"));
  if (typing) {
    // Do not steal the keyboard from an agent who is typing a chat message: announce instead.
    $("#announcer").textContent = t("offer.announce", {
      caller: offer.caller_name || offer.caller_number || t("offer.unknown_number"),
      queue: offer.queue || "",
    });
  } else {
    $(".offer-heading", card).focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
  }
}

function kvRow(label, valueEl) {
  return h("div", {}, h("dt", { text: label }), valueEl);
}

function buildOfferCard(offer) {
  const headingId = `offer-heading-${offer.id}`;
  const hintId = `offer-hint-${offer.id}`;
  const card = h(
    "section",
    {
      class: "card offer-card",
      "data-testid": "offer-card",
      role: "alertdialog",
      "aria-modal": "false",
      "aria-labelledby": headingId,
      "aria-describedby": hintId,
      dataset: { offerId: offer.id },
    },
    h("h2", { id: headingId, class: "offer-heading", tabindex: "-1" }),
    h("p", { id: hintId, class: "offer-hint", "data-testid": "offer-hint" }),
    h(
      "div",
      { class: "countdown" },
      h("span", { class: "countdown-label" }),
      h(
        "div",
        { class: "countdown-bar", role: "progressbar", "data-testid": "offer-countdown", "aria-valuemin": "0" },
        h("div", { class: "countdown-fill" }),
      ),
      h("span", { class: "countdown-seconds", "aria-hidden": "true" }),
    ),
    // Buttons right under the countdown: on a phone-sized screen they stay in view.
    h(
      "div",
      { class: "btn-row offer-actions" },
      h("button", { type: "button", class: "btn btn-accept", "data-testid": "offer-accept", onclick: () => offerAction("accept") }),
      h("button", { type: "button", class: "btn btn-reject", "data-testid": "offer-reject", onclick: () => offerAction("reject") }),
    ),
    h("p", { class: "form-error offer-error", role: "alert", hidden: true }),
    h(
      "dl",
      { class: "kv offer-details" },
      kvRow("", h("dd", { "data-testid": "offer-caller-number", class: "caller-number" })),
      kvRow("", h("dd", { "data-testid": "offer-caller-name" })),
      kvRow("", h("dd", { "data-testid": "offer-queue" })),
      kvRow("", h("dd", { "data-testid": "offer-waiting" })),
      kvRow("", h("dd", { "data-testid": "offer-call-id", class: "mono" })),
    ),
    h(
      "div",
      { class: "offer-previous", "data-testid": "offer-previous" },
      h("h3", { class: "sub-heading" }),
      h("p", { class: "muted", "data-testid": "offer-previous-count" }),
      h("ul", { class: "previous-list" }),
    ),
    h("div", { class: "offer-info", "data-testid": "offer-info" }, h("h3", { class: "sub-heading" }), h("dl", { class: "kv" })),
    h(
      "div",
      { class: "offer-crm", "data-testid": "offer-crm", "aria-live": "polite" },
      h("h3", { class: "sub-heading" }),
      h("div", { class: "crm-body" }),
    ),
  );
  return card;
}

function offerHintKey(offer) {
  if (offer.state === "connecting") return "offer.hint_connecting";
  if (offer.state === "connected") return "offer.hint_connected";
  if (offer.state === "confirming") return "offer.hint_confirming";
  if (offer.acceptance === "desktop") return "offer.hint_desktop";
  if (offer.acceptance === "confirm") return "offer.hint_confirm";
  return "offer.hint_answer";
}

function fillOfferCard(card, offer) {
  card.dataset.acceptance = offer.acceptance || "";
  card.dataset.state = offer.state || "";
  const name = offer.caller_name || "";
  const number = offer.caller_number || "";
  $(".offer-heading", card).textContent = name || number ? t("offer.heading_named", { name: name || number }) : t("offer.heading");
  $("[data-testid=offer-hint]", card).textContent = t(offerHintKey(offer));

  const labels = $$(".offer-details dt", card);
  ["offer.number", "offer.name", "offer.queue", "offer.waiting", "offer.call_id"].forEach((k, i) => (labels[i].textContent = t(k)));
  $("[data-testid=offer-caller-number]", card).textContent = number || t("offer.unknown_number");
  $("[data-testid=offer-caller-name]", card).textContent = name || t("offer.unknown_name");
  $("[data-testid=offer-queue]", card).textContent = offer.queue || "";
  $("[data-testid=offer-call-id]", card).textContent = offer.call_id || "";
  $(".countdown-label", card).textContent = t("offer.countdown");

  fillPrevious(card, offer.previous_offers || []);
  fillInfo(card, offer.info || {});
  fillCrm(card, offer.crm || { status: "off" });

  const error = $(".offer-error", card);
  error.textContent = state.offerError || "";
  show(error, Boolean(state.offerError));

  const accept = $("[data-testid=offer-accept]", card);
  const reject = $("[data-testid=offer-reject]", card);
  accept.textContent = t("offer.accept");
  reject.textContent = t("offer.reject");
  // Desktop mode is accepted by clicking; confirm mode may also be accepted by click once the
  // phone is answered (the API allows it), which helps when the phone has no keypad at hand.
  const canAccept =
    (offer.acceptance === "desktop" && offer.state === "ringing") ||
    (offer.acceptance === "confirm" && offer.state === "confirming");
  show(accept, canAccept);
  show(reject, offer.state !== "connected");
  // aria-disabled, not disabled: a disabled button drops keyboard focus to <body>.
  for (const button of [accept, reject]) button.setAttribute("aria-disabled", state.offerBusy ? "true" : "false");
  tickOffer(card, offer);
}

function fillPrevious(card, previous) {
  const box = $("[data-testid=offer-previous]", card);
  $(".sub-heading", box).textContent = t("offer.previous");
  const count = $("[data-testid=offer-previous-count]", box);
  count.dataset.count = String(previous.length);
  count.textContent =
    previous.length === 0 ? t("offer.previous_none") : previous.length === 1 ? t("offer.previous_one") : t("offer.previous_count", { n: previous.length });
  $(".previous-list", box).replaceChildren(
    ...previous.map((p) =>
      h(
        "li",
        { "data-testid": "offer-previous-item", dataset: { agent: p.agent ?? "", outcome: p.outcome ?? "" } },
        h("span", { class: "prev-agent", text: p.agent ?? "?" }),
        " — ",
        h("span", { class: `prev-outcome outcome-${p.outcome}`, text: outcomeText(p.outcome) }),
      ),
    ),
  );
}

function fillInfo(card, info) {
  const box = $("[data-testid=offer-info]", card);
  const entries = Object.entries(info);
  $(".sub-heading", box).textContent = t("offer.info");
  $("dl", box).replaceChildren(
    ...entries.map(([key, value]) =>
      h("div", { "data-testid": "offer-info-item", dataset: { key } }, h("dt", { text: key }), h("dd", { text: String(value ?? "") })),
    ),
  );
  show(box, entries.length > 0);
}

function fillCrm(card, crm) {
  const box = $("[data-testid=offer-crm]", card);
  const status = crm.status || "off";
  box.dataset.status = status;
  $(".sub-heading", box).textContent = t("offer.crm");
  const body = $(".crm-body", box);
  if (status === "pending") {
    body.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), h("span", { text: t("offer.crm_pending") }));
    box.setAttribute("aria-busy", "true");
  } else if (status === "ok") {
    const entries = Object.entries(crm.data || {});
    body.replaceChildren(
      entries.length
        ? h("dl", { class: "kv" }, ...entries.map(([k, v]) => h("div", {}, h("dt", { text: k }), h("dd", { text: String(v ?? "") }))))
        : h("p", { class: "muted", text: t("offer.crm_empty") }),
    );
    box.removeAttribute("aria-busy");
  } else if (status === "error") {
    const text = crm.error ? t("offer.crm_error", { error: crm.error }) : t("offer.crm_error_plain");
    body.replaceChildren(h("p", { class: "form-error", text }));
    box.removeAttribute("aria-busy");
  } else {
    body.replaceChildren();
    box.removeAttribute("aria-busy");
  }
  show(box, status !== "off");
}

/** Time-dependent parts of the card: countdown and waiting time (called every tick). */
function tickOffer(card, offer) {
  const now = serverNow();
  const arrived = parseTime(offer.arrived_at);
  $("[data-testid=offer-waiting]", card).textContent = arrived === null ? "" : formatDuration((now - arrived) / 1000);

  const started = parseTime(offer.started_at);
  const expires = parseTime(offer.expires_at);
  const max = Number(offer.ring_timeout) > 0 ? Number(offer.ring_timeout) : started !== null && expires !== null ? Math.max(1, (expires - started) / 1000) : 1;
  const left = expires === null ? 0 : Math.min(max, Math.max(0, Math.ceil((expires - now) / 1000)));
  const total = started !== null && expires !== null && expires > started ? expires - started : max * 1000;
  const fraction = expires === null ? 0 : Math.min(1, Math.max(0, (expires - now) / total));
  const bar = $("[data-testid=offer-countdown]", card);
  bar.setAttribute("aria-valuemax", String(max));
  bar.setAttribute("aria-valuenow", String(left));
  bar.setAttribute("aria-valuetext", t("offer.seconds_left_long", { n: left }));
  bar.setAttribute("aria-label", t("offer.countdown"));
  bar.classList.toggle("urgent", left <= 5);
  $(".countdown-fill", card).style.width = `${(fraction * 100).toFixed(1)}%`;
  $(".countdown-seconds", card).textContent = t("offer.seconds_left", { n: left });
}

async function offerAction(action) {
  const offer = state.offer;
  if (!offer || state.offerBusy) return;
  state.offerBusy = true;
  state.offerError = null;
  renderOffer();
  try {
    await api(`/api/offers/${encodeURIComponent(offer.id)}/${action}`, { method: "POST", body: {} });
    // The card goes away (or changes to "connecting") with the stream's frames.
  } catch (err) {
    if (state.offer?.id !== offer.id) return;
    if ([403, 404, 409].includes(err.status)) {
      // The offer is gone or not ours: say why and drop the card.
      setOffer(null);
      toast(t("offer.gone", { message: err.message }), "gone");
      return;
    }
    state.offerError = t("api.error", { message: err.message });
  } finally {
    if (state.offer?.id === offer.id) {
      state.offerBusy = false;
      renderOffer();
    }
  }
}

// --------------------------------------------------------------------------- active call, demo phone

function renderActiveCall() {
  const box = $("[data-testid=active-call]");
  const call = state.call;
  show(box, Boolean(call));
  if (!call) return;
  box.dataset.callId = call.id ?? "";
  const caller = [call.caller_name, call.caller_number].filter(Boolean).join(" · ") || t("offer.unknown_number");
  $(".call-caller", box).textContent = caller;
  $(".call-queue", box).textContent = call.queue ?? "";
  tickActiveCall();
}

function tickActiveCall() {
  const call = state.call;
  const since = call ? parseTime(call.connected_at) : null;
  const el = $("[data-testid=active-call] .call-since");
  el.textContent = since === null ? "" : t("call.since", { time: formatTime(since), duration: formatDuration((serverNow() - since) / 1000) });
}

function demoRinging() {
  const o = state.offer;
  return Boolean(o && (o.acceptance === "answer" || o.acceptance === "confirm") && o.state === "ringing");
}

function renderDemoPhone() {
  const box = $("[data-testid=demo-phone]");
  show(box, Boolean(state.config.demo && state.me));
  if (!state.config.demo) return;
  const ringing = demoRinging();
  box.dataset.state = ringing ? "ringing" : "idle";
  $(".demo-status", box).textContent = ringing
    ? `${t("demo.ringing")} ${state.offer.caller_name || state.offer.caller_number || ""}`.trim()
    : t("demo.idle");
  $("[data-testid=demo-phone-answer]").disabled = !ringing;
  $("[data-testid=demo-phone-decline]").disabled = !ringing;
}

async function demoPhone(action) {
  const error = $(".demo-error");
  show(error, false);
  try {
    await api(`/demo/phone/${encodeURIComponent(state.me.agent_id)}/${action}`, { method: "POST", body: {} });
  } catch (err) {
    error.textContent = t("api.error", { message: err.message });
    show(error, true);
  }
}

// --------------------------------------------------------------------------- toasts

function toast(text, kind = "") {
  const el = h(
    "div",
    { class: `toast toast-${kind}`, "data-testid": "toast", dataset: { kind } },
    h("span", { text }),
    h("button", { type: "button", class: "toast-close", "aria-label": t("toast.dismiss"), text: "×", onclick: () => el.remove() }),
  );
  $("#toasts").append(el);
  setTimeout(() => el.remove(), 7000);
}

// --------------------------------------------------------------------------- WhatsApp: data

function resetChat() {
  const c = state.chat;
  c.conversations.clear();
  c.unread.clear();
  c.selected = null;
  c.messages = [];
  c.byId.clear();
  c.expanded.clear();
  c.cursor = null;
  c.older = null;
  c.olderError = null;
  c.loadingOlder = false;
  c.parked.clear();
  c.alerts.clear();
  c.dismissed.clear();
  c.templates = null;
  $("[data-testid=conversation-list]").replaceChildren();
  $("[data-testid=message-list]").replaceChildren();
}

function startChat() {
  show($("#chat"), true);
  $(".columns").classList.remove("no-chat");
  show($("[data-testid=chat-connection]"), true);
  loadConversations();
  loadAlerts();
  streams.chat = new Stream({
    // Resume after the highest cursor seen so nothing is missed and nothing repeats.
    url: () => {
      const base = `${wsUrl(sidecarUrl("/api/stream"))}?token=${encodeURIComponent(state.token)}`;
      return state.chat.cursor === null ? base : `${base}&after=${state.chat.cursor}`;
    },
    onFrame: onChatFrame,
    onStatus: (s) => renderConnection("chat", s),
  });
  streams.chat.start();
}

async function loadConversations() {
  try {
    const data = await api("/api/conversations", { base: state.config.whatsapp_url.replace(/\/+$/, "") });
    for (const conv of data.conversations || []) upsertConversation(conv);
    state.chat.loadError = null;
  } catch (err) {
    state.chat.loadError = t("chat.load_failed", { message: err.message });
  }
  renderConversations();
}

async function loadAlerts() {
  try {
    const data = await api("/api/alerts", { base: state.config.whatsapp_url.replace(/\/+$/, "") });
    for (const alert of data.alerts || []) addAlert(alert);
  } catch {
    /* alerts are best effort; the stream brings new ones */
  }
}

function upsertConversation(conv) {
  const old = state.chat.conversations.get(conv.id);
  if (old && typeof old.cursor === "number" && typeof conv.cursor === "number" && conv.cursor < old.cursor) return;
  state.chat.conversations.set(conv.id, { ...old, ...conv });
}

/** [event_ts, seq] lexicographic compare, then id so equal keys still have one order. */
function compareMessages(a, b) {
  const ka = a.sort_key || [0, 0];
  const kb = b.sort_key || [0, 0];
  for (let i = 0; i < 2; i += 1) {
    const x = Number(ka[i] ?? 0);
    const y = Number(kb[i] ?? 0);
    if (x !== y) return x < y ? -1 : 1;
  }
  return String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0;
}

/**
 * Insert or replace one message of the selected conversation. A version whose cursor is not
 * newer than the one shown is dropped (late or repeated frame). Returns true if it changed.
 */
function upsertMessage(message, cursor, { keepScroll = false } = {}) {
  const c = state.chat;
  const shown = c.byId.get(message.id);
  const version = typeof cursor === "number" ? cursor : message.cursor;
  if (shown && typeof version === "number" && typeof shown.cursor === "number" && version <= shown.cursor) return false;
  const next = { ...message, cursor: typeof version === "number" ? version : message.cursor };
  if (shown) c.messages.splice(c.messages.indexOf(shown), 1);
  // Binary search for the insertion point: a late message lands between its neighbours.
  let lo = 0;
  let hi = c.messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (compareMessages(c.messages[mid], next) <= 0) lo = mid + 1;
    else hi = mid;
  }
  c.messages.splice(lo, 0, next);
  c.byId.set(next.id, next);
  placeMessageElement(next, lo, keepScroll);
  return true;
}

function onChatFrame(frame) {
  const c = state.chat;
  if (typeof frame.cursor === "number" && (c.cursor === null || frame.cursor > c.cursor)) c.cursor = frame.cursor;
  switch (frame.type) {
    case "hello":
      // The stream starts here: reload the list so a change between the first GET and this
      // point is not missed (later changes come as frames).
      loadConversations();
      loadAlerts();
      break;
    case "message": {
      const m = frame.message;
      if (!m) return;
      const convId = frame.conversation_id ?? m.conversation_id;
      if (convId === c.selected) {
        if (frame.sort_key && !m.sort_key) m.sort_key = frame.sort_key;
        if (parkIfOlder(m, frame.cursor)) break;
        const isNew = !c.byId.has(m.id);
        if (upsertMessage(m, frame.cursor) && isNew && m.direction === "in") announceMessage(m);
        renderMessagesEmpty();
      } else if (m.direction === "in") {
        c.unread.add(convId);
        renderConversations();
      }
      if (!c.conversations.has(convId)) refreshConversation(convId);
      break;
    }
    case "conversation":
      if (frame.conversation) {
        upsertConversation(frame.conversation);
        renderConversations();
        if (frame.conversation.id === c.selected) renderThreadHead();
        renderComposer();
      }
      break;
    case "alert":
      if (frame.alert) addAlert(frame.alert);
      break;
    default:
      break; // unknown frame types are ignored
  }
}

function announceMessage(m) {
  const conv = state.chat.conversations.get(m.conversation_id);
  const who = conv ? conversationTitle(conv) : t("chat.customer");
  $("#chat-announcer").textContent = `${who}: ${m.body ?? ""}`;
}

/** A message for a conversation not in the list yet (newly assigned or new customer). */
async function refreshConversation(id) {
  try {
    const data = await api(`/api/conversations/${encodeURIComponent(id)}`, { base: state.config.whatsapp_url.replace(/\/+$/, "") });
    if (data.conversation) {
      upsertConversation(data.conversation);
      renderConversations();
    }
  } catch {
    /* not visible to us */
  }
}

async function selectConversation(id, { focus = true } = {}) {
  const c = state.chat;
  c.selected = id;
  c.unread.delete(id);
  c.messages = [];
  c.byId.clear();
  c.older = null;
  c.olderError = null;
  c.loadingOlder = false;
  c.parked.clear();
  c.loadingOlder = false;
  const list = $("[data-testid=message-list]");
  list.replaceChildren();
  list.setAttribute("aria-busy", "true");
  $(".chat-body").dataset.view = "thread";
  renderConversations();
  renderThreadHead();
  renderComposer();
  renderMessagesEmpty(t("chat.loading"));
  if (focus) $("#thread-heading").focus();
  try {
    const data = await api(`/api/conversations/${encodeURIComponent(id)}/messages?limit=${HISTORY_PAGE}`, { base: state.config.whatsapp_url.replace(/\/+$/, "") });
    if (c.selected !== id) return;
    if (data.conversation) upsertConversation(data.conversation);
    // Stream frames may already have arrived for this conversation: the cursor rule merges them.
    for (const m of data.messages || []) upsertMessage(m, m.cursor);
    c.older = data.older ?? null;
    renderMessagesEmpty();
    renderOlderControl();
    renderThreadHead();
    renderComposer();
    scrollMessagesToEnd(true);
    maybeLoadOlder();
  } catch (err) {
    if (c.selected === id) renderMessagesEmpty(t("chat.load_failed", { message: err.message }));
  } finally {
    list.removeAttribute("aria-busy");
  }
  if (c.templates === null) loadTemplates();
}

/** Messages per history page; older pages load as the agent scrolls up (or presses the button). */
const HISTORY_PAGE = 100;

/**
 * A message older than every page loaded so far, while older pages remain, is kept aside rather
 * than shown above a gap: its page brings it (history pages are cut by sort key, so a message
 * stored below the oldest page's key is in a later page), and the kept version is applied then
 * in case it is newer than the page's (the cursor rule picks).
 */
function parkIfOlder(message, cursor) {
  const c = state.chat;
  if (c.older === null || c.messages.length === 0 || c.byId.has(message.id)) return false;
  if (compareMessages(message, c.messages[0]) >= 0) return false;
  const version = typeof cursor === "number" ? cursor : message.cursor;
  const kept = c.parked.get(message.id);
  if (!kept || !(typeof kept.cursor === "number" && kept.cursor >= version)) c.parked.set(message.id, { message, cursor: version });
  return true;
}

/** Kept-aside messages that the pages now reach are placed (all of them once the chat start is loaded). */
function unparkReached() {
  const c = state.chat;
  for (const [id, { message, cursor }] of c.parked) {
    if (c.older !== null && c.messages.length > 0 && compareMessages(message, c.messages[0]) < 0) continue;
    c.parked.delete(id);
    upsertMessage(message, cursor, { keepScroll: true });
  }
}

/** Near the top with older messages left: fetch the page before the oldest shown. */
function maybeLoadOlder() {
  const c = state.chat;
  const list = $("[data-testid=message-list]");
  if (c.older === null || c.loadingOlder || c.olderError || list.hidden) return;
  if (list.scrollTop < 150) loadOlder();
}

/**
 * One page before the oldest message shown (``before=<token>``). The messages land by sort key
 * (upsertMessage: no duplicates, a message also brought by the stream is replaced in place), and
 * the view stays on what the agent was reading: the distance from the bottom is kept.
 */
async function loadOlder() {
  const c = state.chat;
  const id = c.selected;
  const token = c.older;
  if (id === null || token === null || c.loadingOlder) return;
  const list = $("[data-testid=message-list]");
  c.loadingOlder = true;
  c.olderError = null;
  renderOlderControl();
  let loaded = false;
  try {
    const path = `/api/conversations/${encodeURIComponent(id)}/messages?limit=${HISTORY_PAGE}&before=${encodeURIComponent(token)}`;
    const data = await api(path, { base: state.config.whatsapp_url.replace(/\/+$/, "") });
    if (c.selected !== id || c.older !== token) return;
    const fromBottom = list.scrollHeight - list.scrollTop;
    for (const m of data.messages || []) upsertMessage(m, m.cursor, { keepScroll: true });
    c.older = data.older ?? null;
    unparkReached();
    list.scrollTop = list.scrollHeight - fromBottom;
    loaded = true;
  } catch (err) {
    if (c.selected === id) c.olderError = err.message;
  } finally {
    if (c.selected === id) {
      c.loadingOlder = false;
      renderOlderControl();
      renderMessagesEmpty();
    }
  }
  if (loaded) maybeLoadOlder(); // a short page may not fill the view: keep going while at the top
}

/** The first row of the list: "load older" (button), loading, a retry after an error, or the start. */
function renderOlderControl() {
  const c = state.chat;
  const list = $("[data-testid=message-list]");
  let row = $(".messages-older", list);
  if (c.messages.length === 0 && c.older === null) {
    row?.remove();
    return;
  }
  if (!row) {
    row = h("li", { class: "messages-older muted", "data-testid": "messages-older" });
    list.prepend(row);
  } else if (list.firstElementChild !== row) {
    list.prepend(row);
  }
  row.dataset.state = c.loadingOlder ? "loading" : c.olderError ? "error" : c.older === null ? "start" : "more";
  if (c.loadingOlder) {
    row.replaceChildren(h("span", { role: "status", text: t("chat.loading_older") }));
  } else if (c.older === null) {
    row.replaceChildren(h("span", { text: t("chat.history_start") }));
  } else {
    row.replaceChildren(
      c.olderError ? h("span", { role: "alert", text: t("chat.load_older_failed", { message: c.olderError }) }) : null,
      h("button", {
        type: "button",
        class: "btn btn-small btn-quiet",
        "data-testid": "load-older",
        text: t("chat.load_older"),
        onclick: () => {
          c.olderError = null;
          loadOlder();
        },
      }),
    );
  }
}

async function loadTemplates() {
  state.chat.templates = [];
  try {
    const data = await api("/api/templates", { base: state.config.whatsapp_url.replace(/\/+$/, "") });
    state.chat.templates = Array.isArray(data.templates) ? data.templates : [];
  } catch {
    state.chat.templates = [];
  }
  renderTemplates();
}

function windowOpen(conv) {
  if (!conv) return false;
  if (!conv.window_open) return false;
  if (typeof conv.window_closes_at === "number" && conv.window_closes_at * 1000 <= serverNow()) return false;
  return true;
}

// --------------------------------------------------------------------------- WhatsApp: rendering

function conversationTitle(conv) {
  return conv.name || conv.username || (conv.wa_id ? `+${conv.wa_id}` : `#${conv.id}`);
}

function renderConversations() {
  const c = state.chat;
  const list = $("[data-testid=conversation-list]");
  const items = [];
  for (const conv of c.conversations.values()) {
    const open = windowOpen(conv);
    const selected = conv.id === c.selected;
    const unread = c.unread.has(conv.id);
    items.push(
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `conv${selected ? " selected" : ""}`,
            "data-testid": "conversation",
            "aria-current": selected ? "true" : null,
            dataset: { conversationId: conv.id, window: open ? "open" : "closed", unread: unread ? "true" : "false" },
            onclick: () => selectConversation(conv.id),
          },
          h("span", { class: "conv-name", text: conversationTitle(conv) }),
          conv.name && conv.wa_id ? h("span", { class: "conv-number muted", text: `+${conv.wa_id}` }) : null,
          h("span", { class: `badge ${open ? "badge-open" : "badge-closed"}`, text: t(open ? "chat.window_open" : "chat.window_closed") }),
          unread ? h("span", { class: "unread-dot", role: "img", "aria-label": t("chat.unread"), title: t("chat.unread") }) : null,
        ),
      ),
    );
  }
  // Keep keyboard focus on the same conversation button across the rebuild.
  const focusedId = document.activeElement?.closest?.("[data-testid=conversation]")?.dataset.conversationId;
  list.replaceChildren(...items);
  if (focusedId) $(`[data-testid=conversation][data-conversation-id="${CSS.escape(focusedId)}"]`, list)?.focus();
  const empty = $(".conv-empty");
  empty.textContent = c.loadError || t("chat.no_conversations");
  show(empty, items.length === 0);
}

function renderThreadHead() {
  const conv = state.chat.conversations.get(state.chat.selected);
  $("#thread-heading").textContent = conv ? conversationTitle(conv) : "";
  const badge = $(".thread-window");
  if (!conv) {
    badge.replaceChildren();
    return;
  }
  const open = windowOpen(conv);
  badge.replaceChildren(h("span", { class: `badge ${open ? "badge-open" : "badge-closed"}`, text: t(open ? "chat.window_open" : "chat.window_closed") }));
  show($(".thread-placeholder"), false);
  show($("[data-testid=message-list]"), true);
  show($(".composer"), true);
}

function renderMessagesEmpty(text) {
  const list = $("[data-testid=message-list]");
  let note = $(".messages-note", list);
  const message = text ?? (state.chat.messages.length === 0 ? t("chat.no_messages") : null);
  if (!message) {
    note?.remove();
    return;
  }
  if (!note) {
    note = h("li", { class: "messages-note muted" });
    list.prepend(note);
  }
  note.textContent = message;
}

function nearBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
}

function scrollMessagesToEnd(force = false) {
  const list = $("[data-testid=message-list]");
  if (force || nearBottom(list)) list.scrollTop = list.scrollHeight;
}

/** Put the element of the message at index `index` in place: before its right neighbour's element. */
function placeMessageElement(message, index, keepScroll = false) {
  const list = $("[data-testid=message-list]");
  const stick = !keepScroll && nearBottom(list);
  const old = $(`[data-testid=message][data-message-id="${CSS.escape(message.id)}"]`, list);
  const el = buildMessage(message);
  const nextMsg = state.chat.messages[index + 1];
  const nextEl = nextMsg ? $(`[data-testid=message][data-message-id="${CSS.escape(nextMsg.id)}"]`, list) : null;
  // Keep focus if it was on this message's Details button.
  const refocus = old && old.contains(document.activeElement) ? document.activeElement.dataset.testid : null;
  if (old) old.remove();
  list.insertBefore(el, nextEl);
  if (refocus) $(`[data-testid=${refocus}]`, el)?.focus();
  if (stick) list.scrollTop = list.scrollHeight;
}

const TICKS = {
  pending: { symbol: "", cls: "tick-pending" }, // drawn in CSS
  sent: { symbol: "✓", cls: "tick-sent" },
  delivered: { symbol: "✓✓", cls: "tick-delivered" },
  read: { symbol: "✓✓", cls: "tick-read" },
  failed: { symbol: "!", cls: "tick-failed" },
  unknown: { symbol: "?", cls: "tick-unknown" },
};

function buildMessage(m) {
  const key = m.sort_key || [];
  const out = m.direction === "out";
  const ts = typeof key[0] === "number" ? key[0] : m.event_ts;
  const tick = out ? TICKS[m.status] || TICKS.unknown : null;
  const statusLabel = hasString(`status.${m.status}`) ? t(`status.${m.status}`) : String(m.status ?? "");
  return h(
    "li",
    {
      class: `msg ${out ? "msg-out" : "msg-in"} status-${m.status}`,
      "data-testid": "message",
      dataset: { messageId: m.id, direction: m.direction, status: m.status ?? "", sortKey: `${key[0]}:${key[1]}` },
    },
    h("span", { class: "visually-hidden", text: `${out ? t("chat.you") : t("chat.customer")}: ` }),
    h("p", { class: "msg-body", "data-testid": "message-body", text: m.body ?? (m.kind ? `[${m.kind}]` : "") }),
    h(
      "div",
      { class: "msg-meta" },
      typeof ts === "number" && validDate(ts * 1000) ? h("time", { datetime: validDate(ts * 1000).toISOString(), text: formatTime(ts * 1000) }) : null,
      tick ? h("span", { class: `tick ${tick.cls}`, role: "img", "aria-label": statusLabel, title: statusLabel, text: tick.symbol }) : null,
    ),
    m.error ? buildMessageError(m) : null,
    m.notice ? buildNotice(m.notice) : null,
  );
}

function explanationText(explanation) {
  if (!explanation) return null;
  return explanation[explanationKey(state.lang)] || explanation.pt_BR || explanation.en || null;
}

function buildMessageError(m) {
  const err = m.error;
  const text = explanationText(err.explanation) || { title: err.title || err.message || String(err.code ?? ""), explanation: err.message || "", action: "" };
  const detailsId = `err-details-${m.id}`;
  const expanded = state.chat.expanded.has(m.id);
  const row = (label, value) => (value === null || value === undefined || value === "" ? null : h("div", {}, h("dt", { text: label }), h("dd", { text: String(value) })));
  const safeHref = typeof err.href === "string" && /^https?:\/\//i.test(err.href) ? err.href : null;
  return h(
    "div",
    { class: "msg-error", "data-testid": "message-error", dataset: { code: err.code ?? "" } },
    h("p", { class: "msg-error-title", "data-testid": "message-error-title", text: text.title || "" }),
    h("p", { "data-testid": "message-error-explanation", text: text.explanation || "" }),
    text.action ? h("p", { class: "msg-error-action", "data-testid": "message-error-action", text: t("error.action", { action: text.action }) }) : null,
    h("button", {
      type: "button",
      class: "btn btn-small btn-quiet",
      "data-testid": "message-error-toggle",
      "aria-expanded": expanded ? "true" : "false",
      "aria-controls": detailsId,
      text: t("error.details"),
      onclick: (event) => toggleErrorDetails(m.id, event.currentTarget),
    }),
    h(
      "dl",
      { id: detailsId, class: "kv msg-error-details", "data-testid": "message-error-details", hidden: !expanded },
      row(t("error.code"), err.code),
      row(t("error.meta_title"), err.title),
      row(t("error.meta_message"), err.message),
      row(t("error.meta_details"), err.details),
      safeHref ? h("div", {}, h("dt", { text: t("error.link") }), h("dd", {}, h("a", { href: safeHref, target: "_blank", rel: "noopener noreferrer", text: safeHref }))) : null,
      row(t("error.fbtrace"), err.fbtrace_id),
    ),
  );
}

function toggleErrorDetails(id, button) {
  const open = button.getAttribute("aria-expanded") !== "true";
  button.setAttribute("aria-expanded", open ? "true" : "false");
  show(document.getElementById(button.getAttribute("aria-controls")), open);
  if (open) state.chat.expanded.add(id);
  else state.chat.expanded.delete(id);
}

function buildNotice(notice) {
  const text = explanationText(notice);
  if (!text) return null;
  return h(
    "div",
    { class: "msg-notice", "data-testid": "message-notice" },
    h("p", { class: "msg-error-title", text: text.title || "" }),
    h("p", { text: text.explanation || "" }),
    text.action ? h("p", { class: "msg-error-action", text: t("error.action", { action: text.action }) }) : null,
  );
}

/** Re-render every message (language change). */
function rebuildMessages() {
  const list = $("[data-testid=message-list]");
  list.replaceChildren(...state.chat.messages.map(buildMessage));
  renderMessagesEmpty();
  renderOlderControl();
}

// --------------------------------------------------------------------------- composer

function renderComposer() {
  const conv = state.chat.conversations.get(state.chat.selected);
  if (!conv) return;
  const open = windowOpen(conv);
  const composer = $(".composer");
  composer.dataset.window = open ? "open" : "closed";
  const textarea = $("[data-testid=composer-text]");
  textarea.disabled = !open || state.chat.sending;
  $("[data-testid=composer-send]").disabled = !open || state.chat.sending;
  show($(".composer-text-form"), open);
  show($("[data-testid=composer-window-closed]"), !open);
  const note = $(".composer-note");
  note.textContent = open && typeof conv.window_closes_at === "number" ? t("chat.window_closes", { time: formatDateTime(conv.window_closes_at * 1000) }) : "";
  if (!open) renderTemplates();
}

function placeholdersOf(template) {
  if (typeof template.params === "number") return template.params;
  if (Array.isArray(template.params)) return template.params.length;
  let n = 0;
  for (const match of String(template.body || "").matchAll(/\{\{\s*(\d+)\s*\}\}/g)) n = Math.max(n, Number(match[1]));
  return n;
}

function renderTemplates() {
  const select = $("[data-testid=template-select]");
  const templates = state.chat.templates || [];
  const current = select.value;
  select.replaceChildren(
    h("option", { value: "", text: templates.length ? t("chat.template_choose") : t("chat.template_none") }),
    ...templates.map((tpl, i) => h("option", { value: String(i), text: `${tpl.name} (${tpl.language})` })),
  );
  if (current && Number(current) < templates.length) select.value = current;
  renderTemplateParams();
}

function selectedTemplate() {
  const value = $("[data-testid=template-select]").value;
  return value === "" ? null : (state.chat.templates || [])[Number(value)] || null;
}

function renderTemplateParams() {
  const tpl = selectedTemplate();
  const box = $(".template-params");
  const old = $$("[data-testid=template-param]", box).map((i) => i.value);
  const n = tpl ? placeholdersOf(tpl) : 0;
  const fields = [];
  for (let i = 1; i <= n; i += 1) {
    const id = `template-param-${i}`;
    fields.push(
      h(
        "div",
        { class: "field" },
        h("label", { for: id, text: t("chat.template_param", { n: i }) }),
        h("input", { id, type: "text", "data-testid": "template-param", dataset: { index: i }, value: old[i - 1] ?? "", oninput: renderTemplatePreview }),
      ),
    );
  }
  box.replaceChildren(...fields);
  $("[data-testid=template-send]").disabled = !tpl || state.chat.sending;
  renderTemplatePreview();
}

function templateValues() {
  return $$("[data-testid=template-param]").map((i) => i.value.trim());
}

function renderTemplatePreview() {
  const tpl = selectedTemplate();
  const wrap = $(".template-preview-wrap");
  if (!tpl) {
    show(wrap, false);
    return;
  }
  const values = templateValues();
  $(".template-preview").textContent = String(tpl.body || "").replace(/\{\{\s*(\d+)\s*\}\}/g, (m, n) => values[Number(n) - 1] || m);
  show(wrap, true);
}

function showComposerError(text) {
  const el = $(".composer-error");
  el.textContent = text || "";
  show(el, Boolean(text));
}

async function sendMessage(body) {
  const c = state.chat;
  const id = c.selected;
  if (id === null || c.sending) return false;
  c.sending = true;
  showComposerError(null);
  renderComposer();
  try {
    const data = await api(`/api/conversations/${encodeURIComponent(id)}/messages`, {
      method: "POST",
      body,
      base: state.config.whatsapp_url.replace(/\/+$/, ""),
    });
    if (data?.message && c.selected === id) upsertMessage(data.message, data.message.cursor);
    renderMessagesEmpty();
    scrollMessagesToEnd(true);
    return true;
  } catch (err) {
    // 422: the message was stored as failed (window closed); it carries its own explanation.
    const stored = err.body && typeof err.body.message === "object" && err.body.message;
    if (stored) {
      if (c.selected === id) upsertMessage(stored, stored.cursor);
      renderMessagesEmpty();
      scrollMessagesToEnd(true);
      showComposerError(t("chat.stored_failed"));
      return true;
    }
    showComposerError(t("chat.send_failed", { message: typeof err.body?.error === "string" ? err.body.error : err.message }));
    return false;
  } finally {
    c.sending = false;
    renderComposer();
    if (!windowOpen(c.conversations.get(id))) renderTemplateParams();
  }
}

async function onSendText(event) {
  event.preventDefault();
  const textarea = $("[data-testid=composer-text]");
  const text = textarea.value.trim();
  if (!text) return;
  const ok = await sendMessage({ type: "text", text });
  if (ok) textarea.value = "";
  if (!textarea.disabled) textarea.focus();
}

async function onSendTemplate(event) {
  event.preventDefault();
  const tpl = selectedTemplate();
  if (!tpl) return;
  const values = templateValues();
  if (values.some((v) => !v)) {
    showComposerError(t("chat.template_missing"));
    $$("[data-testid=template-param]").find((i) => !i.value.trim())?.focus();
    return;
  }
  const components = values.length ? [{ type: "body", parameters: values.map((text) => ({ type: "text", text })) }] : [];
  const ok = await sendMessage({ type: "template", template: { name: tpl.name, language: tpl.language || "pt_BR", components } });
  if (ok) $$("[data-testid=template-param]").forEach((i) => (i.value = ""));
  renderTemplatePreview();
}

async function onOpenNumber(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const input = $("#open-number-input", form);
  const error = $(".form-error", form);
  show(error, false);
  const wa_id = input.value.replace(/[\s()+-]/g, "");
  if (!wa_id) return;
  try {
    const data = await api("/api/conversations", { method: "POST", body: { wa_id }, base: state.config.whatsapp_url.replace(/\/+$/, "") });
    if (data?.conversation) {
      upsertConversation(data.conversation);
      input.value = "";
      await selectConversation(data.conversation.id);
    }
  } catch (err) {
    error.textContent = t("api.error", { message: err.message });
    show(error, true);
  }
}

// --------------------------------------------------------------------------- channel alerts

function alertKey(alert) {
  return String(alert.id ?? `${alert.code}:${alert.created_at}`);
}

function addAlert(alert) {
  const key = alertKey(alert);
  if (state.chat.dismissed.has(key)) return;
  state.chat.alerts.set(key, alert);
  renderAlerts();
}

function renderAlerts() {
  const box = $("#alerts");
  box.replaceChildren(
    ...Array.from(state.chat.alerts.entries()).map(([key, alert]) => {
      const text = explanationText(alert.explanation) || { title: alert.title || String(alert.code ?? ""), explanation: alert.message || "", action: "" };
      return h(
        "div",
        { class: "alert-banner", role: "alert", "data-testid": "alert-banner", dataset: { code: alert.code ?? "", key } },
        h(
          "div",
          { class: "alert-text" },
          h("strong", { text: `${t("alert.heading")}: ${text.title || ""}` }),
          h("p", { text: text.explanation || "" }),
          text.action ? h("p", { text: t("error.action", { action: text.action }) }) : null,
        ),
        h("button", {
          type: "button",
          class: "btn btn-small",
          "aria-label": t("alert.dismiss"),
          text: "×",
          onclick: () => {
            state.chat.dismissed.add(key);
            state.chat.alerts.delete(key);
            renderAlerts();
            $("#main").focus();
          },
        }),
      );
    }),
  );
}

// --------------------------------------------------------------------------- language

function applyStaticStrings() {
  document.documentElement.lang = state.lang;
  document.title = t("app.title");
  for (const el of $$("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  const select = $("[data-testid=lang-select]");
  if (!select.options.length) {
    select.replaceChildren(...LANGUAGES.map((l) => h("option", { value: l.code, lang: l.code, text: l.label })));
  }
  select.value = state.lang;
  renderPauseReasons();
}

function setLanguage(lang) {
  state.lang = pickLanguage(lang);
  localStorage.setItem(LANG_KEY, state.lang);
  applyStaticStrings();
  renderAll();
}

function renderAll() {
  if (streams.calls) {
    for (const which of ["calls", "chat"]) {
      const el = $(which === "calls" ? "[data-testid=connection]" : "[data-testid=chat-connection]");
      renderConnection(which, el.dataset.state);
    }
  }
  if (!state.me) return;
  renderStateBar();
  renderOffer();
  renderCalls();
  if (state.config.whatsapp_url) {
    renderConversations();
    renderThreadHead();
    rebuildMessages();
    renderComposer();
    renderTemplates();
    renderAlerts();
  }
}

// --------------------------------------------------------------------------- clock tick

let lastWindowState = new Map();

/** Once a second-ish: countdowns, waiting time, call duration, 24 h windows closing. */
function tick() {
  if (!state.me) return;
  renderWrapup();
  const card = $("[data-testid=offer-card]");
  if (card && state.offer) tickOffer(card, state.offer);
  if (state.call) tickActiveCall();
  // A window that closes while the page is open must disable the text composer by itself.
  let changed = false;
  for (const conv of state.chat.conversations.values()) {
    const open = windowOpen(conv);
    if (lastWindowState.get(conv.id) !== open) {
      lastWindowState.set(conv.id, open);
      changed = true;
    }
  }
  if (changed) {
    renderConversations();
    renderThreadHead();
    renderComposer();
  }
}

// --------------------------------------------------------------------------- start

function wireEvents() {
  $("#login-form").addEventListener("submit", onLoginSubmit);
  $("#sign-out").addEventListener("click", signOut);
  $("[data-testid=lang-select]").addEventListener("change", (e) => setLanguage(e.target.value));
  $("[data-testid=state-ready]").addEventListener("click", () => agentAction("ready"));
  $("[data-testid=state-login]").addEventListener("click", () => agentAction("login"));
  $("[data-testid=state-logout]").addEventListener("click", () => agentAction("logout"));
  $("[data-testid=state-pause]").addEventListener("click", () => {
    const reason = pauseReasonValue();
    if ($("[data-testid=pause-reason]").value === "__other" && !reason) {
      $("#pause-other").focus();
      return;
    }
    agentAction("pause", { reason });
  });
  $("[data-testid=pause-reason]").addEventListener("change", (e) => {
    const other = e.target.value === "__other";
    show($("#pause-other"), other);
    if (other) $("#pause-other").focus();
  });
  $("#pause-other").addEventListener("keydown", (e) => {
    if (e.key === "Enter") $("[data-testid=state-pause]").click();
  });
  $("[data-testid=demo-phone-answer]").addEventListener("click", () => demoPhone("answer"));
  $("[data-testid=demo-phone-decline]").addEventListener("click", () => demoPhone("decline"));
  $(".composer-text-form").addEventListener("submit", onSendText);
  $("[data-testid=message-list]").addEventListener("scroll", maybeLoadOlder, { passive: true });
  $("[data-testid=composer-text]").addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter is a new line (the usual chat convention).
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $(".composer-text-form").requestSubmit();
    }
  });
  $(".template-form").addEventListener("submit", onSendTemplate);
  $("[data-testid=template-select]").addEventListener("change", renderTemplateParams);
  $("#open-number").addEventListener("submit", onOpenNumber);
  $(".back-to-list").addEventListener("click", () => {
    $(".chat-body").dataset.view = "list";
    $(`[data-testid=conversation][data-conversation-id="${CSS.escape(String(state.chat.selected))}"]`)?.focus();
  });
  // Escape inside the offer card moves focus to Reject, never rejects by itself (too easy to hit).
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && document.activeElement?.closest?.("[data-testid=offer-card]")) {
      const reject = $("[data-testid=offer-reject]");
      if (reject && !reject.hidden) reject.focus();
    }
  });
}

async function loadConfig() {
  try {
    const config = await api("/panel/config.json");
    if (config && typeof config === "object") state.config = { ...state.config, ...config };
  } catch {
    /* defaults: no chat, no demo */
  }
}

async function onHashChange() {
  const token = tokenFromFragment();
  if (!token || token === state.token) return;
  if (state.me) signOut();
  const error = await signIn(token, false);
  if (error) showLogin(error);
}

async function main() {
  const savedLang = localStorage.getItem(LANG_KEY);
  state.lang = pickLanguage(savedLang || DEFAULT_LANG);
  applyStaticStrings();
  wireEvents();
  const fragmentToken = tokenFromFragment();
  await loadConfig();
  if (!savedLang && state.config.language) {
    state.lang = pickLanguage(state.config.language);
    applyStaticStrings();
  }
  setInterval(tick, 250);
  // A sign-in link opened in a tab that already shows the panel only changes the fragment.
  window.addEventListener("hashchange", onHashChange);

  const token = fragmentToken || storedToken();
  if (!token) {
    showLogin(null);
    return;
  }
  // A token from the link is kept for this tab only unless the agent ticks "remember".
  const error = await signIn(token, fragmentToken ? false : undefined);
  if (error) {
    if (!fragmentToken) {
      localStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(TOKEN_KEY);
    }
    showLogin(error);
  }
}

main();
