-- wrk script for bench/segment_load.sh: POST the tile in $SEGMENT_TILE to /segment as
-- multipart/form-data, count statuses, and print one machine-readable line at the end.
local threads = {}
function setup(thread) table.insert(threads, thread) end
local f = assert(io.open(os.getenv("SEGMENT_TILE"), "rb"))
local png = f:read("*a")
f:close()
local b = "marssegbenchboundary5d1f0c"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. b
wrk.body = "--" .. b .. '\r\nContent-Disposition: form-data; name="img"; filename="tile.png"\r\n'
  .. "Content-Type: image/png\r\n\r\n" .. png .. "\r\n--" .. b .. "--\r\n"
function init(args) ok = 0; busy = 0; other = 0 end
function response(status, headers, body)
  if status == 200 then ok = ok + 1
  elseif status == 503 and (headers["Retry-After"] or headers["retry-after"]) then busy = busy + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, bz, o = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("ok"); bz = bz + t:get("busy"); o = o + t:get("other") end
  local e = summary.errors
  io.write(string.format("STATS requests=%d seconds=%.1f ok=%d busy503=%d other=%d socket_errors=%d p50_ms=%.2f p99_ms=%.2f mean_ms=%.2f\n",
    summary.requests, summary.duration / 1e6, a, bz, o, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000))
end
