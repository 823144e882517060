-- wrk script for benches/e2e/e2e.sh: POST a realistic OpenAI chat request on a
-- keep-alive connection and print a machine-readable summary at the end.
--
-- Environment (all optional):
--   BENCH_KEY     client key sent as Authorization: Bearer (default: the bench key)
--   BENCH_MODEL   model name (default DeepSeek-V3.2)
--   BENCH_STREAM  "1" sends "stream": true
--   BENCH_API     "messages" sends the same conversation to /v1/messages in
--                 the Anthropic Messages API's shape (x-api-key)
local key = os.getenv("BENCH_KEY") or "sk-bench-5f3c9a1e7d2b4c68"
local model = os.getenv("BENCH_MODEL") or "DeepSeek-V3.2"
local stream = os.getenv("BENCH_STREAM") == "1"
local messages_api = os.getenv("BENCH_API") == "messages"

-- ~400 bytes: a system prompt, a short exchange and a question, as an
-- editor plug-in or agent would send it.
local body = '{"model":"' .. model .. '","messages":['
  .. '{"role":"system","content":"You are a concise assistant. Answer in plain English and keep code blocks short."},'
  .. '{"role":"user","content":"What does HTTP keep-alive do?"},'
  .. '{"role":"assistant","content":"It reuses one TCP connection for several requests."},'
  .. '{"role":"user","content":"And why does that matter for a reverse proxy in front of an LLM API?"}'
  .. '],"temperature":0.7,"max_tokens":256'
  .. (stream and ',"stream":true' or '')
  .. '}'

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.headers["User-Agent"] = "OpenAI/Python 1.54.0"
wrk.headers["Accept"] = "application/json"

if messages_api then
  -- The same conversation as an Anthropic Messages request.
  wrk.path = "/v1/messages"
  wrk.body = '{"model":"' .. model .. '","max_tokens":256,'
    .. '"system":"You are a concise assistant. Answer in plain English and keep code blocks short.",'
    .. '"messages":['
    .. '{"role":"user","content":"What does HTTP keep-alive do?"},'
    .. '{"role":"assistant","content":"It reuses one TCP connection for several requests."},'
    .. '{"role":"user","content":"And why does that matter for a reverse proxy in front of an LLM API?"}'
    .. '],"temperature":0.7'
    .. (stream and ',"stream":true' or '')
    .. '}'
  wrk.headers["Authorization"] = nil
  wrk.headers["x-api-key"] = key
  wrk.headers["anthropic-version"] = "2023-06-01"
  wrk.headers["User-Agent"] = "Anthropic/Python 0.40.0"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d bytes=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, summary.bytes))
end
