// lib.mjs — what browser.mjs, chat.mjs and seek.mjs share: their URL OUTDIR arguments, numbers
// from the environment, one bounded run that ends by printing its JSON summary, Debian's
// Chromium launched headless with the same flags, and a page's errors collected into the summary.

import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { chromium } from 'playwright-core';

// args(USAGE): [url, outDir, ...rest] from the command line; exits 2 with USAGE if URL or
// OUTDIR is missing. OUTDIR is made absolute and created.
export function args(usage) {
  const [url, outArg, ...rest] = process.argv.slice(2);
  if (!url || !outArg) {
    console.error(`usage: ${usage}`);
    process.exit(2);
  }
  const outDir = resolve(outArg);
  mkdirSync(outDir, { recursive: true });
  return [url, outDir, ...rest];
}

// envInt / envNum NAME DEFAULT: a positive integer / number from the environment, else DEFAULT.
export const envInt = (name, dflt) => {
  const v = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isFinite(v) && v > 0 ? v : dflt;
};
export const envNum = (name, dflt) => {
  const v = Number.parseFloat(process.env[name] ?? '');
  return Number.isFinite(v) && v > 0 ? v : dflt;
};

export const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const CHROMIUM_FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  '--no-proxy-server',
];

const firstLine = (e) => e.message.split('\n')[0];

// run(SUMMARY, TOTAL_MS): a run that ends, within TOTAL_MS whatever hangs (watchdog: exit 1),
// by printing SUMMARY (with ok and elapsedMs) as JSON on stdout, closing the browser (bounded)
// and exiting: 0 all good, 1 a check failed (SUMMARY.failures not empty), 2 launch error.
//   const r = run(summary, TOTAL_TIMEOUT_MS);
//   const browser = await r.launch({ autoplay: true });
//   await r.main(async () => { ...checks, pushing to summary.failures... });
export function run(summary, totalMs) {
  const started = Date.now();
  let browser;
  let finished = false;
  const watchdog = setTimeout(() => {
    summary.failures.push(`watchdog: run exceeded ${totalMs} ms`);
    finish(1);
  }, totalMs);

  async function finish(code) {
    if (finished) return;
    finished = true;
    clearTimeout(watchdog);
    summary.elapsedMs = Date.now() - started;
    if (code === 0 && summary.failures.length) code = 1;
    summary.ok = code === 0;
    console.log(JSON.stringify(summary, null, 2));
    if (browser) {
      // Bounded close: a wedged browser must not keep us alive.
      await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
    }
    process.exit(code);
  }

  // launch({ autoplay }): headless Chromium at CHROMIUM (default /usr/bin/chromium); autoplay
  // adds --autoplay-policy=no-user-gesture-required. A failure ends the run with status 2.
  async function launch({ autoplay = false } = {}) {
    try {
      browser = await chromium.launch({
        executablePath,
        headless: true,
        timeout: 30000,
        args: autoplay ? [...CHROMIUM_FLAGS, '--autoplay-policy=no-user-gesture-required'] : CHROMIUM_FLAGS,
      });
    } catch (e) {
      summary.failures.push(`launch ${executablePath}: ${firstLine(e)}`);
      await finish(2);
    }
    return browser;
  }

  // main(BODY): run BODY, then finish; an exception is a failure (`error: ...`).
  async function main(body) {
    try {
      await body();
      await finish(0);
    } catch (e) {
      summary.failures.push(`error: ${firstLine(e)}`);
      await finish(1);
    }
  }

  return { launch, main, finish };
}

// watchPage(PAGE, SUMMARY): collect what goes wrong on PAGE into those of SUMMARY's arrays
// that exist: responses (every response: 'STATUS METHOD URL (range R)'), httpErrors (status
// >= 400), failedRequests (network-level failures), pageErrors (uncaught exceptions),
// consoleErrors (console.error) and dialogs (alert/confirm/prompt, dismissed).
export function watchPage(page, summary) {
  if (summary.dialogs) {
    page.on('dialog', async (d) => {
      summary.dialogs.push(`${d.type()}: ${d.message()}`);
      await d.dismiss().catch(() => {});
    });
  }
  page.on('response', (r) => {
    const req = r.request();
    if (summary.responses) {
      const range = req.headers()['range'];
      summary.responses.push(`${r.status()} ${req.method()} ${r.url()}${range ? ` (range ${range})` : ''}`);
    }
    if (summary.httpErrors && r.status() >= 400) summary.httpErrors.push(`${r.status()} ${req.method()} ${r.url()}`);
  });
  if (summary.failedRequests) {
    page.on('requestfailed', (req) => {
      summary.failedRequests.push(`${req.method()} ${req.url()}: ${req.failure()?.errorText}`);
    });
  }
  if (summary.pageErrors) page.on('pageerror', (err) => summary.pageErrors.push(String(err)));
  if (summary.consoleErrors) {
    page.on('console', (msg) => {
      if (msg.type() === 'error') summary.consoleErrors.push(msg.text());
    });
  }
}

// pageFailures(SUMMARY, KINDS, { abortedOk }): turn what watchPage collected into failures,
// kind by kind in the order of KINDS ('dialogs', 'pageErrors', 'httpErrors', 'failedRequests').
// A missing /favicon.ico is not a failure; with abortedOk neither is a request that failed
// with net::ERR_ABORTED (a media element cancelling its own range request does that).
export function pageFailures(summary, kinds, { abortedOk = false } = {}) {
  const f = summary.failures;
  for (const kind of kinds) {
    for (const e of summary[kind]) {
      if (kind === 'dialogs') f.push(`dialog fired: ${e}`);
      else if (kind === 'pageErrors') f.push(`page error: ${e}`);
      else if (kind === 'httpErrors') { if (!/\/favicon\.ico$/.test(e)) f.push(`http error: ${e}`); }
      else if (kind === 'failedRequests') { if (!(abortedOk && /net::ERR_ABORTED$/.test(e))) f.push(`request failed: ${e}`); }
    }
  }
}
