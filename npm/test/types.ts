// Type-checks the package README's example against the published .d.ts (`tsc --strict`,
// run by scripts/npm-smoke.sh on the installed tarball): the public types must let an app
// be written without `any`.
import init, {
  RookeryClient,
  type ChatMessage,
  type ConnectionState,
  type CounterValue,
  type Member,
  type PollStats,
  type PresenceDiff,
  type Profile,
  type RookeryError,
} from "rookery";

export async function example(url: string, jwt: string): Promise<void> {
  await init();
  const client = new RookeryClient(url, {
    room: "lobby",
    token: jwt,
    properties: { name: "Ann" },
    minReconnectDelayMs: 500,
    maxReconnectDelayMs: 20_000,
  });
  client.onState((state: ConnectionState) => console.log(state));
  await client.connected();
  const me: Profile = await client.login({ name: "Ann", _email: "ann@example.com" });
  const again: Profile = await client.profile();
  console.log(me.id, me.suffix, me.properties, again.connectionDetails);

  const sub = client.subscribe("chat", (data) => {
    const msg = data as ChatMessage;
    const who: Member = msg.user;
    console.log(who.properties.name, msg.message);
  });
  await client.chat("hello");
  await client.chat({ text: "structured", n: 1, tags: ["a"] });
  sub.unsubscribe();

  const poll = client.poll("lunch", { ephemeral: true });
  poll.onUpdate((update: PollStats) => console.log(update.stats.pizza));
  await poll.vote("pizza");
  const stats: Record<string, number> = poll.stats;
  poll.release();

  const counter = client.counter("donations");
  counter.onChange((change: CounterValue) => console.log(change.value));
  await counter.add(17.75);
  const value: number = counter.value;
  counter.release();

  const presence = client.presence();
  presence.onJoin((diff: PresenceDiff) => console.log(diff.member.properties, diff.count));
  presence.onLeave(({ member }) => console.log(member.id));
  presence.onUpdate(({ member }) => console.log(member.properties));
  const members: Member[] = presence.members;
  const count: number = presence.count;
  presence.release();

  try {
    await poll.vote(null);
  } catch (e) {
    console.log((e as RookeryError).code);
  }
  console.log(stats, value, members, count, client.state);
  client.close();
}
