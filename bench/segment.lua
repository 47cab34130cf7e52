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
function init(args) ok = 0; busy = 0; other = 0; infer_ms = 0 end
function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    -- the server's own time for the model (ms_model_segment) on this very request
    infer_ms = infer_ms + (tonumber(headers["X-Inference-Ms"] or headers["x-inference-ms"] or "0") or 0)
  elseif status == 503 and (headers["Retry-After"] or headers["retry-after"]) then busy = busy + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, bz, o, im = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("ok"); bz = bz + t:get("busy"); o = o + t:get("other"); im = im + t:get("infer_ms")
  end
  local e = summary.errors
  io.write(string.format("STATS requests=%d seconds=%.1f ok=%d busy503=%d other=%d socket_errors=%d p50_ms=%.2f p99_ms=%.2f mean_ms=%.2f infer_mean_ms=%.2f\n",
    summary.requests, summary.duration / 1e6, a, bz, o, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.mean / 1000, a > 0 and im / a or 0))
end
