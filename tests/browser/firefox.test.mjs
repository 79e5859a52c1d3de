// The demo and the console in headless Firefox, driven over W3C WebDriver (geckodriver;
// Playwright drives only its own patched Firefox builds). A smaller walk than the Chromium
// test (console.test.mjs): the demo connects and chats with itself; the console refuses a
// wrong key, logs in, lists a room made by a test client, opens it and tails its chat.
//   node --experimental-websocket firefox.test.mjs <http://HOST:PORT> <admin key> <geckodriver URL> <screenshot dir>
import { writeFileSync, mkdirSync } from 'node:fs';

const [base, key, driver, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const WAIT = 20000; // failure bound for anything that should happen (busy machines)
let step = 'start';
let session = null;

async function wd(method, path, body) {
  const res = await fetch(`${driver}${path}`, {
    method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body),
  });
  const answer = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${JSON.stringify(answer.value)}`);
  return answer.value;
}
const go = (url) => wd('POST', `/session/${session}/url`, { url });
const js = (script, args = []) => wd('POST', `/session/${session}/execute/sync`, { script, args });
async function until(script, what, args = []) {
  const deadline = Date.now() + WAIT;
  while (!(await js(script, args))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
async function screenshot(name) {
  writeFileSync(`${shots}/${name}`, Buffer.from(await wd('GET', `/session/${session}/screenshot`), 'base64'));
}

try {
  step = 'session';
  const created = await wd('POST', '/session', {
    capabilities: { alwaysMatch: { browserName: 'firefox', 'moz:firefoxOptions': { args: ['-headless', '--width=1280', '--height=800'] } } },
  });
  session = created.sessionId;
  const version = created.capabilities.browserVersion;

  step = 'demo';
  await go(`${base}/demo?room=firefox-${Date.now()}`);
  await until("return document.getElementById('state').textContent === 'connected'", 'the demo to connect');
  await until("return document.getElementById('count').textContent === '1'", 'presence');
  await js("document.getElementById('chat').value = 'hello from firefox'; document.getElementById('chat-form').requestSubmit();");
  await until("return document.getElementById('messages').textContent.includes('hello from firefox')", 'the chat to come back');
  await js("document.getElementById('plus').click();");
  await until("return document.getElementById('counter').textContent === '1'", 'the counter');
  console.log(`firefox test (${version}): the demo loads the SDK, connects, chats and counts: ok`);

  step = 'console';
  const room = `firefox-ops-${Date.now()}`;
  const client = new WebSocket(`${base.replace(/^http/, 'ws')}/websocket?room=${room}`);
  await new Promise((resolve, reject) => { client.onopen = resolve; client.onerror = reject; });
  await go(`${base}/console`);
  await until("return document.activeElement && document.activeElement.id === 'key'", 'focus on the key field');
  await js("document.getElementById('key').value = 'wrong'; document.getElementById('login-form').requestSubmit();");
  await until("return document.getElementById('login-error').textContent.includes('Wrong admin key')", 'a wrong key to be refused');
  await js("document.getElementById('key').value = arguments[0]; document.getElementById('login-form').requestSubmit();", [key]);
  await until("return !document.getElementById('dash').hidden", 'the dashboard');
  await until("return Number(document.getElementById('v-connections').textContent) >= 1", 'live counts');
  await js("const s = document.getElementById('search'); s.value = arguments[0]; s.dispatchEvent(new Event('input'));", [room]);
  await until("return !!document.querySelector(`#rooms tbody tr[data-room='${arguments[0]}'] button`)", 'the room in the list', [room]);
  await js("document.querySelector(`#rooms tbody tr[data-room='${arguments[0]}'] button`).click();", [room]);
  await until("return document.querySelectorAll('#members tbody tr').length === 1", 'the room page');
  client.send(JSON.stringify({ type: 'chat', data: 'tailed in firefox' }));
  await until("return document.getElementById('tail').textContent.includes('tailed in firefox')", 'the tail');
  await screenshot('console-room-firefox.png');
  client.close();
  console.log(`firefox test (${version}): the console refuses a wrong key, logs in, finds and opens a room, tails it: ok`);
  await wd('DELETE', `/session/${session}`);
} catch (e) {
  console.error(`firefox test failed at ${step}: ${e.message}`);
  if (session) await wd('DELETE', `/session/${session}`).catch(() => {});
  process.exit(1);
}
