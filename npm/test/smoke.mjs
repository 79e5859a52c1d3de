// Smoke test of the packed, optimized package: installs the tarball `npm pack` made into a
// scratch project, loads it in Node the way an app loads it, and talks to a real Rookery
// (ROOKERY_URL). Needs Node's WebSocket (`node --experimental-websocket` on Node 20).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const url = process.env.ROOKERY_URL;
const project = process.argv[2];
const require = createRequire(path.join(project, 'package.json'));
const entry = require.resolve('rookery');
const pkg = await import(entry);
const wasm = readFileSync(path.join(path.dirname(entry), 'rookery_client_bg.wasm'));
await pkg.default({ module_or_path: wasm });

const fail = (why) => { console.error(`smoke test failed: ${why}`); process.exit(1); };
const timer = setTimeout(() => fail('timed out'), 10000);
const room = `smoke-${Date.now()}`;
const a = new pkg.RookeryClient(url, { room });
const b = new pkg.RookeryClient(url, { room });
await a.connected();
await b.connected();
const profile = await a.login({ name: 'node', _secret: 1 });
if (profile.properties.name !== 'node') fail('login');
const got = new Promise((resolve) => b.subscribe('chat', (data, seq) => resolve({ data, seq })));
await new Promise((r) => setTimeout(r, 100));
await a.chat('hello from the packed package');
const { data: chat, seq } = await got;
if (chat.message !== 'hello from the packed package') fail('chat');
if (!Number.isInteger(seq)) fail(`chat seq ${seq}`);
if (chat.user.properties._secret !== undefined) fail('private property leaked');
const counter = b.counter('n');
await new Promise((r) => setTimeout(r, 100));
await a.counter('n').add(2.5);
for (let i = 0; i < 100 && counter.value !== 2.5; i++) await new Promise((r) => setTimeout(r, 20));
if (counter.value !== 2.5) fail(`counter ${counter.value}`);
try {
  await a.counter('n').add(NaN);
  fail('add(NaN) resolved');
} catch (e) {
  if (e.code !== 'invalid_data') fail(`add(NaN): error code ${e.code}`);
}
// The endpoint's own URL works as well as the server's; history holds what was said.
const c = new pkg.RookeryClient(`${url}/websocket`, { room });
await c.connected();
const page = await c.history({ limit: 10 });
const said = page.events.find((e) => e.type === 'chat');
if (said?.data.message !== 'hello from the packed package' || said.seq !== seq) fail('history');
if (typeof page.pos.epoch !== 'string') fail('history pos');
c.close();
try {
  await a.poll('p').vote(null);
  fail('a bad vote resolved');
} catch (e) {
  if (e.code !== 'invalid_data') fail(`error code ${e.code}`);
}
a.close();
b.close();
clearTimeout(timer);
console.log('smoke test of the packed package: ok');
process.exit(0);
