/**
 * Real processes for the client's tests: `python -m pygw serve` (the worktree's .venv, or
 * $PYGW_PYTHON) and a throw-away `redis-server`, each on a free 127.0.0.1 port, stopped by PID.
 * The same settings as tests/gateway_process.py: a fixed SECRET_KEY (tokens survive restarts),
 * cheap argon2, no per-IP login limit.
 */

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const PYTHON = process.env.PYGW_PYTHON ?? join(ROOT, ".venv/bin/python");
export const REDIS_SERVER = process.env.REDIS_SERVER ?? "redis-server";
export const TEST_SECRET = "pygw-test-secret-key-0123456789abcdef";
export const API_KEY = "js-client-test-key";
export const PASSWORD = "correct-horse-1";

const BASE_ENV = {
  SECRET_KEY: TEST_SECRET,
  LOGGING_LEVEL: "WARNING",
  PYTHONUNBUFFERED: "1",
  PYGW_ARGON2_MEMORY_KIB: "1024",
  PYGW_ARGON2_TIME_COST: "1",
  PYGW_RATE_LOGIN_IP: "0",
  PYGW_API_KEYS: API_KEY,
};

const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `predicate` every 20 ms until it is truthy; throw after `timeout` ms. */
export async function until(what, predicate, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`waited ${timeout} ms for ${what}`);
    await sleep(20);
  }
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/** A child process whose output is kept (the tail goes into errors). */
class Child {
  constructor(command, args, env) {
    this.output = "";
    this.exited = null;
    this.proc = spawn(command, args, { env, stdio: ["ignore", "pipe", "pipe"] });
    running.add(this.proc);
    const keep = (chunk) => {
      this.output = (this.output + chunk.toString()).slice(-8000);
    };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    this.done = new Promise((r) =>
      this.proc.on("exit", (code, signal) => {
        running.delete(this.proc);
        this.exited = { code, signal };
        r(this.exited);
      }),
    );
  }

  /** SIGTERM this process (SIGKILL after `timeout` ms) and wait for it to exit. */
  async stop(timeout = 15000) {
    if (this.exited) return this.exited;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), timeout);
    const result = await this.done;
    clearTimeout(timer);
    return result;
  }
}

export class RedisServer {
  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), "pygw-js-redis-"));
    this.port = 0;
    this.child = null;
  }

  get url() {
    return `redis://127.0.0.1:${this.port}/0`;
  }

  async start() {
    this.port = await freePort();
    this.child = new Child(
      REDIS_SERVER,
      [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        this.dir,
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
      ],
      process.env,
    );
    await until("redis-server to accept connections", async () => {
      if (this.child.exited) throw new Error(`redis-server exited: ${this.child.output}`);
      return canConnect(this.port);
    });
    return this;
  }

  async stop() {
    if (this.child) await this.child.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function canConnect(port) {
  return new Promise((r) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.on("connect", () => {
      sock.destroy();
      r(true);
    });
    sock.on("error", () => r(false));
  });
}

/** One `pygw serve` on 127.0.0.1; `stop()` then `start()` restarts it on the same port. */
export class Gateway {
  constructor({ redisUrl = null, env = {} } = {}) {
    this.redisUrl = redisUrl;
    this.env = env;
    this.port = 0;
    this.child = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}`;
  }

  environment() {
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("PYGW_") && !["REDIS_URL", "SECRET_KEY", "PORT", "HOST"].includes(k)) {
        env[k] = v;
      }
    }
    Object.assign(env, BASE_ENV, this.env);
    if (this.redisUrl) env.REDIS_URL = this.redisUrl;
    return env;
  }

  async start() {
    if (!existsSync(PYTHON)) throw new Error(`${PYTHON} is missing: run 'make dev' first`);
    if (!this.port) this.port = await freePort();
    const args = ["-m", "pygw", "serve", "--host", "127.0.0.1", "--port", String(this.port)];
    this.child = new Child(PYTHON, args, this.environment());
    await until(
      "the gateway to be healthy",
      async () => {
        if (this.child.exited) throw new Error(`gateway exited: ${this.child.output}`);
        try {
          return (await fetch(`${this.url}/health`)).status === 200;
        } catch {
          return false;
        }
      },
      30000,
    );
    return this;
  }

  async stop() {
    if (this.child) await this.child.stop();
  }

  async post(path, body, headers = {}) {
    const response = await fetch(this.url + path, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body: JSON.stringify(body ?? {}),
    });
    const json = await response.json();
    if (response.status !== 200)
      throw new Error(`${path}: ${response.status} ${JSON.stringify(json)}`);
    return json;
  }

  async get(path, headers = {}) {
    const response = await fetch(this.url + path, { headers });
    return response.json();
  }

  /** Register and log in a fresh user: {username, token, sessionId, refreshToken}. */
  async account(prefix = "js") {
    const username = `${prefix}_${Math.random().toString(16).slice(2, 12)}`;
    await this.post("/sessions/register", {
      username,
      email: `${username}@example.com`,
      password: PASSWORD,
    });
    const login = await this.post("/sessions/login", { username, password: PASSWORD });
    return {
      username,
      token: login.access_token,
      sessionId: login.session_id,
      refreshToken: login.refresh_token,
    };
  }

  /** Publish through the server API (as a backend would). */
  publish(channel, data) {
    return this.post("/api/publish", { channel, data }, { "X-API-Key": API_KEY });
  }
}
