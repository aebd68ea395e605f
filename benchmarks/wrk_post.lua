-- wrk script for benchmarks/serving.py: POST a JSON body, report one parseable line.
-- usage: wrk -t1 -c32 -d10s -s wrk_post.lua URL -- BODY_FILE
-- A body holding "__KEY__" gets a routing key of its own per request ("k1", "k2", ... cycling
-- through KEYS of them), so that a keyed canary splits the load as real traffic would. Every
-- request is built once in init: varying the key costs wrk no work per request, so a keyed
-- row and a fixed-body row load their servers alike (wrk shares the machine with them).
local KEYS = 10000
local requests, count, i = {}, 0, 0

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local at = body:find("__KEY__", 1, true)
  if at == nil then
    requests[1] = wrk.format(nil, nil, nil, body)
  else
    local head, tail = body:sub(1, at - 1), body:sub(at + #"__KEY__")
    for k = 1, KEYS do
      requests[k] = wrk.format(nil, nil, nil, head .. "k" .. k .. tail)
    end
  end
  count = #requests
end

function request()
  i = i % count + 1
  return requests[i]
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
