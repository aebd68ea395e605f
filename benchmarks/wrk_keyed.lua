-- wrk script for benchmarks/serving.py: POST a JSON body whose "__KEY__" becomes a new routing
-- key on every request (a keyed canary then splits the load as real traffic would).
-- usage: wrk -t1 -c32 -d10s -s wrk_keyed.lua URL -- BODY_FILE
local body, counter = nil, 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local keyed = body:gsub("__KEY__", "k" .. counter)
  return wrk.format(nil, nil, nil, keyed)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {\"requests\": %d, \"duration_us\": %d, \"non2xx\": %d, \"connect\": %d, " ..
    "\"read\": %d, \"write\": %d, \"timeout\": %d, \"p50_us\": %d, \"p99_us\": %d, " ..
    "\"mean_us\": %.1f, \"max_us\": %d}\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
