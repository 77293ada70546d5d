-- bench/lua/common.lua: what every scenario shares. Loaded by each scenario script with
-- dofile(); bench/run passes the arguments after `--` as key=value pairs:
--   users=N   ids are drawn from 1..N (the seeded users)
--   tag=S     a string unique to this wrk invocation (keeps POSTed emails unique)
local M = {}

local counter = 0

function M.args(args)
   local t = {}
   for _, a in ipairs(args or {}) do
      local k, v = a:match("^([%w_]+)=(.*)$")
      if k then t[k] = v end
   end
   return t
end

-- setup() runs in the main Lua state once per thread: give each thread its number.
local next_id = 0
function setup(thread)
   next_id = next_id + 1
   thread:set("thread_id", next_id)
end

-- Called from each scenario's init(): seed this thread's generator and remember the
-- settings. Each thread has its own Lua state, so the counter below is per thread.
function M.init(args)
   local a = M.args(args)
   M.users = tonumber(a.users) or 100000
   M.tag = a.tag or tostring(os.time())
   local tid = thread_id or 0
   -- A different stream per thread and per invocation.
   local seed = os.time() + tid * 7919
   for i = 1, #M.tag do seed = (seed * 31 + M.tag:byte(i)) % 2147483647 end
   math.randomseed(seed)
   math.random(); math.random()
   M.prefix = string.format("%s-t%d-%06x", M.tag, tid, math.random(0, 0xffffff))
end

function M.random_id()
   return math.random(1, M.users)
end

local post_headers = { ["Content-Type"] = "application/json" }

-- A POST /user with an email no other request of this run uses: tag (per invocation)
-- + thread number + random prefix + per-thread counter.
function M.post_user()
   counter = counter + 1
   local body = string.format(
      '{"first_name":"Bench","last_name":"User","email":"%s-%d@bench.example"}',
      M.prefix, counter)
   return wrk.format("POST", "/user", post_headers, body)
end

-- done() runs once at the end in the main state: one parseable line on stdout.
-- wrk counts a response with status > 399 in errors.status (non-2xx for this API, which
-- sends no 1xx/3xx here); connect/read/write/timeout are socket-level errors.
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,' ..
      '"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.max, latency.stdev,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end

return M
