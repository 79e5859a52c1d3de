// Type-checks the package README's example against the published .d.ts (`tsc --strict`,
// run by scripts/npm-smoke.sh on the installed tarball): the public types must let an app
// be written without `any`.
import init, {
  RookeryClient,
  type ChatMessage,
  type ConnectionState,
  type CounterValue,
  type Discontinuity,
  type HistoryOptions,
  type HistoryPage,
  type JsonValue,
  type Member,
  type PollStats,
  type Pos,
  type PresenceDiff,
  type Profile,
  type RoomEvent,
  type RookeryError,
  type StateInfo,
} from "rookery";

export async function example(url: string, jwt: string): Promise<void> {
  await init();
  const client = new RookeryClient(url, {
    room: "lobby",
    token: jwt,
    getToken: async (): Promise<string> => jwt,
    properties: { name: "Ann" },
    minReconnectDelayMs: 500,
    maxReconnectDelayMs: 20_000,
  });
  client.onState((state: ConnectionState, info: StateInfo) => {
    const recovered: boolean | undefined = info.recovered;
    console.log(state, recovered, info.code, info.reason, info.url);
  });
  client.onDiscontinuity((gap: Discontinuity) => {
    const at: Pos | undefined = gap.pos;
    console.log(gap.reason === "not_recovered", at?.epoch, at?.seq);
  });
  client.onError((error: RookeryError) => console.log(error.code, error.url, error.message));
  await client.connected();
  const me: Profile = await client.login({ name: "Ann", _email: "ann@example.com" });
  const again: Profile = await client.profile();
  console.log(me.id, me.suffix, me.properties, again.connectionDetails, me.pos?.seq);

  const sub = client.subscribe("chat", (data, seq) => {
    const msg = data as ChatMessage;
    const who: Member = msg.user;
    const place: number | undefined = seq;
    console.log(who.properties.name, msg.message, place);
  });
  await client.chat("hello");
  await client.chat({ text: "structured", n: 1, tags: ["a"] });
  sub.unsubscribe();

  const poll = client.poll("lunch", { ephemeral: true });
  client.poll("mood").release();
  poll.onUpdate((update: PollStats, seq?: number) => console.log(update.stats.pizza, seq));
  await poll.vote("pizza");
  const stats: Record<string, number> = poll.stats;
  poll.release();

  const counter = client.counter("donations");
  counter.onChange((change: CounterValue) => console.log(change.value));
  await counter.add(17.75);

  const page: HistoryPage = await client.history();
  const options: HistoryOptions = { limit: 50, before: page.pos.seq };
  const older = await client.history(options);
  const events: RoomEvent[] = [...older.events, ...page.events];
  for (const e of events) {
    const seq: number = e.seq;
    switch (e.type) {
      case "chat": {
        const chat: ChatMessage = e.data;
        console.log(seq, chat.user.properties.name, chat.message);
        break;
      }
      case "poll":
      case "ephemeralPoll": {
        const update: PollStats = e.data;
        console.log(seq, update.stats);
        break;
      }
      case "counter": {
        const total: number = e.data.value;
        console.log(seq, e.data.id, total);
        break;
      }
      case "config": {
        const config: string = e.data;
        console.log(seq, config);
        break;
      }
      case "broadcast": {
        const payload: JsonValue = e.data;
        console.log(seq, payload, e.eventID);
        break;
      }
    }
  }
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
