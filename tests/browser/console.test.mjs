// Drives the pages the server binary serves in headless Chromium (Playwright with the
// system browser): the demo at /demo in two tabs, and the console at /console against
// rooms made by real WebSocket clients (Node's WebSocket, pact dialect). Saves
// screenshots at desktop and phone widths.
//   node --experimental-websocket console.test.mjs <http://HOST:PORT> <admin key> <screenshot dir>
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const [base, key, shots] = process.argv.slice(2);
mkdirSync(shots, { recursive: true });
const WAIT = 15000; // failure bound for anything that should happen (busy machines)
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const clients = [];
const pageErrors = [];
let step = 'start';
const ok = (what) => console.log(`console test: ${what}: ok`);

/** A page that fails the test on any script error or CSP violation. */
async function open(context, url) {
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(`${url}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error(`browser console error on ${url}: ${m.text()}`);
  });
  await page.goto(url);
  await page.evaluate(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations = (window.__cspViolations || 0) + 1;
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return page;
}

async function noCspViolations(page) {
  if (pageErrors.length) throw new Error(`page errors: ${pageErrors.join('; ')}`);
  const n = await page.evaluate(() => window.__cspViolations || 0);
  if (n) throw new Error(`${n} CSP violations on ${page.url()}`);
}

/** A pact client of `room` in Node: its profile id, every frame it got, and how it closed. */
function pact(room) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/websocket?room=${encodeURIComponent(room)}`);
    const client = { ws, frames: [], closed: null, id: null };
    clients.push(client);
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      client.frames.push(frame);
      if (frame.type === 'profile' && !client.id) { client.id = frame.data.id; resolve(client); }
    };
    ws.onclose = (e) => { client.closed = { code: e.code, reason: e.reason }; };
    ws.onerror = () => reject(new Error('test client could not connect'));
  });
}

/** Sends `message` with a ref and waits for its reply. */
async function call(client, message) {
  const ref = `r${Math.random()}`;
  client.ws.send(JSON.stringify({ ...message, ref }));
  await until(() => client.frames.some((f) => f.ref === ref), `reply to ${message.type}`);
  const reply = client.frames.find((f) => f.ref === ref);
  if (reply.type === 'error') throw new Error(`${message.type}: ${JSON.stringify(reply.data)}`);
}

/** Waits for `check()` (polling a Node-side condition), failing after WAIT. */
async function until(check, what) {
  const deadline = Date.now() + WAIT;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

try {
  // 1. The demo, served by the binary, in two tabs that see each other.
  step = 'demo';
  const demoRoom = `demo-${Date.now()}`;
  const demo = await browser.newContext({ viewport: DESKTOP });
  const a = await open(demo, `${base}/demo?room=${demoRoom}`);
  const b = await open(demo, `${base}/demo?room=${demoRoom}`);
  for (const p of [a, b]) {
    await p.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: WAIT });
  }
  await a.waitForFunction(() => document.getElementById('count').textContent === '2', null, { timeout: WAIT });
  await a.fill('#name', 'Alice');
  await a.click('#login');
  await b.waitForFunction(() => document.getElementById('members').textContent.includes('Alice'), null, { timeout: WAIT });
  await a.fill('#chat', 'hello from A');
  await a.press('#chat', 'Enter');
  await b.waitForFunction(() => document.getElementById('messages').textContent.includes('Alice: hello from A'), null, { timeout: WAIT });
  await b.click('.vote[data-answer="sushi"]');
  await a.waitForFunction(() => document.getElementById('votes-sushi').textContent === '1', null, { timeout: WAIT });
  await b.click('#plus');
  await b.click('#plus');
  await a.waitForFunction(() => document.getElementById('counter').textContent === '2', null, { timeout: WAIT });
  await noCspViolations(a);
  await a.screenshot({ path: `${shots}/demo-desktop.png` });
  await a.setViewportSize(PHONE);
  await a.screenshot({ path: `${shots}/demo-phone.png`, fullPage: true });
  await b.close();
  await a.waitForFunction(() => document.getElementById('count').textContent === '1', null, { timeout: WAIT });
  await demo.close();
  ok('the demo served by the binary: two tabs saw each other\'s presence, chat, vote and counter');

  // 2. A room made by test clients.
  step = 'test clients';
  const room = `ops-${Date.now()}`;
  const alice = await pact(room);
  const bob = await pact(room);
  await call(alice, { type: 'login', data: { name: 'Alice' } });
  await call(alice, { type: 'subscribe', data: 'chat' });
  await call(bob, { type: 'subscribe', data: 'chat' });
  await call(alice, { type: 'poll', data: { id: 'lunch', answer: 'sushi' } });
  await call(bob, { type: 'poll', data: { id: 'lunch', answer: 'pizza' } });
  await call(bob, { type: 'counter', data: { id: 'clicks', value: 5 } });
  // Some traffic elsewhere, so that the plots and the traffic order have something to show.
  const busy = `busy-${Date.now()}`;
  const chatter = await pact(busy);
  for (let i = 0; i < 3; i++) await call(await pact(busy), { type: 'subscribe', data: 'chat' });
  let n = 0;
  const traffic = setInterval(() => chatter.ws.send(JSON.stringify({ type: 'chat', data: `tick ${n++}` })), 100);

  // 3. The console refuses a wrong key, then logs in with the right one.
  step = 'console login';
  const desk = await browser.newContext({ viewport: DESKTOP });
  const page = await open(desk, `${base}/console`);
  page.on('dialog', (d) => d.accept());
  // Keyboard: the key field has focus, Tab reaches the button.
  await page.waitForFunction(() => document.activeElement?.id === 'key', null, { timeout: WAIT });
  await page.keyboard.type('not-the-key');
  await page.keyboard.press('Tab');
  if (await page.evaluate(() => document.activeElement?.textContent) !== 'Log in') throw new Error('Tab does not reach the login button');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.includes('Wrong admin key'), null, { timeout: WAIT });
  if (!(await page.isHidden('#dash'))) throw new Error('the dashboard shows after a wrong key');
  await page.screenshot({ path: `${shots}/console-login-desktop.png` });
  ok('a wrong key is refused');
  await page.fill('#key', key);
  await page.keyboard.press('Enter');
  await page.waitForSelector('#dash:not([hidden])', { timeout: WAIT });
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie + location.href);
  if (stored.includes(key)) throw new Error('the key was stored outside page memory');
  await page.waitForFunction(() => Number(document.getElementById('v-connections').textContent.replace(/,/g, '')) >= 2, null, { timeout: WAIT });
  ok('logged in: live counts shown, the key in no URL, cookie or storage');

  // 4. The room list: search, members.
  step = 'room list';
  await page.fill('#search', room);
  const row = page.locator(`#rooms tbody tr[data-room="${room}"]`);
  await row.waitFor({ timeout: WAIT });
  await page.waitForFunction((r) => document.querySelector(`#rooms tbody tr[data-room="${r}"] .members`)?.textContent === '2', room, { timeout: WAIT });
  await page.selectOption('#sort', 'traffic');
  await page.fill('#search', '');
  // The busy room leads by traffic; both are listed.
  await page.waitForFunction(([busy, quiet]) => {
    const rows = [...document.querySelectorAll('#rooms tbody tr')].map((r) => r.dataset.room);
    return rows.indexOf(busy) === 0 && rows.includes(quiet);
  }, [busy, room], { timeout: WAIT });
  // A screenshot with some history in the plots (they gain a sample a second).
  await page.waitForFunction(() => Number(/last (\d+) s/.exec(document.querySelector('.range').textContent)?.[1]) >= 10, null, { timeout: 30000 });
  await page.screenshot({ path: `${shots}/console-desktop.png` });
  await page.fill('#search', room);
  await page.waitForFunction(() => document.querySelectorAll('#rooms tbody tr').length === 1, null, { timeout: WAIT });
  ok('the room list sorts by traffic and finds the room by search, with 2 members');

  // 5. The room page: members with dialect, polls, counters, config.
  step = 'room page';
  await row.locator('button').click();
  await page.waitForFunction(() => document.querySelectorAll('#members tbody tr').length === 2, null, { timeout: WAIT });
  const dialects = await page.$$eval('#members tbody .dialect', (cells) => cells.map((c) => c.textContent));
  if (dialects.join() !== 'pact,pact') throw new Error(`dialects: ${dialects}`);
  const presence = await page.textContent(`#members tbody tr[data-id="${alice.id}"]`);
  if (!presence.includes('Alice')) throw new Error(`Alice's presence: ${presence}`);
  await page.waitForFunction(() => document.querySelector('[data-counter="clicks"]')?.textContent === '5', null, { timeout: WAIT });
  const poll = await page.textContent('[data-poll="lunch"]');
  if (!/2 votes/.test(poll) || !/sushi/.test(poll) || !/pizza/.test(poll)) throw new Error(`poll: ${poll}`);
  if (await page.inputValue('#config') !== '{}') throw new Error('config');
  ok('the room page shows members with dialect and presence, the poll and the counter');

  // 6. The live tail sees a chat message.
  step = 'tail';
  const sent = Date.now();
  alice.ws.send(JSON.stringify({ type: 'chat', data: 'tail me' }));
  await page.waitForFunction(() => document.getElementById('tail').textContent.includes('tail me'), null, { timeout: WAIT });
  ok(`the live tail showed a chat message after ${Date.now() - sent} ms`);

  // 7. Broadcast: the clients receive it.
  step = 'broadcast';
  await page.fill('#bc-data', '{"message":"from the console"}');
  await page.click('#broadcast-form button');
  for (const c of [alice, bob]) {
    await until(() => c.frames.some((f) => f.type === 'broadcast' && f.data?.message === 'from the console'), 'the broadcast at a client');
  }
  await page.waitForFunction(() => document.getElementById('action-status').textContent.includes('Broadcast sent'), null, { timeout: WAIT });
  ok('a broadcast from the console reached both clients');

  // 8. Set config (confirmed): the clients get it.
  step = 'config';
  await page.fill('#config', '{"theme":"dark"}');
  await page.click('#config-form button');
  await until(() => alice.frames.some((f) => f.type === 'config' && String(f.data).includes('dark')), 'the config at a client');
  ok('set config reached the clients');

  // 9. Disconnect a client (confirmed): closed with 1000.
  step = 'disconnect';
  await page.waitForFunction(() => document.getElementById('tail').textContent.includes('from the console'), null, { timeout: WAIT });
  await page.screenshot({ path: `${shots}/console-room-desktop.png`, fullPage: true });
  await page.click(`#members tbody tr[data-id="${bob.id}"] button`);
  await until(() => bob.closed, 'the disconnected client to close');
  if (bob.closed.code !== 1000) throw new Error(`closed with ${bob.closed.code} ${bob.closed.reason}`);
  await page.waitForFunction(() => document.querySelectorAll('#members tbody tr').length === 1, null, { timeout: WAIT });
  ok(`disconnect closed the client with ${bob.closed.code} "${bob.closed.reason}"`);
  await noCspViolations(page);

  // 10. Phone width.
  step = 'phone';
  await page.setViewportSize(PHONE);
  await page.screenshot({ path: `${shots}/console-room-phone.png`, fullPage: true });
  await page.click('#back');
  await page.fill('#search', '');
  await page.waitForFunction(() => document.querySelectorAll('#rooms tbody tr').length === 2, null, { timeout: WAIT });
  await page.screenshot({ path: `${shots}/console-phone.png`, fullPage: true });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) throw new Error(`the console is ${overflow}px wider than a phone`);
  ok('phone width: no horizontal overflow');

  // 11. Logging out forgets the key: the feed stops and the login form is back.
  step = 'logout';
  await page.click('#logout');
  await page.waitForSelector('#login-view:not([hidden])', { timeout: WAIT });
  await noCspViolations(page);
  clearInterval(traffic);
  console.log(`console test: screenshots in ${shots}`);
  await browser.close();
  for (const c of clients) c.ws.close();
} catch (e) {
  console.error(`console test failed at ${step}: ${e.message}`);
  await browser.close();
  process.exit(1);
}
