// Compiled (never run) by `tsc -p clients/js`: the declarations in index.d.ts describe the API
// the README shows, and misuse is a type error.
import {
  ClientClosedError,
  PygwClient,
  PygwError,
  type DisconnectInfo,
  type GapInfo,
  type MessageFrame,
  type Subscription,
  type Welcome,
} from "../index.js";

interface Chat {
  from: string;
  text: string;
}

export async function usage(url: string): Promise<void> {
  const client = new PygwClient(url, {
    getToken: async () => ({ token: "jwt", sessionId: "sid" }),
    minReconnectDelay: 250,
  });
  const offConnected = client.on("connected", (welcome: Welcome) => {
    const seconds: number = welcome.ping_interval;
    void seconds;
  });
  client.on("disconnected", ({ code, reconnect }: DisconnectInfo) => {
    if (!reconnect) console.log("stopped with", code);
  });
  client.on("message", (frame: MessageFrame) => console.log(frame.channel, frame.data));
  const welcome = await client.connect();
  console.log(welcome.user_id, client.state);

  const sub: Subscription<Chat> = client.subscribe<Chat>("room:lobby", {
    message: (data) => console.log(data.from, data.text.toUpperCase()),
    gap: (info: GapInfo) => console.log("reload from", info.offset),
  });
  sub.on("subscribed", ({ recovered, resubscribed }) => console.log(recovered, resubscribed));
  await sub.ready;
  const { offset } = await sub.publish({ from: "ada", text: "hi" });
  const who = await sub.presence();
  console.log(offset, who.count, Object.values(who.presence)[0]?.user_id);

  try {
    const pong = await client.request({ type: "ping" }, { timeout: 1000 });
    console.log(pong.type);
  } catch (err) {
    if (err instanceof PygwError) console.log(err.code, err.frame);
    if (err instanceof ClientClosedError) console.log(err.code, err.reason);
  }
  await sub.unsubscribe();
  offConnected();
  client.close();

  // @ts-expect-error: a subscription of Chat publishes Chat
  await sub.publish(42);
  // @ts-expect-error: no such event
  client.on("connected-ish", () => {});
  // @ts-expect-error: the timeout is an option object
  await client.request({ type: "ping" }, 1000);
}
