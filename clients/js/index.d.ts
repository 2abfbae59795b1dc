// Types of pygw-client (index.js). Hand-written; keep in step with index.js.

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A frame from the server (`type` plus the members of that type). */
export interface Frame {
  type: string;
  id?: Json;
  [member: string]: unknown;
}

/** The server's first frame on a connection. */
export interface Welcome extends Frame {
  type: "connected";
  message: string;
  user_id: string;
  session_id: string;
  gateway_id: string;
  /** Seconds between the server's keep-alive pings. */
  ping_interval: number;
  inactivity_timeout: number;
}

/** `{"type":"message","channel","data","offset"?}`: a publication on a channel. */
export interface MessageFrame<T = Json> extends Frame {
  type: "message";
  channel: string;
  data: T;
  /** Absent on `user:<id>` pushes. */
  offset?: number;
}

/** A position in a channel's stream (for recovery). */
export interface StreamPosition {
  epoch: string;
  offset: number;
}

/** What `getToken` may give: a token, a token with the session id to use, or nothing. */
export type TokenResult = string | { token: string; sessionId?: string } | null | undefined;

export interface ClientOptions {
  /** The access token (JWT) to connect with. */
  token?: string;
  /**
   * Called for the first token when `token` is not given, and after a close with 1008 (invalid,
   * expired or revoked token): a different token is used to reconnect; the same or none stops
   * the client.
   */
  getToken?: () => TokenResult | Promise<TokenResult>;
  /** `session_id` query parameter (default: the token's own session). */
  sessionId?: string;
  /** Milliseconds a request waits for its reply (default 10000). */
  requestTimeout?: number;
  /** Milliseconds an attempt may take to get the welcome frame (default 10000). */
  connectTimeout?: number;
  /** Backoff: the first retry waits up to this many ms (default 500), doubling per attempt... */
  minReconnectDelay?: number;
  /** ...up to this cap (default 30000). Full jitter: the wait is uniform in [0, step]. */
  maxReconnectDelay?: number;
  /** A connection silent for 1.5 ping intervals plus this many ms (default 2000) is dead. */
  silenceGrace?: number;
  /** A WebSocket constructor (default: the global one). */
  WebSocket?: new (url: string) => WebSocketLike;
}

/** What the client uses of a WebSocket (the WHATWG one of browsers and Node >= 22). */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type ClientState = "disconnected" | "connecting" | "connected";

export interface DisconnectInfo {
  /** The close code (1006 when the socket closed without one). */
  code: number;
  reason: string;
  /** Whether the client will reconnect on its own. */
  reconnect: boolean;
}

export interface ClientEvents {
  connecting: (info: { attempt: number }) => void;
  connected: (welcome: Welcome) => void;
  disconnected: (info: DisconnectInfo) => void;
  error: (error: Error) => void;
  /** Message frames of channels without a subscription (e.g. pushes on `user:<id>`). */
  message: (frame: MessageFrame) => void;
  /** Every frame received. */
  frame: (frame: Frame) => void;
}

export interface SubscribedInfo {
  epoch: string;
  offset: number;
  /** True when a resubscription continued the stream without loss. */
  recovered: boolean;
  /** False for the first subscription, true after a reconnect (or with `since`). */
  resubscribed: boolean;
}

export interface GapInfo {
  /** Where the client asked to resume from. */
  since: StreamPosition;
  /** The channel's position now: reload the channel's state from your source of truth. */
  epoch: string;
  offset: number;
}

export interface SubscriptionEvents<T = Json> {
  message: (data: T, frame: MessageFrame<T>) => void;
  subscribed: (info: SubscribedInfo) => void;
  gap: (info: GapInfo) => void;
  error: (error: Error) => void;
}

export type SubscriptionHandlers<T = Json> = Partial<SubscriptionEvents<T>> & {
  /** Resume from a known position (e.g. saved before a page reload). */
  since?: StreamPosition;
};

export interface Presence {
  /** Client id -> `{user_id, conn_id, gateway_id}`. */
  presence: Record<string, { user_id: string; conn_id: number; gateway_id: string }>;
  count: number;
}

/** Remove the listener that `on` added. */
export type Off = () => void;

declare class Emitter<Events> {
  on<E extends keyof Events>(event: E, listener: Events[E]): Off;
  off<E extends keyof Events>(event: E, listener: Events[E]): void;
}

export declare class Subscription<T = Json> extends Emitter<SubscriptionEvents<T>> {
  readonly client: PygwClient;
  readonly channel: string;
  readonly state: "subscribing" | "subscribed" | "unsubscribed";
  /** Epoch and offset of the last message delivered (null before the first subscription). */
  readonly epoch: string | null;
  readonly offset: number | null;
  /** Whether the last (re)subscription continued the stream without loss. */
  readonly recovered: boolean;
  /** Resolves at the first successful subscription; rejects (PygwError) if refused. */
  readonly ready: Promise<Subscription<T>>;
  presence(): Promise<Presence>;
  publish(data: T): Promise<{ channel: string; offset: number }>;
  unsubscribe(): Promise<void>;
}

export declare class PygwClient extends Emitter<ClientEvents> {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  readonly state: ClientState;
  readonly token: string | null;
  readonly sessionId: string | null;
  /** The welcome frame of the current connection, or null. */
  readonly welcome: Welcome | null;
  /** Start (or keep) connecting; resolves with the welcome frame once connected; rejects
   *  with ClientClosedError if the client stops for good first. */
  connect(): Promise<Welcome>;
  /** Close for good (1000); `connect()` starts again and resubscribes. */
  close(): void;
  /** Send `frame` with a fresh `id`; resolves with the reply that echoes it. */
  request<R extends Frame = Frame>(frame: Frame, options?: { timeout?: number }): Promise<R>;
  publish(channel: string, data: Json): Promise<{ channel: string; offset: number }>;
  subscribe<T = Json>(channel: string, handlers?: SubscriptionHandlers<T>): Subscription<T>;
  subscription(channel: string): Subscription | undefined;
}

/** An error frame from the server: `code` 400, 403, 404, 429, 500 or 503. */
export declare class PygwError extends Error {
  readonly code: number;
  readonly frame: Frame;
}
export declare class RequestTimeoutError extends Error {}
export declare class ConnectionLostError extends Error {}
export declare class ClientClosedError extends Error {
  /** The close code that stopped the client (0 when it never connected). */
  readonly code: number;
  readonly reason: string;
}

/** Full jitter: `random() * min(maxDelay, minDelay * 2 ** attempt)` milliseconds. */
export declare function backoffDelay(
  attempt: number,
  minDelay: number,
  maxDelay: number,
  random?: () => number,
): number;

/** The `/ws/connect` URL for a gateway base URL (ws, wss, http or https) and credentials. */
export declare function connectUrl(
  url: string,
  token?: string | null,
  sessionId?: string | null,
): string;

export default PygwClient;
