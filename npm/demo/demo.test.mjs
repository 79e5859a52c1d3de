// Opens the demo in two headless Chromium pages against a real Rookery and checks that each
// sees the other's actions: presence, chat, a poll vote, a counter.
// node demo.test.mjs <demo url> <rookery ws url>
import { chromium } from 'playwright-core';

const [demo, server] = process.argv.slice(2);
const room = `demo-${Date.now()}`;
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const fail = async (why) => { console.error(`demo test failed: ${why}`); await browser.close(); process.exit(1); };
try {
  const url = `${demo}?server=${encodeURIComponent(server)}&room=${room}`;
  const a = await browser.newPage();
  const b = await browser.newPage();
  for (const p of [a, b]) {
    p.on('pageerror', (e) => console.error('page error:', e.message));
    await p.goto(url);
    await p.waitForFunction(() => document.getElementById('state').textContent === 'connected', null, { timeout: 10000 });
  }
  await a.waitForFunction(() => document.getElementById('count').textContent === '2', null, { timeout: 10000 });

  await a.fill('#name', 'Alice');
  await a.click('#login');
  await b.waitForFunction(() => document.getElementById('members').textContent.includes('Alice'), null, { timeout: 5000 });

  await a.fill('#chat', 'hello from A');
  await a.press('#chat', 'Enter');
  await b.waitForFunction(() => document.getElementById('messages').textContent.includes('Alice: hello from A'), null, { timeout: 5000 });

  await b.click('.vote[data-answer="sushi"]');
  await a.waitForFunction(() => document.getElementById('votes-sushi').textContent === '1', null, { timeout: 5000 });

  await b.click('#plus');
  await b.click('#plus');
  await a.waitForFunction(() => document.getElementById('counter').textContent === '2', null, { timeout: 5000 });

  await b.close();
  await a.waitForFunction(() => document.getElementById('count').textContent === '1', null, { timeout: 10000 });
  console.log('demo test: two pages saw each other\'s presence, chat, vote and counter: ok');
  await browser.close();
} catch (e) {
  await fail(e.message);
}
