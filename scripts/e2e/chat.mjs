#!/usr/bin/env node
// chat.mjs URL OUTDIR — drive the chat page /chat.html in headless Chromium (Playwright).
//
//   URL     the chat page, e.g. http://192.168.69.1/chat.html
//   OUTDIR  where chat.png goes
//
// Env: EXPECT_TEXTS  JSON array of [name, text] pairs that must be shown (as text) before
//                    the page posts anything, e.g. '[["ana","<script>alert(1)</script> hola"]]'
//      POST_NAME, POST_TEXT  what the page posts through its form (default dora / from the browser)
//      CHAT_BIN, CHAT_SERVER  the chat CLI and "IP PORT": when set, the CLI posts a message and
//                    the page must show it within 200 ms (it arrives on the event stream)
//      CHROMIUM (default /usr/bin/chromium), TOTAL_TIMEOUT_MS (default 60000)
//
// Checks: the page loads (200) and sets body.dataset.ready = "1" after its first poll; every
// expected message is a `.msg` whose `.name` and `.text` have exactly that textContent; no
// <script> element exists inside the message list (#log) and no dialog (alert/confirm/prompt)
// fired, so markup in a message stayed text; the form posts POST_NAME/POST_TEXT with the Send
// button and the message comes back; the page follows /chat/events (body.dataset.mode is
// "stream") and makes no polling request (GET /chat) while it does; a message posted by the
// CLI shows within 200 ms; no uncaught page errors and no HTTP errors. Writes OUTDIR/chat.png and a JSON summary on stdout.
// Exit status: 0 all good, 1 a check failed, 2 usage/launch error.
//
// Run it inside the test's network namespace (scripts/e2e.sh does).

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { args, envInt, pageFailures, run, watchPage } from './lib.mjs';

const [pageUrl, outDir] = args('node chat.mjs URL OUTDIR');
// This check follows the event stream: the page's WebSocket path has scripts/ws.sh.
const url = pageUrl + (pageUrl.includes('?') ? '&' : '?') + 'via=events';
const TOTAL_TIMEOUT_MS = envInt('TOTAL_TIMEOUT_MS', 60000);
const STEP_TIMEOUT_MS = 10000;
let expected = [];
try {
  expected = JSON.parse(process.env.EXPECT_TEXTS || '[]');
} catch (e) {
  console.error(`EXPECT_TEXTS is not JSON: ${e.message}`);
  process.exit(2);
}
const postName = process.env.POST_NAME || 'dora';
const postText = process.env.POST_TEXT || 'from the browser';

const summary = {
  url,
  ok: false,
  status: null,
  ready: false,
  shown: [],          // [name, text] of every .msg at the end
  scriptsInLog: null, // <script> elements inside #log
  dialogs: [],        // any alert/confirm/prompt: fail
  posted: null,       // the page's own post came back
  mode: null,         // body.dataset.mode: "stream" while the event stream is up
  pollRequests: 0,    // GET /chat requests the page made (polling)
  cliToPageMs: null,  // from the CLI's post returning to the message on the page
  statusLine: null,   // #status text after posting
  httpErrors: [],
  pageErrors: [],
  failedRequests: [],
  screenshot: null,
  failures: [],
  elapsedMs: 0,
};

const { launch, main } = run(summary, TOTAL_TIMEOUT_MS);
const browser = await launch();

// All .msg rows as [name, text] (textContent, so markup shows as the characters it is).
const readMessages = (page) =>
  page.$$eval('#log .msg', (els) =>
    els.map((el) => [
      el.querySelector('.name')?.textContent ?? null,
      el.querySelector('.text')?.textContent ?? null,
    ]),
  );
const has = (rows, [name, text]) => rows.some(([n, t]) => n === name && t === text);

await main(async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  watchPage(page, summary);
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (r.method() === 'GET' && u.pathname === '/chat') summary.pollRequests++;
  });

  const resp = await page.goto(url, { waitUntil: 'load' });
  summary.status = resp ? resp.status() : null;
  if (summary.status !== 200) summary.failures.push(`page status ${summary.status}, want 200`);

  await page.waitForSelector('body[data-ready="1"]', { timeout: STEP_TIMEOUT_MS });
  summary.ready = true;

  // The expected messages were posted before the page opened: the first poll brings them,
  // but allow a few more polls (1 s apart) in case one was still in flight.
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  let rows = await readMessages(page);
  while (!expected.every((e) => has(rows, e)) && Date.now() < deadline) {
    await page.waitForTimeout(200);
    rows = await readMessages(page);
  }
  for (const e of expected) {
    if (!has(rows, e)) summary.failures.push(`not shown as text: ${JSON.stringify(e)}`);
  }

  // Post through the form, like a person: name, message, Send.
  await page.fill('#name', postName);
  await page.fill('#text', postText);
  const posted = page.waitForResponse(
    (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/chat',
  );
  await page.click('#send');
  const postResp = await posted;
  if (postResp.status() !== 201) summary.failures.push(`page's POST /chat: ${postResp.status()}, want 201`);
  try {
    await page.waitForFunction(
      ([n, t]) =>
        Array.from(document.querySelectorAll('#log .msg')).some(
          (el) => el.querySelector('.name')?.textContent === n && el.querySelector('.text')?.textContent === t,
        ),
      [postName, postText],
      { timeout: STEP_TIMEOUT_MS },
    );
    summary.posted = true;
  } catch (e) {
    summary.posted = false;
    summary.failures.push(`the page's own message ${JSON.stringify([postName, postText])} did not come back`);
  }
  summary.mode = await page.evaluate(() => document.body.dataset.mode || null);
  if (summary.mode !== 'stream') summary.failures.push(`page mode ${summary.mode}, want stream`);
  if (process.env.CHAT_BIN && process.env.CHAT_SERVER) {
    const cliText = 'from the cli';
    const seen = page.waitForFunction(
      (t) => Array.from(document.querySelectorAll('#log .msg .text')).some((el) => el.textContent === t),
      cliText,
      { timeout: STEP_TIMEOUT_MS, polling: 'raf' },
    ).then(() => Date.now());
    execFileSync(process.env.CHAT_BIN, [...process.env.CHAT_SERVER.split(' '), '--name', 'eve'], {
      input: cliText + '\n',
      timeout: 20000,
    });
    const posted = Date.now();
    try {
      summary.cliToPageMs = (await seen) - posted;
      if (summary.cliToPageMs > 200) summary.failures.push(`CLI message shown after ${summary.cliToPageMs} ms, want <= 200`);
    } catch (e) {
      summary.failures.push('the CLI\'s message did not show');
    }
  }
  if (summary.pollRequests !== 0) summary.failures.push(`${summary.pollRequests} polling request(s) while the stream was up`);
  summary.statusLine = await page.textContent('#status');
  if ((await page.inputValue('#text')) !== '') summary.failures.push('message box not cleared after sending');

  summary.shown = await readMessages(page);
  summary.scriptsInLog = await page.$$eval('#log script', (els) => els.length);
  if (summary.scriptsInLog !== 0) summary.failures.push(`${summary.scriptsInLog} <script> element(s) inside #log`);
  // Give a dialog from injected markup a moment to fire before judging.
  await page.waitForTimeout(300);
  pageFailures(summary, ['dialogs', 'pageErrors', 'httpErrors', 'failedRequests']);

  const shot = join(outDir, 'chat.png');
  await page.screenshot({ path: shot, animations: 'disabled' });
  summary.screenshot = shot;
});
