#!/usr/bin/env bash
# e2e.sh — end-to-end test of the real smolhttpd binary on a real TAP device.
#
# Usage (as root; CI runs it):  sudo scripts/e2e.sh
#
# Everything happens inside a network namespace this script creates and deletes
# (smolhttpd-e2e-PID): the tap, the server and every client (curl, bash /dev/tcp, Chromium).
# No traffic leaves that namespace. Every wait and loop is bounded.
#
# Env:
#   SMOLHTTPD_BIN  server binary (default target/release/smolhttpd, built if missing)
#   E2E_OUT        artifacts: server log, screenshot, browser JSON (default target/e2e)
#   SERVER_ARGS    extra server flags, e.g. "--drop-chance 5" (word-split)
#   E2E_PCAP=1     also record the server's traffic to $E2E_OUT/server.pcap
#   MTU, HOST_CIDR passed to tap-up.sh
#   E2E_SKIP_BROWSER=1  skip the Chromium section; CHROMIUM  browser (default /usr/bin/chromium)
#   CURL_MAX_TIME  per-request curl limit in seconds (default 20; raise with --drop-chance)
#
# Output: one line per check, `ok   - what` or `FAIL - what` (with indented details),
# then `N passed, M failed`. Exit status 0 only if nothing failed.
#
# Adding a section: write check functions that print details and return non-zero on
# failure, then `section "name"` and `check "description" fn args...` before `finish`.
# shellcheck disable=SC2317,SC2016  # checks are called via check(); single-quoted code is for bash -c / node -e
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2

TAP=tap0
SERVER_IP=192.168.69.1
PORT=80
BASE="http://$SERVER_IP"
FS=fs_image
OUT=${E2E_OUT:-target/e2e}
NS=smolhttpd-e2e-$$
SERVER_PID=
TMPD=
PASS=0
FAIL=0

# Never route the test's HTTP through a proxy from the caller's environment.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY

say() { echo "e2e: $*"; }
die() { echo "e2e: $*" >&2; exit 2; }

# ------------------------------------------------------------------ helpers

# in_ns CMD...: run CMD inside the test namespace.
in_ns() { ip netns exec "$NS" "$@"; }

# ncurl ARGS...: curl inside the namespace, bounded, quiet but showing errors.
ncurl() { in_ns curl -sS --noproxy '*' --connect-timeout 5 --max-time "${CURL_MAX_TIME:-20}" "$@"; }

# raw_req TIMEOUT: send stdin as-is over a plain TCP connection to the server (bash
# /dev/tcp, no half-close) and print everything received until the server closes.
# Fails, saying so on stderr, if the server has not closed after TIMEOUT seconds.
raw_req() {
  local t=$1 rc
  in_ns timeout "$t" bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 111; cat >&3; cat <&3' \
    raw "$SERVER_IP" "$PORT"
  rc=$?
  case $rc in
    0) ;;
    124) echo "raw_req: connection still open after ${t}s (server did not close)" >&2 ;;
    111) echo "raw_req: could not connect to $SERVER_IP:$PORT" >&2 ;;
    *) echo "raw_req: exit status $rc" >&2 ;;
  esac
  return "$rc"
}

section() { echo; echo "# $*"; }

# check NAME CMD...: run CMD, count it, show its output (indented) if it fails
# (and only its "info: " lines if it passes).
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq 0 ]; then
    PASS=$((PASS + 1)); echo "ok   - $name"
    # A passing check may still leave a one-line note: lines starting with "info: ".
    printf '%s\n' "$out" | sed -n 's/^info: /       /p'
  else
    FAIL=$((FAIL + 1)); echo "FAIL - $name"
    [ -n "$out" ] && printf '%s\n' "$out" | head -n 20 | sed 's/^/       /'
  fi
  return 0
}

sha() { sha256sum "$1" | cut -d' ' -f1; }
fsize() { stat -c %s "$1"; }
# header NAME FILE: value of the first header NAME in a dumped head (no CR, trimmed).
header() {
  tr -d '\r' <"$2" | awk -v n="$(echo "$1" | tr '[:upper:]' '[:lower:]')" '
    { i = index($0, ":"); if (i && tolower(substr($0, 1, i - 1)) == n) {
        v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); print v; exit } }'
}
expected_type() {
  case $1 in
    *.html|*.htm) echo text/html ;;
    *.jpg|*.jpeg) echo image/jpeg ;;
    *.mp4) echo video/mp4 ;;
    *.pdf) echo application/pdf ;;
    *) echo "" ;;
  esac
}

# ------------------------------------------------------------------ checks

# GET URLPATH equals LOCALFILE: status 200, same bytes, content-type if known.
t_get_file() {
  local path=$1 file=$2 body="$TMPD/body" hdr="$TMPD/hdr" w code ctype want
  rm -f "$body" "$hdr"
  w=$(ncurl -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  code=$w
  if [ "$code" != 200 ]; then echo "status $code, want 200"; head -n 5 "$hdr"; return 1; fi
  if [ "$(sha "$body")" != "$(sha "$file")" ]; then
    echo "body differs from $file: got $(fsize "$body") bytes sha256 $(sha "$body"), want $(fsize "$file") bytes $(sha "$file")"
    return 1
  fi
  ctype=$(header content-type "$hdr"); want=$(expected_type "$file")
  if [ -n "$want" ] && [ "${ctype%%;*}" != "$want" ]; then
    echo "Content-Type '$ctype', want $want"; return 1
  fi
  return 0
}

t_head() {
  local path=$1 file=$2 hdr="$TMPD/hdr" body="$TMPD/body" code cl
  rm -f "$hdr" "$body"
  code=$(ncurl -I -o "$body" -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code, want 200"; cat "$hdr"; return 1; }
  cl=$(header content-length "$hdr")
  [ "$cl" = "$(fsize "$file")" ] || { echo "Content-Length '$cl', want $(fsize "$file")"; cat "$hdr"; return 1; }
}

# HEAD over a raw socket: the server must send the head and nothing after it.
t_head_no_body() {
  local path=$1 resp="$TMPD/raw" total headlen
  printf 'HEAD %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$SERVER_IP" | raw_req 5 >"$resp" || return 1
  total=$(fsize "$resp")
  [ "$total" -gt 0 ] || { echo "no response"; return 1; }
  head -n 1 "$resp" | grep -q '^HTTP/1\.[01] 200 ' || { echo "status line: $(head -n 1 "$resp")"; return 1; }
  headlen=$(sed -n '1,/^\r$/p' "$resp" | wc -c)
  [ "$total" -eq "$headlen" ] || { echo "$((total - headlen)) bytes after the head (head $headlen bytes)"; return 1; }
}

t_status() {
  local want=$1 hdr="$TMPD/hdr" code
  shift
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' "$@") || { echo "curl failed"; return 1; }
  [ "$code" = "$want" ] || { echo "status $code, want $want"; head -n 10 "$hdr"; return 1; }
}

t_404_body() {
  local body="$TMPD/body" code
  code=$(ncurl -o "$body" -w '%{http_code}' "$BASE/no/such/file") || { echo "curl failed"; return 1; }
  [ "$code" = 404 ] || { echo "status $code"; return 1; }
  cmp -s "$body" "$FS/404.html" || { echo "body is not $FS/404.html ($(fsize "$body") bytes):"; head -c 300 "$body"; return 1; }
}

t_405() {
  local hdr="$TMPD/hdr" code allow
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' -X POST --data x "$BASE/index.html") || { echo "curl failed"; return 1; }
  [ "$code" = 405 ] || { echo "status $code, want 405"; cat "$hdr"; return 1; }
  allow=$(header allow "$hdr")
  [ "$(echo "$allow" | tr -d ' ')" = "GET,HEAD" ] || { echo "Allow: '$allow', want 'GET, HEAD'"; cat "$hdr"; return 1; }
}

t_http09() {
  local path=$1 file=$2 resp="$TMPD/raw"
  printf 'GET %s\r\n' "$path" | raw_req 5 >"$resp" || { echo "received $(fsize "$resp") bytes"; return 1; }
  if ! cmp -s "$resp" "$file"; then
    echo "got $(fsize "$resp") bytes, want exactly the $(fsize "$file") bytes of $file; first bytes:"
    head -c 200 "$resp" | cat -v; echo
    return 1
  fi
}

t_redirect() {
  local path=$1 want=$2 hdr="$TMPD/hdr" code loc
  rm -f "$hdr"
  code=$(ncurl -o /dev/null -D "$hdr" -w '%{http_code}' "$BASE$path") || { echo "curl failed"; return 1; }
  [ "$code" = 301 ] || { echo "status $code, want 301"; cat "$hdr"; return 1; }
  loc=$(header location "$hdr")
  case $loc in
    "$want"|"$BASE$want") ;;
    *) echo "Location '$loc', want '$want'"; return 1 ;;
  esac
}

t_http10() {
  local body="$TMPD/body" hdr="$TMPD/hdr" code
  code=$(ncurl --http1.0 -o "$body" -D "$hdr" -w '%{http_code}' "$BASE/") || { echo "curl failed"; return 1; }
  [ "$code" = 200 ] || { echo "status $code"; cat "$hdr"; return 1; }
  cmp -s "$body" "$FS/index.html" || { echo "body is not $FS/index.html"; return 1; }
}

t_logged() {
  local pat=$1
  grep -qF -- "$pat" "$LOG" || { echo "no line mentioning '$pat' in $LOG"; tail -n 5 "$LOG"; return 1; }
}

t_browser() {
  local rc
  in_ns env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 150 \
    node scripts/e2e/browser.mjs "$BASE/" "$OUT" >"$OUT/browser.json" 2>"$OUT/browser.err"
  rc=$?
  node -e '
    const fs = require("fs");
    let s; try { s = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { console.log("no JSON summary"); process.exit(0); }
    const i = s.images || [], v = s.videos || [];
    console.log(`info: status ${s.status}; images decoded ${i.filter(x => x.ok).length}/${i.length}; ` +
      `videos ready ${v.filter(x => x.ok).length}/${v.length} (readyState ${v.map(x => x.readyState).join(",")}); ${s.elapsedMs} ms`);
    for (const f of s.failures || []) console.log("failure: " + f);
  ' "$OUT/browser.json"
  if [ "$rc" -ne 0 ]; then
    echo "browser.mjs exit $rc (see $OUT/browser.json, $OUT/browser.err)"
    tail -n 5 "$OUT/browser.err"
    return 1
  fi
}

# ------------------------------------------------------------------ setup / teardown

cleanup() {
  local rc=$? pids
  set +e
  trap - EXIT INT TERM
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
      say "server $SERVER_PID ignored SIGTERM for 5 s, sending SIGKILL"
      kill -9 "$SERVER_PID" 2>/dev/null
    fi
    wait "$SERVER_PID" 2>/dev/null
  fi
  if ip netns list 2>/dev/null | grep -qw "^$NS"; then
    # Anything still running in our namespace was started by this script (e.g. a
    # browser left behind by a timed-out node): stop it by PID.
    pids=$(ip netns pids "$NS" 2>/dev/null)
    if [ -n "$pids" ]; then
      # shellcheck disable=SC2086  # one PID per word
      kill $pids 2>/dev/null; sleep 0.5
      pids=$(ip netns pids "$NS" 2>/dev/null)
      # shellcheck disable=SC2086
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    fi
    ip netns del "$NS" 2>/dev/null || say "could not delete namespace $NS"
  fi
  [ -n "$TMPD" ] && rm -rf "$TMPD"
  exit "$rc"
}

finish() {
  echo
  echo "$PASS passed, $FAIL failed"
  if [ "$FAIL" -gt 0 ]; then
    echo "--- last 20 lines of $LOG"
    tail -n 20 "$LOG"
    exit 1
  fi
  exit 0
}

[ "$(id -u)" -eq 0 ] || die "needs root (network namespace + tap): run with sudo"

need() { # need CMD APT-PACKAGE
  command -v "$1" >/dev/null 2>&1 || die "'$1' not found: apt-get install $2"
}
need ip iproute2
need curl curl
need sha256sum coreutils
need timeout coreutils
need cmp diffutils
need awk gawk
if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  need node nodejs
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "node $(node --version) is too old for playwright-core (needs >= 18)"
  [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || die "${CHROMIUM:-/usr/bin/chromium} not found: apt-get install chromium"
  if [ ! -f scripts/e2e/node_modules/playwright-core/package.json ]; then
    need npm npm
    say "installing playwright-core into scripts/e2e/node_modules (no browser download)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 300 npm install --no-audit --no-fund --no-package-lock \
      --loglevel=error --prefix scripts/e2e >/dev/null || die "npm install of playwright-core failed"
  fi
fi

BIN=${SMOLHTTPD_BIN:-target/release/smolhttpd}
if [ ! -x "$BIN" ]; then
  [ -z "${SMOLHTTPD_BIN:-}" ] || die "SMOLHTTPD_BIN=$BIN is not an executable file"
  need cargo "rustup (https://rustup.rs) or cargo"
  say "building $BIN"
  cargo build --release --bin smolhttpd || die "cargo build failed"
elif [ -z "${SMOLHTTPD_BIN:-}" ] && [ -n "$(find src build.rs Cargo.toml fs_image -newer "$BIN" -print -quit 2>/dev/null)" ]; then
  say "note: $BIN is older than the sources (testing it as is; rebuild with cargo build --release)"
fi
BIN=$(realpath "$BIN")

mkdir -p "$OUT"
OUT=$(realpath "$OUT")
LOG=$OUT/server.log
TMPD=$(mktemp -d)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip netns add "$NS" || die "ip netns add $NS failed"
ip -n "$NS" link set lo up
in_ns scripts/tap-up.sh "$TAP" || die "tap-up.sh failed"

# shellcheck disable=SC2206
EXTRA=(${SERVER_ARGS:-})
[ "${E2E_PCAP:-0}" = 1 ] && EXTRA+=(--pcap "$OUT/server.pcap")
say "server: $BIN --tap $TAP${EXTRA[*]:+ ${EXTRA[*]}} (namespace $NS, log $LOG)"
# `ip netns exec` execs the command, so $! is the server's own PID.
RUST_LOG=${RUST_LOG:-info} ip netns exec "$NS" "$BIN" --tap "$TAP" "${EXTRA[@]}" >"$LOG" 2>&1 &
SERVER_PID=$!

ready=0
for _ in $(seq 1 50); do   # up to ~10 s
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID"; rc=$?; SERVER_PID=
    echo "e2e: server exited early (status $rc); log:" >&2; tail -n 20 "$LOG" >&2; exit 1
  fi
  if in_ns curl -s --noproxy '*' -o /dev/null --connect-timeout 1 --max-time 2 "$BASE/"; then ready=1; break; fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "e2e: server not answering $BASE/ after 10 s; log:" >&2; tail -n 20 "$LOG" >&2; exit 1
fi
say "server up (pid $SERVER_PID)"

# ------------------------------------------------------------------ static files

section "static files"
while IFS= read -r -d '' f; do
  rel=${f#"$FS"}
  check "GET $rel: 200, same $(fsize "$f") bytes as $f" t_get_file "$rel" "$f"
done < <(find "$FS" -type f -print0 | sort -z)
check "GET / serves $FS/index.html" t_get_file / "$FS/index.html"
check "GET /text/ serves $FS/text/index.html" t_get_file /text/ "$FS/text/index.html"
check "HEAD /img/car.jpeg: 200, Content-Length $(fsize "$FS/img/car.jpeg")" t_head /img/car.jpeg "$FS/img/car.jpeg"
check "HEAD /img/car.jpeg sends no body (raw socket)" t_head_no_body /img/car.jpeg
check "GET /no/such/file: 404" t_status 404 "$BASE/no/such/file"
check "404 body is $FS/404.html" t_404_body
check "POST /index.html: 405 with Allow: GET, HEAD" t_405
check "HTTP/0.9 GET /text/text.htm: exactly the file's bytes, no status line" t_http09 /text/text.htm "$FS/text/text.htm"
check "GET /img: 301 to /img/" t_redirect /img /img/
check "GET / with --http1.0: 200, index.html" t_http10
check "server logged the requests (one line mentions /no/such/file)" t_logged /no/such/file

# ------------------------------------------------------------------ browser

if [ "${E2E_SKIP_BROWSER:-0}" != 1 ]; then
  section "browser (headless Chromium via playwright-core)"
  check "home page: every <img> decoded, every <video> readyState >= 2, screenshot $OUT/home.png" t_browser
fi

finish
