// Shared by smoke.js and ramp.js: one VU = one user's WebSocket session against pygw.
//
// Accounts are created before the test through pygw's own API (register + login, see
// benches/k6_run.py) and passed in as a JSON array of {token, session_id, username} (env CREDS);
// VU n uses entry (n-1) mod len. Each iteration opens /ws/connect, waits for the "connected"
// welcome, then (after a random phase) sends one message every INTERVAL_MS, alternating
// {"type":"update_api_key"} and {"type":"ping"} (each with an "id"), checks every reply (ack
// echoing the key / pong, same id), answers server keep-alive pings, stops sending 1 s before
// SESSION_S and closes. Errors are counted by kind (gw_err_*): no welcome, closed by the server,
// replies still missing at close, unexpected frames, other.
import { WebSocket } from 'k6/experimental/websockets';
import { SharedArray } from 'k6/data';
import { Counter, Trend } from 'k6/metrics';
import { check } from 'k6';
import { setInterval, clearInterval, setTimeout } from 'k6/timers';

const creds = new SharedArray('creds', () => JSON.parse(open(__ENV.CREDS)));
const WS_BASE = __ENV.WS_BASE || 'ws://127.0.0.1:8000';
const INTERVAL_MS = Number(__ENV.INTERVAL_MS || 2000);
const SESSION_S = Number(__ENV.SESSION_S || 30);

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
  gw_msg_rtt: ['p(99)<6'],
  gw_connect_time: ['p(99)<100'],
  checks: ['rate==1'],
};

export function session() {
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
