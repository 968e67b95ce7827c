-- count.lua — wrk script for scripts/soak.sh: counts every response by status and checks the
-- body length, then prints one machine-readable line at the end:
--
--   wrk-result requests=N ok=N non2xx=N badlen=N connect=N read=N write=N timeout=N status=N
--
-- Usage: wrk ... -s scripts/soak/count.lua URL -- EXPECTED_BODY_BYTES
-- (non2xx counts every status outside 200-299, unlike wrk's own "Non-2xx or 3xx" line,
-- which counts only status > 399.)

local threads = {}
local expected = nil

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  expected = tonumber(args[1])
  ok, non2xx, badlen = 0, 0, 0
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif expected ~= nil and #body ~= expected then
    badlen = badlen + 1
  else
    ok = ok + 1
  end
end

function done(summary, latency, requests)
  local t_ok, t_non2xx, t_badlen = 0, 0, 0
  for _, thread in ipairs(threads) do
    t_ok = t_ok + thread:get("ok")
    t_non2xx = t_non2xx + thread:get("non2xx")
    t_badlen = t_badlen + thread:get("badlen")
  end
  local e = summary.errors
  io.write(string.format(
    "wrk-result requests=%d ok=%d non2xx=%d badlen=%d connect=%d read=%d write=%d timeout=%d status=%d p99_ms=%.1f\n",
    summary.requests, t_ok, t_non2xx, t_badlen, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(99) / 1000))
end
