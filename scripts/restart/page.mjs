#!/usr/bin/env node
// page.mjs URL OUTDIR LOG — keep the chat page open in headless Chromium (playwright-core, see
// ../e2e/lib.mjs) and write what it shows and does to LOG as JSON lines, for scripts/restart.sh.
//
//   URL     the chat page, e.g. http://192.168.69.1/chat.html
//   OUTDIR  where page.png goes; the run ends when OUTDIR/page.stop exists
//   LOG     JSON lines {"t": unix time (the page's clock), "ev": ...}:
//             loaded {status}             the page loaded
//             msg {id, name, text}        a `.msg` row added to the page (its `.name` and `.text`
//                                         textContent, read from the DOM as it is inserted)
//             note {text}                 a `.note` row ("(the server was restarted)", ...)
//             es-new {url} / es-open / es-error {rs} / es-close / es-ping
//                                         the page's EventSource objects: created, opened, an
//                                         error event (rs: readyState then, 0 = reconnecting by
//                                         itself, 2 = closed), close() called, a `ping` event
//             req {url} / reqfail {url, error}   requests for /chat/events
//             req-headers {url, lastEventId}   the headers one was sent with (t: its start)
//             pageerror {text} / console {type, text}
//             shown {rows}                at the end: every `.msg .text` in the DOM
//
// The page's own code is not changed: an init script wraps window.EventSource in a subclass
// that only adds listeners, and a MutationObserver reports rows as the page appends them.
//
// Env: TOTAL_TIMEOUT_MS (default 300000) bounds the run; CHROMIUM (default /usr/bin/chromium).
// Prints lib.mjs's JSON summary on stdout at the end; exit 0, 1 (page errors, watchdog), 2 launch.

import { appendFileSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { args, envInt, pageFailures, run, watchPage } from '../e2e/lib.mjs';

const [pageUrl, outDir, logArg] = args('node page.mjs URL OUTDIR LOG');
// This check follows the event stream: the page's WebSocket path has scripts/ws.sh.
const url = pageUrl + (pageUrl.includes('?') ? '&' : '?') + 'via=events';
if (!logArg) {
  console.error('usage: node page.mjs URL OUTDIR LOG');
  process.exit(2);
}
const logPath = resolve(logArg);
const TOTAL_TIMEOUT_MS = envInt('TOTAL_TIMEOUT_MS', 300000);
const stopFile = join(outDir, 'page.stop');
const log = (o) => appendFileSync(logPath, JSON.stringify({ t: Date.now() / 1000, ...o }) + '\n');

const summary = {
  url,
  ok: false,
  status: null,
  shown: [],
  httpErrors: [],
  pageErrors: [],
  failedRequests: [],
  failures: [],
  elapsedMs: 0,
};

// Runs in the page before its own script.
function instrument() {
  const rep = (o) => {
    try {
      window.__restartLog({ t: Date.now() / 1000, ...o });
    } catch (e) {
      /* binding not there: nothing to do */
    }
  };
  const ES = window.EventSource;
  if (ES) {
    window.EventSource = class extends ES {
      constructor(u, init) {
        super(u, init);
        rep({ ev: 'es-new', url: String(u) });
        this.addEventListener('open', () => rep({ ev: 'es-open', rs: this.readyState }));
        this.addEventListener('error', () => rep({ ev: 'es-error', rs: this.readyState }));
        this.addEventListener('ping', () => rep({ ev: 'es-ping' }));
      }
      close() {
        rep({ ev: 'es-close', rs: this.readyState });
        super.close();
      }
    };
  }
  new MutationObserver((muts) => {
    for (const m of muts) {
      for (const n of m.addedNodes) {
        if (n.nodeType !== 1 || !n.classList) continue;
        if (n.classList.contains('msg')) {
          rep({
            ev: 'msg',
            id: Number(n.dataset.id),
            name: n.querySelector('.name')?.textContent ?? null,
            text: n.querySelector('.text')?.textContent ?? null,
          });
        } else if (n.classList.contains('note')) {
          rep({ ev: 'note', text: n.textContent });
        }
      }
    }
  }).observe(document, { childList: true, subtree: true });
}

const { launch, main } = run(summary, TOTAL_TIMEOUT_MS);
const browser = await launch();

await main(async () => {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  watchPage(page, summary);
  await page.exposeFunction('__restartLog', (o) => appendFileSync(logPath, JSON.stringify(o) + '\n'));
  await page.addInitScript(instrument);
  const isStream = (r) => new URL(r.url()).pathname === '/chat/events';
  page.on('request', (r) => {
    if (!isStream(r)) return;
    const t = Date.now() / 1000;
    log({ ev: 'req', url: r.url() });
    // allHeaders(): the headers as sent (Last-Event-ID included), once the network has them
    // (a request that never got through has none: nothing is logged).
    r.allHeaders()
      .then((h) => appendFileSync(logPath, JSON.stringify({ t, ev: 'req-headers', url: r.url(), lastEventId: h['last-event-id'] ?? null }) + '\n'))
      .catch(() => {});
  });
  page.on('requestfailed', (r) => {
    if (isStream(r)) log({ ev: 'reqfail', url: r.url(), error: r.failure()?.errorText ?? null });
  });
  page.on('pageerror', (e) => log({ ev: 'pageerror', text: String(e) }));
  page.on('console', (m) => log({ ev: 'console', type: m.type(), text: m.text() }));

  const resp = await page.goto(url, { waitUntil: 'load' });
  summary.status = resp ? resp.status() : null;
  log({ ev: 'loaded', status: summary.status });
  if (summary.status !== 200) summary.failures.push(`page status ${summary.status}, want 200`);

  const deadline = Date.now() + TOTAL_TIMEOUT_MS - 15000;
  while (!existsSync(stopFile) && Date.now() < deadline) await page.waitForTimeout(200);

  summary.shown = await page.$$eval('#log .msg .text', (els) => els.map((el) => el.textContent));
  log({ ev: 'shown', rows: summary.shown });
  // Failed requests are expected here (the server goes away twice); page errors are not.
  pageFailures(summary, ['pageErrors']);
  await page.screenshot({ path: join(outDir, 'page.png') }).catch(() => {});
});
