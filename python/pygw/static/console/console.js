// pygw operator console: plain JavaScript, no build step, no third-party code.
// Every action goes through the gateway's existing admin and server API with the signed-in
// admin's token; live figures arrive over the gateway's own WebSocket (channel admin:stats,
// where every node publishes a snapshot each second while a console watches).
"use strict";

const STATS_CHANNEL = "admin:stats";
const STALE_MS = 5000;

const state = {
  token: null,
  sessionId: null,
  username: null,
  ws: null,
  nodes: new Map(), // node id -> {now, prev, seenAt}
  users: [],
  stopped: true,
  retry: 0,
};

const $ = (selector) => document.querySelector(selector);

function show(el, visible) { el.hidden = !visible; }

function text(el, value) { el.textContent = value; }

function result(value) {
  text($("#result"), typeof value === "string" ? value : JSON.stringify(value, null, 2));
}

function element(tag, props = {}, children = []) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "onclick") el.addEventListener("click", value);
    else if (key === "className") el.className = value;
    else el.setAttribute(key, value);
  }
  for (const child of children) el.append(child instanceof Node ? child : String(child));
  return el;
}

// -- HTTP ------------------------------------------------------------------------------------
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => null);
  if (response.status === 401 && state.token) {
    signOut("Your session ended; sign in again.");
  }
  if (!response.ok) {
    const message = payload ? `${payload.error}${payload.detail ? ": " + payload.detail : ""}` : response.statusText;
    throw new Error(`${response.status} ${message}`);
  }
  return payload;
}

// -- sign in ---------------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  text($("#signin-error"), "");
  const username = $("#signin-username").value.trim();
  const password = $("#signin-password").value;
  let login;
  try {
    login = await api("POST", "/sessions/login", { username, password });
  } catch (err) {
    text($("#signin-error"), `Sign-in failed: ${err.message}`);
    return;
  }
  if (login.user.role !== "admin") {
    text($("#signin-error"), `Access denied: ${login.user.username} does not have the admin role.`);
    return;
  }
  state.token = login.access_token;
  state.sessionId = login.session_id;
  state.username = login.user.username;
  sessionStorage.setItem("pygw-console", JSON.stringify({
    token: state.token, sessionId: state.sessionId, username: state.username,
  }));
  start();
}

function signOut(message) {
  state.stopped = true;
  if (state.ws) state.ws.close(1000);
  state.ws = null;
  state.token = null;
  sessionStorage.removeItem("pygw-console");
  show($("#app"), false);
  show($("#signin"), true);
  show($("#signout"), false);
  text($("#whoami"), "");
  live(false);
  if (message) text($("#signin-error"), message);
}

function start() {
  show($("#signin"), false);
  show($("#app"), true);
  show($("#signout"), true);
  text($("#whoami"), state.username);
  state.stopped = false;
  connect();
}

// -- live figures over the gateway's WebSocket -------------------------------------------------
function live(on) {
  const badge = $("#live");
  badge.className = `badge ${on ? "on" : "off"}`;
  text(badge, on ? "live" : "offline");
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = `token=${encodeURIComponent(state.token)}&session_id=${encodeURIComponent(state.sessionId)}`;
  const ws = new WebSocket(`${scheme}://${location.host}/ws/connect?${query}`);
  state.ws = ws;
  ws.onopen = () => {
    state.retry = 0;
    ws.send(JSON.stringify({ type: "subscribe", channel: STATS_CHANNEL, id: 1 }));
  };
  ws.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    else if (frame.type === "subscribed" && frame.channel === STATS_CHANNEL) live(true);
    else if (frame.type === "message" && frame.channel === STATS_CHANNEL) onStats(frame.data);
    else if (frame.type === "error") result(`WebSocket: ${frame.message}`);
  };
  ws.onclose = (event) => {
    live(false);
    if (state.ws !== ws || state.stopped) return;
    if (event.code === 1008 || event.code === 1000) {
      signOut(`The gateway closed the console's connection (${event.code} ${event.reason}).`);
      return;
    }
    // Full-jitter exponential backoff.
    const delay = Math.random() * Math.min(10000, 250 * 2 ** state.retry++);
    setTimeout(() => { if (!state.stopped) connect(); }, delay);
  };
}

function onStats(snapshot) {
  const entry = state.nodes.get(snapshot.node) || {};
  entry.prev = entry.now;
  entry.now = snapshot;
  entry.seenAt = Date.now();
  state.nodes.set(snapshot.node, entry);
  renderOverview();
  renderChannels();
}

function rate(entry, field) {
  const { now, prev } = entry;
  if (!prev || now.ts <= prev.ts) return 0;
  return Math.max(0, (now[field] - prev[field]) / (now.ts - prev.ts));
}

function liveNodes() {
  const fresh = [];
  for (const [id, entry] of state.nodes) {
    if (Date.now() - entry.seenAt > STALE_MS * 6) state.nodes.delete(id);
    else fresh.push(entry);
  }
  return fresh.sort((a, b) => a.now.node.localeCompare(b.now.node));
}

const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString() : n.toFixed(n % 1 ? 1 : 0));
const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;
const duration = (s) => (s < 120 ? `${Math.round(s)} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);

function renderOverview() {
  const nodes = liveNodes();
  const current = nodes.filter((e) => Date.now() - e.seenAt <= STALE_MS);
  const sum = (f) => current.reduce((acc, e) => acc + f(e), 0);
  text($("#total-nodes"), String(current.length));
  text($("#total-connections"), String(sum((e) => e.now.connections)));
  text($("#total-users"), String(sum((e) => e.now.users)));
  text($("#total-in"), fmt(sum((e) => rate(e, "messages_in"))));
  text($("#total-out"), fmt(sum((e) => rate(e, "messages_out"))));
  text($("#total-deliveries"), fmt(sum((e) => rate(e, "deliveries"))));
  const body = $("#nodes tbody");
  body.replaceChildren(...nodes.map((e) => {
    const s = e.now;
    const stale = Date.now() - e.seenAt > STALE_MS;
    return element("tr", { className: stale ? "stale" : "", "data-node": s.node }, [
      element("td", {}, [s.node]), element("td", {}, [s.connections]), element("td", {}, [s.users]),
      element("td", {}, [fmt(rate(e, "messages_in"))]), element("td", {}, [fmt(rate(e, "messages_out"))]),
      element("td", {}, [fmt(rate(e, "deliveries"))]), element("td", {}, [fmt(rate(e, "http_requests"))]),
      element("td", {}, [mib(s.rss_bytes)]), element("td", {}, [duration(s.uptime)]),
      element("td", {}, [stale ? `${Math.round((Date.now() - e.seenAt) / 1000)} s ago` : "now"]),
    ]);
  }));
}

// -- channels --------------------------------------------------------------------------------
function renderChannels() {
  const totals = new Map();
  for (const e of liveNodes()) {
    for (const [channel, count] of Object.entries(e.now.channels || {})) {
      const t = totals.get(channel) || { subscribers: 0, nodes: 0 };
      t.subscribers += count;
      t.nodes += 1;
      totals.set(channel, t);
    }
  }
  const rows = [...totals.entries()].sort((a, b) => b[1].subscribers - a[1].subscribers);
  $("#channels tbody").replaceChildren(...rows.map(([channel, t]) =>
    element("tr", { className: "clickable", "data-channel": channel, onclick: () => openChannel(channel) }, [
      element("td", {}, [channel]), element("td", {}, [t.subscribers]), element("td", {}, [t.nodes]),
    ])));
}

async function openChannel(channel) {
  show($("#channel-detail"), true);
  text($("#channel-name"), channel);
  const name = encodeURIComponent(channel);
  try {
    const presence = await api("GET", `/api/presence/${name}`);
    const members = Object.values(presence.presence);
    $("#channel-presence").replaceChildren(...(members.length
      ? members.map((m) => element("li", {}, [`${m.user_id} (node ${m.gateway_id || m.node})`]))
      : [element("li", { className: "hint" }, ["nobody (or presence is off for this namespace)"])]));
    const history = await api("GET", `/api/history/${name}?limit=20`);
    $("#channel-history").replaceChildren(...(history.publications.length
      ? history.publications.map((p) => element("li", { value: p.offset }, [JSON.stringify(p.data)]))
      : [element("li", { className: "hint" }, ["no history kept"])]));
  } catch (err) {
    result(err.message);
  }
}

// -- users -----------------------------------------------------------------------------------
async function loadUsers(event) {
  if (event) event.preventDefault();
  try {
    state.users = await api("GET", "/admin/users");
  } catch (err) {
    result(err.message);
    return;
  }
  renderUsers();
}

function renderUsers() {
  const query = $("#user-query").value.trim().toLowerCase();
  const rows = state.users.filter((u) => !query || u.username.toLowerCase().includes(query) || (u.email || "").toLowerCase().includes(query));
  $("#users tbody").replaceChildren(...rows.slice(0, 500).map((u) => {
    const promote = u.role === "admin"
      ? element("button", { className: "secondary", onclick: () => userAction("demote", u.username) }, ["Demote"])
      : element("button", { className: "secondary", onclick: () => userAction("promote", u.username) }, ["Promote"]);
    const disconnect = element("button", { className: "danger", onclick: () => userAction("disconnect", u.username) }, ["Disconnect"]);
    return element("tr", { "data-user": u.username }, [
      element("td", {}, [element("a", { href: "#", onclick: (e) => { e.preventDefault(); openUser(u.username); } }, [u.username])]),
      element("td", {}, [u.role]), element("td", {}, [u.is_online ? "yes" : "no"]),
      element("td", {}, [u.session_count]), element("td", {}, [u.last_login || ""]),
      element("td", {}, [promote, " ", disconnect]),
    ]);
  }));
}

async function userAction(action, username) {
  try {
    if (action === "disconnect") result(await api("POST", `/api/disconnect/${encodeURIComponent(username)}`));
    else result(await api("POST", `/admin/users/${action}`, { username }));
  } catch (err) {
    result(err.message);
  }
  await loadUsers();
}

async function openUser(username) {
  show($("#user-detail"), true);
  text($("#user-name"), username);
  const name = encodeURIComponent(username);
  try {
    const sessions = await api("GET", `/sessions/users/${name}/sessions`);
    $("#user-sessions").replaceChildren(...sessions.sessions.map((s) =>
      element("li", {}, [`${s.session_id} (last access ${s.last_access})`])));
    const conns = await api("GET", `/admin/connections?scope=cluster&user=${name}`);
    const listed = conns.nodes.flatMap((n) => n.connections);
    $("#user-connections").replaceChildren(...(listed.length
      ? listed.map((c) => element("li", {}, [`#${c.conn_id} on ${c.remote || "?"} — ${c.channels.join(", ") || "no channels"}`]))
      : [element("li", { className: "hint" }, ["not connected"])]));
  } catch (err) {
    result(err.message);
  }
}

// -- dynamic routes --------------------------------------------------------------------------
async function loadRoutes() {
  let routes;
  try {
    routes = (await api("GET", "/admin/routes")).routes;
  } catch (err) {
    result(err.message);
    return;
  }
  $("#routes tbody").replaceChildren(...routes.map((r) => element("tr", { "data-route": r.name }, [
    element("td", {}, [r.name]), element("td", {}, [r.method]), element("td", {}, [r.base_url + r.path]),
    element("td", {}, [r.ws_supported ? "yes" : "no"]), element("td", {}, [r.breaker || "closed"]),
    element("td", {}, [element("button", { className: "danger", onclick: () => removeRoute(r.name) }, ["Remove"])]),
  ])));
}

async function registerRoute(event) {
  event.preventDefault();
  const form = event.target;
  const body = {
    name: form.name.value, base_url: form.base_url.value, path: form.path.value,
    method: form.method.value, timeout: Number(form.timeout.value),
    require_auth: form.require_auth.checked, ws_supported: form.ws_supported.checked,
  };
  try {
    result(await api("POST", "/api/register", body));
  } catch (err) {
    result(err.message);
  }
  await loadRoutes();
}

async function removeRoute(name) {
  try {
    result(await api("DELETE", `/api/unregister?name=${encodeURIComponent(name)}`));
  } catch (err) {
    result(err.message);
  }
  await loadRoutes();
}

// -- publish ---------------------------------------------------------------------------------
async function publish(event) {
  event.preventDefault();
  let data;
  try {
    data = JSON.parse($("#publish-data").value);
  } catch (err) {
    result(`Data is not valid JSON: ${err.message}`);
    return;
  }
  const target = $("#publish-target").value.trim();
  try {
    if ($("#publish-kind").value === "user") {
      result(await api("POST", `/api/push/${encodeURIComponent(target)}`, { data }));
    } else {
      result(await api("POST", "/api/publish", { channel: target, data }));
    }
  } catch (err) {
    result(err.message);
  }
}

// -- tabs and start-up -----------------------------------------------------------------------
const onOpen = { users: loadUsers, routes: loadRoutes };

function selectTab(name) {
  for (const button of document.querySelectorAll("nav button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const tab of document.querySelectorAll(".tab")) show(tab, tab.id === `tab-${name}`);
  if (onOpen[name]) onOpen[name]();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => signOut());
  $("#user-search").addEventListener("submit", (e) => { e.preventDefault(); renderUsers(); });
  $("#user-query").addEventListener("input", renderUsers);
  $("#route-form").addEventListener("submit", registerRoute);
  $("#publish-form").addEventListener("submit", publish);
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => selectTab(button.dataset.tab));
  }
  setInterval(renderOverview, 1000); // ages out silent nodes; the figures come from the socket
  const saved = sessionStorage.getItem("pygw-console");
  if (saved) {
    Object.assign(state, JSON.parse(saved));
    start();
  }
});
