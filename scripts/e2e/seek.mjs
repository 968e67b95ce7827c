#!/usr/bin/env node
// seek.mjs URL OUTDIR [VIDEO_PATH] — seek a <video> of the page at URL in headless Chromium.
//
//   URL         the home page, e.g. http://192.168.69.1/
//   OUTDIR      where seek.png goes
//   VIDEO_PATH  which <video> (by its source's path), default /video/Planeta.mp4
//
// Env: SEEK_TO (seconds, default 5), SEEK_TIMEOUT_MS (default 15000),
//      THROTTLE_KBPS (Chromium's own download throttle, default 256; 0 = off),
//      CHROMIUM (default /usr/bin/chromium), TOTAL_TIMEOUT_MS (default 60000)
//
// Checks: the page loads (200); the video reaches HAVE_METADATA; after `currentTime = SEEK_TO`
// the element fires `seeked` and reaches readyState >= 2 (HAVE_CURRENT_DATA) within
// SEEK_TIMEOUT_MS, with no media error; and Chromium asked the server for the video with a
// `Range: bytes=N-` header where N > 0 (so the seek was served by a byte range, not by
// reading the file from the start). Every request for the video is listed with its Range
// header, response status and Content-Range. Chromium throttles its own downloads (DevTools
// network emulation) so the file is not already buffered past SEEK_TO when the seek happens;
// without that, whether a seek needs a new range depends on how far preload got.
// Writes OUTDIR/seek.png and a JSON summary on stdout.
// Exit status: 0 all good, 1 a check failed, 2 usage/launch error.
//
// Run it inside the test's network namespace (scripts/e2e.sh does).

import { join } from 'node:path';
import { args, envNum, run } from './lib.mjs';

const [url, outDir, videoArg] = args('node seek.mjs URL OUTDIR [VIDEO_PATH]');
const videoPath = videoArg || '/video/Planeta.mp4';

const SEEK_TO = envNum('SEEK_TO', 5);
const SEEK_TIMEOUT_MS = envNum('SEEK_TIMEOUT_MS', 15000);
const TOTAL_TIMEOUT_MS = envNum('TOTAL_TIMEOUT_MS', 60000);
const THROTTLE_KBPS = Number.parseInt(process.env.THROTTLE_KBPS ?? '256', 10) || 0;

const summary = {
  url,
  video: videoPath,
  ok: false,
  status: null,
  seekTo: SEEK_TO,
  before: null,   // element state before the seek
  after: null,    // element state after seeked (or the timeout)
  seekMs: null,   // from setting currentTime to seeked with readyState >= 2
  requests: [],   // every request for the video: { range, status, contentRange, failure }
  rangeStart: null, // the largest N of a `bytes=N-` request
  failures: [],
  elapsedMs: 0,
};

const { launch, main } = run(summary, TOTAL_TIMEOUT_MS);
const browser = await launch({ autoplay: true });

await main(async () => {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(SEEK_TIMEOUT_MS);
  const isVideo = (u) => {
    try { return new URL(u).pathname === videoPath; } catch { return false; }
  };
  const entries = new Map(); // request -> entry
  page.on('request', (req) => {
    if (!isVideo(req.url())) return;
    const e = { range: req.headers()['range'] ?? null, status: null, contentRange: null, failure: null };
    entries.set(req, e);
    summary.requests.push(e);
  });
  page.on('response', (r) => {
    const e = entries.get(r.request());
    if (e) {
      e.status = r.status();
      e.contentRange = r.headers()['content-range'] ?? null;
    }
  });
  page.on('requestfailed', (req) => {
    const e = entries.get(req);
    // Media elements cancel their own range requests (net::ERR_ABORTED) once they have
    // buffered enough: that is normal, other failures are not.
    if (e) e.failure = req.failure()?.errorText ?? 'failed';
  });

  // Throttle the download (DevTools network emulation, applied by Chromium itself: the
  // server still sees a normal client) so the video is not buffered past SEEK_TO before the
  // seek: then the seek must fetch a byte range from the middle of the file.
  if (THROTTLE_KBPS > 0) {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false,
      latency: 0,
      downloadThroughput: THROTTLE_KBPS * 1024,
      uploadThroughput: -1,
    });
  }

  const resp = await page.goto(url, { waitUntil: 'load' });
  summary.status = resp ? resp.status() : null;
  if (summary.status !== 200) summary.failures.push(`page status ${summary.status}, want 200`);

  const result = await page.evaluate(
    async ({ videoPath, seekTo, timeoutMs }) => {
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const state = (v) => ({
        currentTime: v.currentTime,
        duration: Number.isFinite(v.duration) ? v.duration : null,
        readyState: v.readyState,
        networkState: v.networkState,
        buffered: Array.from({ length: v.buffered.length }, (_, i) => [v.buffered.start(i), v.buffered.end(i)]),
        error: v.error ? `${v.error.code} ${v.error.message}` : null,
      });
      const v = Array.from(document.querySelectorAll('video')).find((el) => {
        const src = el.currentSrc || el.querySelector('source')?.src || el.src;
        try { return new URL(src, location.href).pathname === videoPath; } catch { return false; }
      });
      if (!v) return { error: `no <video> with source ${videoPath} on the page` };
      v.muted = true;
      v.scrollIntoView();
      // Metadata first (preload="metadata" gets that far on its own).
      const metaDeadline = performance.now() + timeoutMs;
      while (v.readyState < 1 && !v.error && performance.now() < metaDeadline) await sleep(50);
      const before = state(v);
      if (v.readyState < 1) return { error: `no metadata within ${timeoutMs} ms`, before };
      const t0 = performance.now();
      const seeked = new Promise((res) => v.addEventListener('seeked', () => res(true), { once: true }));
      v.currentTime = seekTo;
      const gotSeeked = await Promise.race([seeked, sleep(timeoutMs).then(() => false)]);
      while (gotSeeked && v.readyState < 2 && !v.error && performance.now() - t0 < timeoutMs) await sleep(20);
      const ms = Math.round(performance.now() - t0);
      return { before, after: state(v), gotSeeked, ms };
    },
    { videoPath, seekTo: SEEK_TO, timeoutMs: SEEK_TIMEOUT_MS },
  );
  summary.before = result.before ?? null;
  summary.after = result.after ?? null;
  if (result.error) {
    summary.failures.push(result.error);
  } else {
    summary.seekMs = result.ms;
    const a = result.after;
    if (!result.gotSeeked) summary.failures.push(`no 'seeked' event within ${SEEK_TIMEOUT_MS} ms`);
    else if (a.readyState < 2) summary.failures.push(`readyState ${a.readyState} after seeking, want >= 2`);
    if (a.error) summary.failures.push(`media error: ${a.error}`);
    if (Math.abs(a.currentTime - SEEK_TO) > 0.5) summary.failures.push(`currentTime ${a.currentTime}, want ${SEEK_TO}`);
  }

  // The seek's byte range may come just after 'seeked' (Chromium resumes a deferred load
  // to buffer ahead of the new position): wait for it, bounded, then let its response land.
  const rangeSeen = () => summary.requests.some((e) => /^bytes=[1-9]\d*-$/.test(e.range ?? ''));
  for (let i = 0; i < 50 && !rangeSeen(); i++) await page.waitForTimeout(100);
  await page.waitForTimeout(200);
  for (const e of summary.requests) {
    const m = /^bytes=(\d+)-$/.exec(e.range ?? '');
    if (m && Number(m[1]) > 0) summary.rangeStart = Math.max(summary.rangeStart ?? 0, Number(m[1]));
    if (m && e.status === 206 && !(e.contentRange ?? '').startsWith(`bytes ${m[1]}-`)) {
      summary.failures.push(`range ${e.range} answered with Content-Range ${e.contentRange}`);
    }
    if (e.status !== null && e.status >= 400) {
      summary.failures.push(`video request (range ${e.range}) answered ${e.status}`);
    }
    if (e.failure && e.failure !== 'net::ERR_ABORTED') {
      summary.failures.push(`video request (range ${e.range}) failed: ${e.failure}`);
    }
  }
  if (summary.rangeStart === null) {
    summary.failures.push(`no request for ${videoPath} with Range: bytes=N- (N > 0); ranges seen: ` +
      JSON.stringify(summary.requests.map((e) => e.range)));
  }

  const shot = join(outDir, 'seek.png');
  await page.screenshot({ path: shot, animations: 'disabled' });
});
