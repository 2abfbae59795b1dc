// Shared by smoke.js and ramp.js: one VU = one user's WebSocket session against pygw.
//
// Any gateway, from any directory:
//   k6 run -e BASE_URL=http://host:8000 k6/smoke.js
// BASE_URL is the gateway's HTTP base (default http://127.0.0.1:8000); WS_BASE (default: BASE_URL
// with ws:// or wss://) is where the WebSockets go.
//
// Accounts: setup() registers and logs in ACCOUNTS users (default: the VU count, at most 20)
// through the gateway's own API (POST /sessions/register, /sessions/login), unless CREDS names a
// JSON file of [{token, session_id, username}] (relative to the current directory, or absolute),
// e.g. the 10k accounts `python -m benches k6_run --profile ramp` creates. VU n uses account
// (n-1) mod len: the VUs of one account are several connections of one login.
//
// Rate limits from one client address (README, "Load testing"): setup's logins must fit
// PYGW_RATE_LOGIN_IP (default 30/60, hence at most 20 accounts), and reconnects
// PYGW_RATE_WS_CONNECT (default 20/s, burst 50; smoke: 50 VUs reconnecting every SESSION_S).
// Larger runs need those lifted on the gateway (PYGW_RATE_LOGIN_IP=0, PYGW_RATE_WS_CONNECT=0).
//
// Each iteration opens /ws/connect, waits for the "connected" welcome, then (after a random
// phase) sends one message every INTERVAL_MS, alternating {"type":"update_api_key"} and
// {"type":"ping"} (each with an "id"), checks every reply (ack echoing the key / pong, same id),
// answers server keep-alive pings, stops sending 1 s before SESSION_S and closes. Errors are
// counted by kind (gw_err_*): no welcome, closed by the server, replies still missing at close,
// unexpected frames, other. Thresholds: 0 errors, every check, and round trip / connect p99 under
// RTT_P99_MS (6) / CONNECT_P99_MS (100): raise those two for a gateway across a network.
import { WebSocket } from 'k6/experimental/websockets';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';
import { check, fail } from 'k6';
import http from 'k6/http';
import { setInterval, clearInterval, setTimeout } from 'k6/timers';

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8000').replace(/\/+$/, '');
const WS_BASE = (__ENV.WS_BASE || BASE_URL.replace(/^http/, 'ws')).replace(/\/+$/, '');
const PASSWORD = __ENV.PASSWORD || 'k6-password-1';
const MAX_CREATED = 20;

// k6 resolves open()'s relative paths against the script's folder; users mean their own.
function fromCurrentDirectory(path) {
  if (path.startsWith('/')) return path;
  if (!__ENV.PWD) fail(`CREDS=${path}: give an absolute path (the current directory is unknown)`);
  return `${__ENV.PWD}/${path}`;
}

const shared = __ENV.CREDS
  ? new SharedArray('creds', () => JSON.parse(open(fromCurrentDirectory(__ENV.CREDS))))
  : null;

function expect(response, what) {
  if (response.status !== 200) {
    fail(`${what}: HTTP ${response.status} ${response.body} (rate limits: see lib.js)`);
  }
  return response.json();
}

// setup(): the accounts, created on the gateway unless CREDS gives them.
export function createAccounts(vus) {
  if (shared !== null) return { creds: null };
  const count = Number(__ENV.ACCOUNTS || Math.min(vus, MAX_CREATED));
  const run = `k6_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6).toString(36)}`;
  const json = { headers: { 'Content-Type': 'application/json' } };
  const names = Array.from({ length: count }, (_, i) => `${run}_${i}`);
  const post = (path, body) => ['POST', `${BASE_URL}${path}`, JSON.stringify(body), json];
  http.batch(names.map((username) => post('/sessions/register',
    { username, email: `${username}@example.com`, password: PASSWORD })))
    .forEach((r, i) => expect(r, `register ${names[i]}`));
  const logins = http.batch(names.map((username) => post('/sessions/login',
    { username, password: PASSWORD })));
  const creds = logins.map((r, i) => {
    const body = expect(r, `login ${names[i]}`);
    return { username: names[i], token: body.access_token, session_id: body.session_id };
  });
  return { creds };
}

export const msgRtt = new Trend('gw_msg_rtt', true);
export const connectTime = new Trend('gw_connect_time', true);
// Names must not collide with k6's built-in ws_* metrics (ws_sessions, ws_msgs_sent, ...).
export const wsErrors = new Counter('gw_errors');
const errorsBy = {
  welcome: new Counter('gw_err_no_welcome'),
  closed: new Counter('gw_err_closed_by_server'),
  unanswered: new Counter('gw_err_unanswered'),
  unexpected: new Counter('gw_err_unexpected_frame'),
  other: new Counter('gw_err_other'),
};
export const wsSent = new Counter('gw_msgs_sent');
export const wsReplies = new Counter('gw_msgs_replied');
export const wsSessions = new Counter('gw_sessions');

export const thresholds = {
  gw_errors: ['count==0'],
  gw_msg_rtt: [`p(99)<${Number(__ENV.RTT_P99_MS || 6)}`],
  gw_connect_time: [`p(99)<${Number(__ENV.CONNECT_P99_MS || 100)}`],
  checks: ['rate==1'],
};

// One session of this VU: `data` is setup()'s, `defaults` the script's {sessionS, intervalMs}
// (SESSION_S / INTERVAL_MS in the environment win).
export function session(data, defaults) {
  const SESSION_S = Number(__ENV.SESSION_S || defaults.sessionS);
  const INTERVAL_MS = Number(__ENV.INTERVAL_MS || defaults.intervalMs);
  const creds = shared !== null ? shared : data.creds;
  const c = creds[(__VU - 1) % creds.length];
  const url = `${WS_BASE}/ws/connect?session_id=${c.session_id}&token=${c.token}`;
  const started = Date.now();
  const pending = new Map();
  let seq = 0;
  let sender = null;
  let welcomed = false;
  let closing = false;
  const ws = new WebSocket(url);

  const fail = (kind, n = 1) => {
    wsErrors.add(n);
    (errorsBy[kind] || errorsBy.other).add(n);
  };

  ws.onmessage = (event) => {
    const now = Date.now();
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (_) {
      fail('other');
      return;
    }
    if (msg.type === 'connected') {
      welcomed = true;
      connectTime.add(now - started);
      wsSessions.add(1);
      const send = () => {
        if (closing) return;
        seq += 1;
        const id = seq;
        const frame = id % 2 === 1
          ? { type: 'update_api_key', key: `k6-${__VU}-${id}`, id }
          : { type: 'ping', id };
        pending.set(id, { at: Date.now(), frame });
        wsSent.add(1);
        ws.send(JSON.stringify(frame));
      };
      // A random phase per session: VUs that connected together do not send in bursts.
      setTimeout(() => {
        if (closing) return;
        send();
        sender = setInterval(send, INTERVAL_MS);
      }, Math.random() * INTERVAL_MS);
      return;
    }
    if (msg.type === 'ping' && msg.id === undefined) {
      ws.send('{"type":"pong"}');
      return;
    }
    const entry = msg.id === undefined ? undefined : pending.get(msg.id);
    if (entry === undefined) {
      fail('unexpected');
      return;
    }
    pending.delete(msg.id);
    msgRtt.add(now - entry.at);
    wsReplies.add(1);
    const ok = entry.frame.type === 'ping'
      ? check(msg, { 'pong for ping': (m) => m.type === 'pong' && typeof m.timestamp === 'number' })
      : check(msg, {
        'ack for update_api_key': (m) => m.type === 'ack' && m.api_key === entry.frame.key
          && m.session_id === c.session_id,
      });
    if (!ok) fail('other');
  };

  ws.onerror = (e) => {
    if (!closing) fail('other');
  };

  ws.onclose = () => {
    if (sender !== null) clearInterval(sender);
    if (!welcomed) fail('welcome');
    else if (!closing) fail('closed');
    if (pending.size > 0) fail('unanswered', pending.size);
  };

  setTimeout(() => {
    closing = true;
    if (sender !== null) clearInterval(sender);
    sender = null;
  }, Math.max(0, SESSION_S * 1000 - 1000));
  setTimeout(() => {
    closing = true;
    ws.close();
  }, SESSION_S * 1000);
}
