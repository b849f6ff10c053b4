-- wrk pacing: each connection waits `delay_ms` between requests, so
-- connections * 1000 / delay_ms ≈ the offered rate (20 connections, 100 ms → ~200 req/s).
local delay_ms = tonumber(os.getenv("FQ_DELAY_MS") or "100")
function delay()
  return delay_ms
end
function setup(thread) end
done = function(summary, latency, requests)
  io.write(string.format("requests %d in %.1f s = %.1f req/s, errors: status %d connect %d timeout %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    summary.errors.status, summary.errors.connect, summary.errors.timeout))
  for _, p in pairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%g %.2f ms\n", p, latency:percentile(p) / 1000))
  end
end
