/**
 * pygw client for browsers and Node >= 20: one WebSocket to a pygw gateway that reconnects on
 * its own, resubscribes with `since` so that messages published while it was away are recovered
 * from the channel's history, answers the server's keep-alive pings and matches replies to
 * requests by `id`. No dependencies; types in index.d.ts; usage in README.md.
 *
 * The wire protocol is pygw's `/ws/connect` (see the gateway's README): JSON text frames,
 * `{"type":"connected",...}` first, replies echo the request's `id`.
 */

/** Close codes after which the client does not reconnect on its own (1008: unless a new token). */
const CLOSE_NORMAL = 1000;
const CLOSE_POLICY = 1008;
/** 1008 reasons that are about this connection's silence, not its credentials. */
const TRANSIENT_POLICY_REASONS = new Set(["Pong timeout"]);
/** A socket that closed without a close frame (network cut, server killed, upgrade refused). */
const CLOSE_ABNORMAL = 1006;

const DEFAULTS = {
  requestTimeout: 10000,
  connectTimeout: 10000,
  minReconnectDelay: 500,
  maxReconnectDelay: 30000,
  silenceGrace: 2000,
};

/** The server refused a request: an `{"type":"error","code","message"}` frame. */
export class PygwError extends Error {
  constructor(message, code, frame) {
    super(message);
    this.name = "PygwError";
    /** HTTP-like code: 400 bad request, 403 forbidden, 404 unknown, 429 rate limited, ... */
    this.code = code;
    this.frame = frame;
  }
}

/** No reply within the request's timeout. */
export class RequestTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = "RequestTimeoutError";
  }
}

/** The socket closed after the request was sent and before its reply arrived. */
export class ConnectionLostError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionLostError";
  }
}

/** The client stopped for good: `close()` was called or the server said not to come back. */
export class ClientClosedError extends Error {
  constructor(message, code, reason) {
    super(message);
    this.name = "ClientClosedError";
    this.code = code;
    this.reason = reason;
  }
}

/** A tiny event emitter; a listener that throws is reported on `error` (or the console). */
class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Call `listener` on `event`; returns a function that removes it. */
  on(event, listener) {
    let set = this._listeners.get(event);
    if (!set) this._listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  _emit(event, ...args) {
    const set = this._listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(...args);
      } catch (err) {
        if (event !== "error" && this._listeners.get("error")?.size) this._emit("error", err);
        else console.error(`pygw: a '${event}' listener threw`, err);
      }
    }
  }
}

/** Full jitter: a uniformly random delay up to the capped exponential step. */
export function backoffDelay(attempt, minDelay, maxDelay, random = Math.random) {
  return random() * Math.min(maxDelay, minDelay * 2 ** attempt);
}

/** `ws(s)://host[:port]/ws/connect?token=...&session_id=...` from a base or full URL. */
export function connectUrl(url, token, sessionId) {
  const u = new URL(url);
  if (u.protocol === "http:") u.protocol = "ws:";
  else if (u.protocol === "https:") u.protocol = "wss:";
  if (u.pathname === "" || u.pathname === "/") u.pathname = "/ws/connect";
  if (token) u.searchParams.set("token", token);
  if (sessionId) u.searchParams.set("session_id", sessionId);
  return u.toString();
}

/**
 * One channel subscription. Messages are delivered at most once and in offset order; across
 * reconnects the client asks for what it missed and reports `subscribed` with `recovered`, or a
 * `gap` when history no longer holds it (the app should then reload the channel's state).
 */
export class Subscription extends Emitter {
  constructor(client, channel, handlers = {}, since = null) {
    super();
    this.client = client;
    this.channel = channel;
    /** "subscribing" | "subscribed" | "unsubscribed" */
    this.state = "subscribing";
    /** Epoch and offset of the last message delivered (or of the channel when subscribed). */
    this.epoch = since ? since.epoch : null;
    this.offset = since ? since.offset : null;
    /** Whether the last (re)subscription continued the stream without loss. */
    this.recovered = false;
    this._buffer = [];
    this._since = null;
    this._everSubscribed = false;
    for (const event of ["message", "subscribed", "gap", "error"]) {
      if (typeof handlers[event] === "function") this.on(event, handlers[event]);
    }
    /** Resolves at the first successful subscription; rejects if the server refuses it. */
    this.ready = new Promise((resolve, reject) => {
      this._resolveReady = resolve;
      this._rejectReady = reject;
    });
    this.ready.catch(() => {}); // a refusal is also emitted as `error`
  }

  /** Who is in the channel now (its namespace must have presence enabled). */
  async presence() {
    const reply = await this.client.request({ type: "presence", channel: this.channel });
    return { presence: reply.presence, count: reply.count };
  }

  /** Publish `data` to this channel; resolves with the publication's offset. */
  publish(data) {
    return this.client.publish(this.channel, data);
  }

  /** Stop receiving this channel's messages (and stop resubscribing it on reconnect). */
  async unsubscribe() {
    if (this.state === "unsubscribed") return;
    this.state = "unsubscribed";
    this._buffer = [];
    this.client._forget(this);
    if (this.client.state === "connected") {
      await this.client.request({ type: "unsubscribe", channel: this.channel });
    }
  }

  // -- driven by the client ------------------------------------------------------------------
  _subscribeFrame() {
    this.state = "subscribing";
    this._buffer = [];
    this._since =
      this.epoch !== null && this.offset !== null
        ? { epoch: this.epoch, offset: this.offset }
        : null;
    const frame = { type: "subscribe", channel: this.channel };
    if (this._since) frame.since = this._since;
    return frame;
  }

  _onFrame(frame) {
    if (this.state === "subscribing") this._buffer.push(frame);
    else if (this.state === "subscribed") this._deliver(frame);
  }

  _deliver(frame) {
    if (typeof frame.offset === "number") {
      if (this.offset !== null && frame.offset <= this.offset) return; // already delivered
      this.offset = frame.offset;
    }
    this._emit("message", frame.data, frame);
  }

  _onSubscribed(reply) {
    if (this.state !== "subscribing") return;
    const since = this._since;
    // Recovered: the server replayed what was missed, or nothing was published meanwhile.
    const recovered =
      since !== null &&
      (reply.recovered === true || (reply.epoch === since.epoch && reply.offset === since.offset));
    const buffered = this._buffer;
    this._buffer = [];
    this.state = "subscribed";
    this.recovered = recovered;
    if (!recovered) this.offset = null; // a new stream: what was buffered is all new
    this.epoch = reply.epoch;
    const resubscribed = this._everSubscribed || since !== null;
    this._everSubscribed = true;
    this._emit("subscribed", {
      epoch: reply.epoch,
      offset: reply.offset,
      recovered,
      resubscribed,
    });
    if (since !== null && !recovered) {
      this._emit("gap", { since, epoch: reply.epoch, offset: reply.offset });
    }
    for (const frame of buffered) this._deliver(frame);
    if (typeof reply.offset === "number" && (this.offset === null || reply.offset > this.offset)) {
      this.offset = reply.offset;
    }
    this._resolveReady(this);
  }

  _onRefused(err) {
    this.state = "unsubscribed";
    this.client._forget(this);
    this._rejectReady(err);
    this._emit("error", err);
  }
}

/**
 * A connection to a pygw gateway.
 *
 * Events: `connecting` ({attempt}), `connected` (the server's welcome frame), `disconnected`
 * ({code, reason, reconnect}), `error` (an Error), `message` (a message frame for a channel
 * without a subscription, e.g. a push on `user:<id>`), `frame` (every frame received).
 */
export class PygwClient extends Emitter {
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    this.token = options.token ?? null;
    this.sessionId = options.sessionId ?? null;
    /** "disconnected" | "connecting" | "connected" */
    this.state = "disconnected";
    /** The server's `connected` frame of the current connection. */
    this.welcome = null;
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._ws = null;
    this._wanted = false;
    this._attempt = 0;
    this._nextId = 0;
    this._pending = new Map();
    this._subs = new Map();
    this._timers = { reconnect: null, connect: null, silence: null };
    this._lastFrameAt = 0;
    this._waiters = [];
  }

  /** Start (or keep) connecting; resolves with the welcome frame once connected. */
  connect() {
    if (this.state === "connected") return Promise.resolve(this.welcome);
    const connected = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (!this._wanted) {
      this._wanted = true;
      this._attempt = 0;
      this._open();
    }
    return connected;
  }

  /** Close for good (code 1000); pending requests are rejected. `connect()` starts again. */
  close() {
    const wasOpen = this._ws !== null || this._wanted;
    this._wanted = false;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      try {
        ws.close(CLOSE_NORMAL, "client closed");
      } catch {
        // already closing
      }
    }
    this._stop(CLOSE_NORMAL, "client closed");
    if (wasOpen) {
      this._emit("disconnected", { code: CLOSE_NORMAL, reason: "client closed", reconnect: false });
    }
  }

  /**
   * Send `frame` with a fresh `id` and resolve with the reply carrying it; reject with a
   * PygwError for an error frame, RequestTimeoutError after `timeout` ms, ConnectionLostError
   * if the socket closed before the reply. While (re)connecting the frame waits (within its
   * timeout) and is sent once connected.
   */
  request(frame, { timeout = this.options.requestTimeout } = {}) {
    if (!this._wanted) {
      return Promise.reject(new ClientClosedError("not connected: call connect() first", 0, ""));
    }
    const id = ++this._nextId;
    return new Promise((resolve, reject) => {
      const entry = { message: { ...frame, id }, resolve, reject, sent: false, timer: null };
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RequestTimeoutError(`no reply to '${frame.type}' within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, entry);
      if (this.state === "connected") this._sendEntry(entry);
    });
  }

  /** Publish `data` to `channel`; resolves with `{channel, offset}`. */
  async publish(channel, data) {
    const reply = await this.request({ type: "publish", channel, data });
    return { channel: reply.channel, offset: reply.offset };
  }

  /**
   * Subscribe to `channel`. `handlers` may give `message(data, frame)`, `subscribed(info)`,
   * `gap(info)` and `error(err)`, and `since: {epoch, offset}` to resume from a known position.
   * Returns the Subscription at once; `await sub.ready` for the server's answer.
   */
  subscribe(channel, handlers = {}) {
    if (this._subs.has(channel)) throw new Error(`already subscribed to '${channel}'`);
    const sub = new Subscription(this, channel, handlers, handlers.since ?? null);
    this._subs.set(channel, sub);
    if (this.state === "connected") this._sendSubscribe(sub);
    return sub;
  }

  /** The subscription of `channel`, if any. */
  subscription(channel) {
    return this._subs.get(channel);
  }

  // -- connection lifecycle -------------------------------------------------------------------
  async _open() {
    this.state = "connecting";
    this._emit("connecting", { attempt: this._attempt });
    if (this.token === null && this.options.getToken) {
      try {
        this._setToken(await this.options.getToken());
      } catch (err) {
        this._emit("error", err);
      }
    }
    if (!this._wanted || this.state !== "connecting") return;
    if (!this._WebSocket) {
      const err = new Error(
        "no WebSocket: Node 20-21 need --experimental-websocket, or pass options.WebSocket",
      );
      this._emit("error", err);
      this._stop(0, err.message);
      return;
    }
    let ws;
    try {
      ws = new this._WebSocket(connectUrl(this.url, this.token, this.sessionId));
    } catch (err) {
      // A malformed URL will not get better: stop.
      this._emit("error", err);
      this._stop(0, String(err));
      return;
    }
    this._ws = ws;
    let opened = false;
    ws.binaryType = "arraybuffer";
    this._timers.connect = setTimeout(() => {
      if (this._ws === ws && this.state !== "connected") {
        this._lost(ws, CLOSE_ABNORMAL, "connect timeout");
      }
    }, this.options.connectTimeout);
    ws.onmessage = (event) => {
      if (this._ws === ws) this._onMessage(event.data);
    };
    ws.onclose = (event) => {
      if (this._ws === ws) this._lost(ws, event.code, event.reason);
    };
    ws.onopen = () => {
      opened = true;
    };
    ws.onerror = () => {
      // Once open, a close event follows with the code. A connection that fails before it
      // opens has no close code but 1006, and Node 20's WebSocket sends no close event then.
      if (!opened && this._ws === ws) this._lost(ws, CLOSE_ABNORMAL, "connection failed");
    };
  }

  _onMessage(data) {
    this._lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      this._emit("error", new Error("pygw: a frame that is not JSON"));
      return;
    }
    this._emit("frame", frame);
    switch (frame.type) {
      case "connected":
        this._onConnected(frame);
        return;
      case "ping":
        this._send({ type: "pong" });
        return;
      case "message": {
        const sub = this._subs.get(frame.channel);
        if (sub) sub._onFrame(frame);
        else this._emit("message", frame);
        return;
      }
      default:
        break;
    }
    if (frame.id !== undefined && this._pending.has(frame.id)) {
      const entry = this._pending.get(frame.id);
      this._pending.delete(frame.id);
      clearTimeout(entry.timer);
      if (frame.type === "error") entry.reject(new PygwError(frame.message, frame.code, frame));
      else entry.resolve(frame);
    } else if (frame.type === "error") {
      this._emit("error", new PygwError(frame.message, frame.code, frame));
    }
  }

  _onConnected(welcome) {
    clearTimeout(this._timers.connect);
    this.state = "connected";
    this.welcome = welcome;
    this._attempt = 0;
    if (welcome.session_id) this.sessionId = welcome.session_id;
    this._watchSilence(welcome.ping_interval);
    for (const sub of this._subs.values()) this._sendSubscribe(sub);
    for (const entry of this._pending.values()) if (!entry.sent) this._sendEntry(entry);
    this._emit("connected", welcome);
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.resolve(welcome);
  }

  /** A live connection hears from the server at least every ping interval: if it falls
   * silent for 1.5 intervals (+ silenceGrace ms), the connection is dead; reconnect. */
  _watchSilence(pingInterval) {
    if (!(pingInterval > 0)) return;
    const limit = pingInterval * 1500 + this.options.silenceGrace;
    const ws = this._ws;
    const check = () => {
      if (this._ws !== ws) return;
      const silent = Date.now() - this._lastFrameAt;
      if (silent >= limit) this._lost(ws, CLOSE_ABNORMAL, "server silent");
      else this._timers.silence = setTimeout(check, limit - silent);
    };
    this._timers.silence = setTimeout(check, limit);
  }

  async _lost(ws, code, reason) {
    if (this._ws !== ws) return;
    this._ws = null;
    this._clearTimers();
    ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close();
    } catch {
      // already closed
    }
    this.state = "disconnected";
    this.welcome = null;
    this._failPending(new ConnectionLostError(`connection closed (${code}) before the reply`));
    for (const sub of this._subs.values()) if (sub.state === "subscribing") sub._buffer = [];
    let reconnect = this._wanted;
    if (reconnect && code === CLOSE_NORMAL) reconnect = false;
    if (reconnect && code === CLOSE_POLICY && !TRANSIENT_POLICY_REASONS.has(reason)) {
      reconnect = await this._refreshToken();
      if (!this._wanted) return; // close() was called meanwhile (and told the listeners)
    }
    this._emit("disconnected", { code, reason, reconnect });
    if (!reconnect) {
      if (this._wanted) this._stop(code, reason);
      return;
    }
    const delay = backoffDelay(
      this._attempt++,
      this.options.minReconnectDelay,
      this.options.maxReconnectDelay,
    );
    this._timers.reconnect = setTimeout(() => {
      this._timers.reconnect = null;
      if (this._wanted && this.state === "disconnected") this._open();
    }, delay);
  }

  /** After a 1008: ask getToken for a new token; true if it gave one that differs. */
  async _refreshToken() {
    if (!this.options.getToken) return false;
    const used = this.token;
    try {
      this._setToken(await this.options.getToken());
    } catch (err) {
      this._emit("error", err);
      return false;
    }
    return this.token !== null && this.token !== used;
  }

  _setToken(value) {
    if (value && typeof value === "object") {
      this.token = value.token ?? null;
      if (value.sessionId) this.sessionId = value.sessionId;
    } else {
      this.token = value || null;
    }
  }

  /** Stopped for good: no more reconnects; waiters of connect() are rejected. */
  _stop(code, reason) {
    this._wanted = false;
    this.state = "disconnected";
    const err = new ClientClosedError(`disconnected (${code} ${reason})`, code, reason);
    this._failPending(err, true);
    const waiters = this._waiters;
    this._waiters = [];
    for (const w of waiters) w.reject(err);
  }

  // -- sending -----------------------------------------------------------------------------------
  _send(frame) {
    const ws = this._ws;
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(frame));
  }

  _sendEntry(entry) {
    entry.sent = true;
    this._send(entry.message);
  }

  _sendSubscribe(sub) {
    this.request(sub._subscribeFrame()).then(
      (reply) => {
        if (this._subs.get(sub.channel) === sub) sub._onSubscribed(reply);
      },
      (err) => {
        if (this._subs.get(sub.channel) !== sub) return;
        if (err instanceof PygwError) sub._onRefused(err);
        else if (err instanceof RequestTimeoutError) sub._emit("error", err);
        // ConnectionLost / ClientClosed: resubscribed at the next connection, if any.
      },
    );
  }

  _forget(sub) {
    if (this._subs.get(sub.channel) === sub) this._subs.delete(sub.channel);
  }

  /** Reject requests already sent (their reply can no longer come); with `all`, queued too. */
  _failPending(err, all = false) {
    for (const [id, entry] of this._pending) {
      if (all || entry.sent) {
        this._pending.delete(id);
        clearTimeout(entry.timer);
        entry.reject(err);
      }
    }
  }

  _clearTimers() {
    for (const name of Object.keys(this._timers)) {
      clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }
}

export default PygwClient;
