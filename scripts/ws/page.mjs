#!/usr/bin/env node
// page.mjs URL OUTDIR — the chat page over WebSocket in headless Chromium (Playwright): Chromium's
// own WebSocket, not one written here.
//
// Checks: the page opens /chat/ws (body.dataset.mode "ws") and makes no /chat/events or polling
// (GET /chat) request; the form's post goes out as a WebSocket text frame {"name","text"} (no
// POST /chat) and comes back as a message with its id; a text over 256 bytes is refused by the
// server with a JSON error message and the page says "Message too long" (the text stays in the
// field); a message posted by someone else (a form POST from this script) is shown within
// 500 ms; no page errors. Writes OUTDIR/ws-page.png and a JSON summary on stdout.
// Exit status: 0 all good, 1 a check failed, 2 usage/launch error.
// Env: CHROMIUM (default /usr/bin/chromium), TOTAL_TIMEOUT_MS (default 60000)
//
// Run it inside the test's network namespace (scripts/ws.sh does).

import { join } from 'node:path';
import { args, envInt, run, watchPage } from '../e2e/lib.mjs';

const [url, outDir] = args('node page.mjs URL OUTDIR');
const TOTAL_TIMEOUT_MS = envInt('TOTAL_TIMEOUT_MS', 60000);
const STEP_TIMEOUT_MS = 10000;

const summary = {
  url,
  ok: false,
  mode: null,
  sockets: [],        // WebSocket URLs the page opened
  framesSent: [],     // text frames the page sent
  framesReceived: 0,
  streamRequests: 0,  // GET /chat/events
  pollRequests: 0,    // GET /chat
  formPosts: 0,       // POST /chat
  posted: null,
  tooLong: null,
  otherToPageMs: null,
  httpErrors: [],
  pageErrors: [],
  failures: [],
  elapsedMs: 0,
};

const { launch, main } = run(summary, TOTAL_TIMEOUT_MS);
const browser = await launch();
const shown = (page, name, text) =>
  page.waitForFunction(
    ([n, t]) =>
      Array.from(document.querySelectorAll('#log .msg')).some(
        (el) => el.querySelector('.name')?.textContent === n && el.querySelector('.text')?.textContent === t,
      ),
    [name, text],
    { timeout: STEP_TIMEOUT_MS, polling: 'raf' },
  );

await main(async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  watchPage(page, summary);
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname === '/chat/events') summary.streamRequests++;
    if (r.method() === 'GET' && u.pathname === '/chat') summary.pollRequests++;
    if (r.method() === 'POST' && u.pathname === '/chat') summary.formPosts++;
  });
  page.on('websocket', (ws) => {
    summary.sockets.push(ws.url());
    ws.on('framesent', (f) => summary.framesSent.push(String(f.payload)));
    ws.on('framereceived', () => summary.framesReceived++);
  });

  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector('body[data-mode="ws"]', { timeout: STEP_TIMEOUT_MS });
  summary.mode = 'ws';

  // The form, like a person: the post goes over the socket and comes back with an id.
  await page.fill('#name', 'wsdora');
  await page.fill('#text', 'over the socket ñ <b>');
  await page.click('#send');
  try {
    await shown(page, 'wsdora', 'over the socket ñ <b>');
    summary.posted = true;
  } catch (e) {
    summary.posted = false;
    summary.failures.push('the page\'s own post did not come back');
  }
  const sent = summary.framesSent.map((p) => { try { return JSON.parse(p); } catch { return null; } });
  if (!sent.some((m) => m && m.name === 'wsdora' && m.text === 'over the socket ñ <b>')) {
    summary.failures.push(`no {"name","text"} frame sent: ${JSON.stringify(summary.framesSent)}`);
  }
  if (await page.inputValue('#text') !== '') summary.failures.push('the field was not cleared after the post came back');

  // Too long: the server's JSON error, the page's words, the text kept.
  const long = 'x'.repeat(300);
  await page.fill('#text', long);
  await page.click('#send');
  try {
    await page.waitForFunction(() => document.getElementById('status').textContent.includes('too long'), null, { timeout: STEP_TIMEOUT_MS });
    summary.tooLong = await page.textContent('#status');
  } catch (e) {
    summary.failures.push(`no "too long" status: ${await page.textContent('#status')}`);
  }
  if (await page.inputValue('#text') !== long) summary.failures.push('a refused text was cleared');

  // Someone else posts with the form: shown on the socket within 500 ms.
  const base = new URL(url);
  const t0 = Date.now();
  const r = await fetch(new URL('/chat', base), {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ name: 'other', text: 'from a form' }),
  });
  if (r.status !== 201) summary.failures.push(`form POST: ${r.status}`);
  await shown(page, 'other', 'from a form');
  summary.otherToPageMs = Date.now() - t0;
  if (summary.otherToPageMs > 500) summary.failures.push(`form post shown after ${summary.otherToPageMs} ms (> 500)`);

  if (summary.sockets.length !== 1 || !summary.sockets[0].includes('/chat/ws')) {
    summary.failures.push(`sockets opened: ${JSON.stringify(summary.sockets)}`);
  }
  if (summary.streamRequests || summary.pollRequests || summary.formPosts) {
    summary.failures.push(`HTTP fallbacks used: ${summary.streamRequests} stream, ${summary.pollRequests} poll, ${summary.formPosts} form posts`);
  }
  if (summary.pageErrors.length) summary.failures.push(`page errors: ${summary.pageErrors.join('; ')}`);
  if (summary.httpErrors.length) summary.failures.push(`HTTP errors: ${summary.httpErrors.join('; ')}`);
  await page.screenshot({ path: join(outDir, 'ws-page.png') });
});
