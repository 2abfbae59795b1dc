/**
 * PygwClient against real gateways (node --test clients/js): request/reply, channels and
 * presence, keep-alive answers, no reconnect after logout (1000), a token refresh after 1008,
 * resuming with `since` after close()/connect() (and a gap when history cannot cover it), and
 * reconnecting on its own after the gateway restarts, recovering exactly what was published
 * meanwhile (Redis-backed, so the restart keeps users, tokens and history).
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  ClientClosedError,
  PygwClient,
  PygwError,
  RequestTimeoutError,
  backoffDelay,
  connectUrl,
} from "../index.js";
import { Gateway, RedisServer, sleep, until } from "./gateway.js";

if (typeof WebSocket !== "function") {
  throw new Error("no global WebSocket: run with Node >= 22 or node --experimental-websocket");
}

const NAMESPACES = JSON.stringify([
  { name: "room", history_size: 100, history_ttl: 600, presence: true },
  { name: "tiny", history_size: 2, history_ttl: 600 },
]);
const FAST = { minReconnectDelay: 50, maxReconnectDelay: 400 };

/** A client whose events are recorded in order: [name, payload]. */
function recorded(url, options) {
  const client = new PygwClient(url, { ...FAST, ...options });
  const events = [];
  for (const name of ["connecting", "connected", "disconnected", "error"]) {
    client.on(name, (payload) => events.push([name, payload]));
  }
  client.events = events;
  client.count = (name) => events.filter(([n]) => n === name).length;
  return client;
}

/** Collects a subscription's messages; `wait(n)` resolves when n have arrived. */
function collector() {
  const items = [];
  return {
    items,
    message: (data) => items.push(data),
    wait: (n, timeout = 10000) => until(`${n} messages`, () => items.length >= n, timeout),
  };
}

test("backoff is full jitter under a capped exponential", () => {
  assert.equal(
    backoffDelay(0, 500, 30000, () => 1),
    500,
  );
  assert.equal(
    backoffDelay(3, 500, 30000, () => 1),
    4000,
  );
  assert.equal(
    backoffDelay(20, 500, 30000, () => 1),
    30000,
  );
  assert.equal(
    backoffDelay(5, 500, 30000, () => 0),
    0,
  );
  assert.equal(
    backoffDelay(2, 500, 30000, () => 0.5),
    1000,
  );
  assert.equal(connectUrl("http://h:1", "t k", "s"), "ws://h:1/ws/connect?token=t+k&session_id=s");
  assert.equal(connectUrl("wss://h/ws/connect", "t"), "wss://h/ws/connect?token=t");
});

describe("on one gateway (memory backend)", () => {
  const gw = new Gateway({
    env: {
      PYGW_NAMESPACES: NAMESPACES,
      PYGW_ALLOW_UNKNOWN_NAMESPACES: "false",
      PYGW_PING_INTERVAL: "0.3",
      PYGW_INACTIVITY_TIMEOUT: "1",
    },
  });
  before(() => gw.start());
  after(() => gw.stop());

  test("request/reply: replies matched by id, error frames reject, silence times out", async () => {
    const a = await gw.account();
    const client = recorded(gw.wsUrl, { token: a.token, sessionId: a.sessionId });
    const welcome = await client.connect();
    assert.equal(welcome.user_id, a.username);
    assert.equal(welcome.session_id, a.sessionId);
    try {
      const replies = await Promise.all(
        Array.from({ length: 20 }, () => client.request({ type: "ping" })),
      );
      assert.ok(replies.every((r) => r.type === "pong"));
      assert.equal(new Set(replies.map((r) => r.id)).size, 20);
      const ack = await client.request({ type: "update_api_key", key: "sk-1" });
      assert.equal(ack.type, "ack");
      assert.equal(ack.api_key, "sk-1");

      await assert.rejects(client.request({ type: "teleport" }), (err) => {
        assert.ok(err instanceof PygwError);
        // A type a user may not send (SPEC §3: the original's role table).
        assert.equal(err.code, 403);
        assert.equal(err.message, "Unauthorized: role 'user' cannot send 'teleport'");
        return true;
      });
      // A pong gets no reply: the request times out.
      await assert.rejects(client.request({ type: "pong" }, { timeout: 200 }), RequestTimeoutError);
      assert.equal((await client.request({ type: "ping" })).type, "pong");
    } finally {
      client.close();
    }
    await assert.rejects(client.request({ type: "ping" }), ClientClosedError);
  });

  test("subscribe, publish, presence, refusals and unsubscribe", async () => {
    const [a, b] = [await gw.account(), await gw.account()];
    const ca = new PygwClient(gw.wsUrl, { token: a.token });
    const cb = new PygwClient(gw.wsUrl, { token: b.token });
    await Promise.all([ca.connect(), cb.connect()]);
    try {
      const channel = `room:${a.username}`;
      const got = collector();
      const subscribed = [];
      const sa = ca.subscribe(channel, {
        message: got.message,
        subscribed: (i) => subscribed.push(i),
      });
      const sb = cb.subscribe(channel);
      const gotB = collector();
      sb.on("message", gotB.message);
      await Promise.all([sa.ready, sb.ready]);
      assert.equal(subscribed.length, 1);
      assert.equal(subscribed[0].resubscribed, false);

      const pub = await cb.publish(channel, { text: "hi" });
      assert.equal(pub.channel, channel);
      await got.wait(1);
      await gotB.wait(1);
      assert.deepEqual(got.items, [{ text: "hi" }]);
      assert.equal(sa.offset, pub.offset);

      const who = await sa.presence();
      assert.equal(who.count, 2);
      assert.deepEqual(
        Object.values(who.presence)
          .map((m) => m.user_id)
          .sort(),
        [a.username, b.username].sort(),
      );

      // Refusals reject `ready` and are reported on the subscription.
      const errors = [];
      const refused = ca.subscribe("admin:ops", { error: (e) => errors.push(e) });
      await assert.rejects(refused.ready, (e) => e instanceof PygwError && e.code === 403);
      assert.equal(errors.length, 1);
      assert.equal(ca.subscription("admin:ops"), undefined);
      const unknown = ca.subscribe("nowhere:1");
      await assert.rejects(unknown.ready, (e) => e instanceof PygwError && e.code === 404);
      assert.throws(() => ca.subscribe(channel), /already subscribed/);

      await sa.unsubscribe();
      await sb.publish({ text: "after" });
      await gotB.wait(2);
      await ca.request({ type: "ping" }); // anything still in flight to `ca` has arrived
      assert.deepEqual(got.items, [{ text: "hi" }]);
      await assert.rejects(
        ca.request({ type: "presence", channel }),
        (e) => e instanceof PygwError && e.code === 403,
      );
    } finally {
      ca.close();
      cb.close();
    }
  });

  test("answers keep-alive pings (a socket that does not is closed 1008 Pong timeout)", async () => {
    const a = await gw.account();
    const client = recorded(gw.wsUrl, { token: a.token });
    let pings = 0;
    client.on("frame", (f) => {
      if (f.type === "ping") pings += 1;
    });
    await client.connect();
    // The control: a bare socket that never answers is closed by the server meanwhile.
    const bare = new WebSocket(`${gw.wsUrl}/ws/connect?token=${a.token}`);
    const bareClosed = new Promise((r) => bare.addEventListener("close", (e) => r(e)));
    try {
      await sleep(2500);
      const closed = await Promise.race([bareClosed, sleep(2000).then(() => null)]);
      assert.ok(closed, "the bare socket was not closed: the server's timeout did not apply");
      assert.equal(closed.code, 1008);
      assert.equal(closed.reason, "Pong timeout");
      assert.ok(pings >= 4, `only ${pings} pings`);
      assert.equal(client.count("disconnected"), 0);
      assert.equal(client.state, "connected");
      assert.equal((await client.request({ type: "ping" })).type, "pong");
    } finally {
      client.close();
    }
  });

  test("logout closes with 1000 and the client does not come back", async () => {
    const a = await gw.account();
    const client = recorded(gw.wsUrl, { token: a.token });
    await client.connect();
    const subscribed = client.subscribe(`room:${a.username}`);
    await subscribed.ready;
    await gw.post("/sessions/logout", {}, { Authorization: `Bearer ${a.token}` });
    await until("disconnected", () => client.count("disconnected") === 1);
    const [, info] = client.events.find(([n]) => n === "disconnected");
    assert.equal(info.code, 1000);
    assert.equal(info.reconnect, false);
    await sleep(600); // several reconnect delays
    assert.equal(client.count("connecting"), 1);
    assert.equal(client.state, "disconnected");
    await assert.rejects(client.request({ type: "ping" }), ClientClosedError);
  });

  test("1008: reconnects with the token getToken refreshes, stops if it gives the same", async () => {
    const a = await gw.account();
    // The first token is bad (as an expired one would be); getToken refreshes it.
    const tokens = [];
    const client = recorded(gw.wsUrl, {
      getToken: async () => {
        if (tokens.length === 0) {
          tokens.push("not-a-valid-token");
        } else {
          const fresh = await gw.post("/sessions/refresh", { refresh_token: a.refreshToken });
          tokens.push(fresh.access_token);
        }
        return tokens.at(-1);
      },
    });
    const welcome = await client.connect();
    assert.equal(welcome.user_id, a.username);
    assert.equal(tokens.length, 2);
    const names = client.events.map(([n]) => n);
    assert.deepEqual(names, ["connecting", "disconnected", "connecting", "connected"]);
    const [, info] = client.events[1];
    assert.equal(info.code, 1008);
    assert.equal(info.reason, "Invalid token");
    assert.equal(info.reconnect, true);
    client.close();

    // A getToken that gives the same bad token again: stop, disconnected with 1008.
    let calls = 0;
    const stuck = recorded(gw.wsUrl, {
      getToken: () => {
        calls += 1;
        return "still-not-a-token";
      },
    });
    await assert.rejects(stuck.connect(), (e) => e instanceof ClientClosedError && e.code === 1008);
    await sleep(400);
    assert.equal(calls, 2);
    assert.equal(stuck.count("connecting"), 1);
    assert.equal(stuck.state, "disconnected");
    // A static token (no getToken): the same.
    const fixed = recorded(gw.wsUrl, { token: "bad" });
    await assert.rejects(fixed.connect(), (e) => e instanceof ClientClosedError && e.code === 1008);
  });

  test("close() then connect() resumes with since; a gap when history cannot cover", async () => {
    const a = await gw.account();
    const client = recorded(gw.wsUrl, { token: a.token });
    await client.connect();
    const room = collector();
    const tiny = collector();
    const roomInfo = [];
    const gaps = [];
    const sr = client.subscribe(`room:r-${a.username}`, {
      message: room.message,
      subscribed: (i) => roomInfo.push(i),
    });
    const st = client.subscribe(`tiny:t-${a.username}`, {
      message: tiny.message,
      gap: (g) => gaps.push(g),
    });
    await Promise.all([sr.ready, st.ready]);
    await sr.publish(0);
    await st.publish(0);
    await room.wait(1);
    await tiny.wait(1);
    client.close();
    for (let n = 1; n <= 5; n += 1) {
      await gw.publish(sr.channel, n);
      await gw.publish(st.channel, n); // history keeps only the last 2 of these
    }
    await client.connect();
    await until("both resubscribed", () => sr.state === "subscribed" && st.state === "subscribed");
    await room.wait(6);
    assert.deepEqual(room.items, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(
      roomInfo.map((i) => [i.resubscribed, i.recovered]),
      [
        [false, false],
        [true, true],
      ],
    );
    assert.equal(gaps.length, 1);
    assert.equal(st.recovered, false);
    assert.deepEqual(tiny.items, [0]); // nothing partial
    await st.publish(6);
    await tiny.wait(2);
    assert.deepEqual(tiny.items, [0, 6]);
    client.close();
  });
});

describe("across a gateway restart (Redis backend)", () => {
  const redis = new RedisServer();
  const env = { PYGW_NAMESPACES: NAMESPACES };
  let gwA;
  let gwB;
  before(async () => {
    await redis.start();
    gwA = new Gateway({ redisUrl: redis.url, env });
    gwB = new Gateway({ redisUrl: redis.url, env });
    await Promise.all([gwA.start(), gwB.start()]);
  });
  after(async () => {
    await Promise.all([gwA?.stop(), gwB?.stop()]);
    await redis.stop();
  });

  test("reconnects on its own and recovers exactly what was published meanwhile", async () => {
    const N = 10;
    const a = await gwA.account();
    const client = recorded(gwA.wsUrl, { token: a.token });
    await client.connect();
    const got = collector();
    const infos = [];
    const gaps = [];
    const sub = client.subscribe(`room:restart-${a.username}`, {
      message: got.message,
      subscribed: (i) => infos.push(i),
      gap: (g) => gaps.push(g),
    });
    await sub.ready;
    await client.publish(sub.channel, 0);
    await got.wait(1);

    await gwA.stop(); // the client's gateway goes away (1001) ...
    await until("disconnected", () => client.count("disconnected") >= 1);
    assert.equal(client.events.find(([n]) => n === "disconnected")[1].reconnect, true);
    // ... N publications happen while it is down (through another node) ...
    for (let n = 1; n <= N; n += 1) await gwB.publish(sub.channel, n);
    await gwA.start(); // ... and it comes back on the same port, same Redis
    // More right after the restart, whether or not the client is back yet.
    for (let n = N + 1; n <= N + 3; n += 1) await gwA.publish(sub.channel, n);
    await until("reconnected", () => client.state === "connected", 15000);
    await until("resubscribed", () => infos.length === 2);
    await client.publish(sub.channel, N + 4);
    await got.wait(N + 5);
    await sleep(200); // a duplicate would show up now
    assert.deepEqual(
      got.items,
      Array.from({ length: N + 5 }, (_, n) => n),
    );
    assert.equal(infos[1].resubscribed, true);
    assert.equal(infos[1].recovered, true);
    assert.deepEqual(gaps, []);
    assert.equal(client.count("connected"), 2);
    client.close();
  });
});
