#!/usr/bin/env node
// browser.mjs URL OUTDIR — load a page in headless Chromium (Playwright) and check it.
//
// Checks: the page loads with status 200; every <img> is decoded (naturalWidth > 0);
// every <video> reaches readyState >= 2 (HAVE_CURRENT_DATA) within VIDEO_TIMEOUT_MS
// (muted; preload upgraded and load() called if it stalls at metadata); no uncaught
// page errors, no 4xx/5xx responses (favicon.ico aside), no failed requests other
// than media's own aborts. Writes a full-page screenshot to OUTDIR/home.png and prints a JSON
// summary on stdout. Exit status: 0 all good, 1 a check failed, 2 usage/launch error.
//
// Run it inside the test's network namespace (scripts/e2e.sh does):
//   ip netns exec NS node scripts/e2e/browser.mjs http://192.168.69.1/ target/e2e
//
// Env: CHROMIUM (default /usr/bin/chromium), VIDEO_TIMEOUT_MS (default 20000),
//      NAV_TIMEOUT_MS (default 20000), TOTAL_TIMEOUT_MS (default 90000).

import { join } from 'node:path';
import { args, envInt, pageFailures, run, watchPage } from './lib.mjs';

const [url, outDir] = args('node browser.mjs URL OUTDIR');
const VIDEO_TIMEOUT_MS = envInt('VIDEO_TIMEOUT_MS', 20000);
const NAV_TIMEOUT_MS = envInt('NAV_TIMEOUT_MS', 20000);
const TOTAL_TIMEOUT_MS = envInt('TOTAL_TIMEOUT_MS', 90000);

const summary = {
  url,
  ok: false,
  status: null,
  title: null,
  images: [],
  videos: [],
  responses: [],       // every response: 'STATUS METHOD URL (range R)'
  httpErrors: [],      // responses >= 400 (favicon.ico excluded from failure)
  failedRequests: [],  // network-level failures: fail, except net::ERR_ABORTED (media does that)
  pageErrors: [],      // uncaught exceptions: fail
  consoleErrors: [],   // informative
  screenshot: null,
  failures: [],
  elapsedMs: 0,
};

// Hard upper bound on the whole run, whatever hangs.
const { launch, main } = run(summary, TOTAL_TIMEOUT_MS);
const browser = await launch({ autoplay: true });

await main(async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(NAV_TIMEOUT_MS);

  watchPage(page, summary);

  const resp = await page.goto(url, { waitUntil: 'load', timeout: NAV_TIMEOUT_MS });
  summary.status = resp ? resp.status() : null;
  summary.title = await page.title();
  if (summary.status !== 200) summary.failures.push(`page status ${summary.status}, want 200`);

  // Images: 'load' already waited for them; decode() confirms the bytes are a valid image.
  summary.images = await page.evaluate(async () => {
    const out = [];
    for (const img of Array.from(document.images)) {
      let decodeError = null;
      try { await img.decode(); } catch (e) { decodeError = String(e); }
      const src = img.currentSrc || img.src;
      const timing = performance.getEntriesByName(src)[0];
      out.push({
        src,
        bytes: timing ? timing.decodedBodySize : null,
        complete: img.complete,
        naturalWidth: img.naturalWidth,
        naturalHeight: img.naturalHeight,
        decodeError,
        ok: img.complete && img.naturalWidth > 0 && !decodeError,
      });
    }
    return out;
  });
  if (summary.images.length === 0) summary.failures.push('no <img> on the page');
  for (const i of summary.images) if (!i.ok) summary.failures.push(`image not decoded: ${i.src}`);

  // Videos: wait (bounded) for readyState >= 2. preload="metadata" may legitimately stop
  // at HAVE_METADATA, so stalled ones get preload=auto + load(), then a muted play().
  summary.videos = await page.evaluate(async (timeoutMs) => {
    const deadline = performance.now() + timeoutMs;
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const vids = Array.from(document.querySelectorAll('video'));
    const nudged = new Map();
    for (const v of vids) { v.muted = true; nudged.set(v, []); }
    const firstNudge = performance.now() + Math.min(3000, timeoutMs / 4);
    const secondNudge = performance.now() + Math.min(8000, timeoutMs / 2);
    while (performance.now() < deadline) {
      const pending = vids.filter((v) => v.readyState < 2);
      if (pending.length === 0) break;
      const now = performance.now();
      for (const v of pending) {
        const steps = nudged.get(v);
        if (now >= firstNudge && !steps.includes('load')) {
          v.preload = 'auto';
          v.load();
          steps.push('load');
        } else if (now >= secondNudge && !steps.includes('play')) {
          steps.push('play');
          v.play().then(() => v.pause()).catch(() => {});
        }
      }
      await sleep(100);
    }
    return vids.map((v) => ({
      src: v.currentSrc || (v.querySelector('source') || {}).src || v.src,
      readyState: v.readyState,
      networkState: v.networkState,
      videoWidth: v.videoWidth,
      videoHeight: v.videoHeight,
      duration: Number.isFinite(v.duration) ? v.duration : null,
      error: v.error ? { code: v.error.code, message: v.error.message } : null,
      nudges: nudged.get(v),
      ok: v.readyState >= 2 && !v.error,
    }));
  }, VIDEO_TIMEOUT_MS);
  for (const v of summary.videos) {
    if (!v.ok) {
      summary.failures.push(
        `video not ready: ${v.src} readyState=${v.readyState}` +
          (v.error ? ` error=${v.error.code} ${v.error.message}` : ''),
      );
    }
  }

  // A media element cancelling its own range request (net::ERR_ABORTED) is normal;
  // any other network failure (reset, truncated body, length mismatch) is not.
  pageFailures(summary, ['pageErrors', 'failedRequests', 'httpErrors'], { abortedOk: true });

  // Rewind videos so the screenshot shows their first frame, then capture.
  // (Only seek if a nudge played it: a seek shows a spinner until 'seeked'.)
  await page.evaluate(() => Promise.all(Array.from(document.querySelectorAll('video')).map((v) => {
    v.pause();
    if (v.readyState < 1 || v.currentTime === 0) return null;
    return new Promise((res) => {
      v.addEventListener('seeked', res, { once: true });
      setTimeout(res, 3000);
      v.currentTime = 0;
    });
  })));
  await page.waitForTimeout(1000);
  const shot = join(outDir, 'home.png');
  await page.screenshot({ path: shot, fullPage: true, animations: 'disabled', timeout: NAV_TIMEOUT_MS });
  summary.screenshot = shot;
});
