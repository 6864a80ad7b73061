-- wrk script: posts the NDJSON batches `thoth-load bodies` wrote, in turn, each with its
-- tenant's token, and counts the answers that are not 200 (a 503/429 is the gateway pushing
-- back, which the summary must show rather than hide in wrk's "Non-2xx" line).
--
--   thoth-load bodies --out-dir /tmp/bodies --tenant acme=TOKEN ...
--   BODIES=/tmp/bodies wrk -t2 -c32 -d30s -s benches/wrk/post_batches.lua http://127.0.0.1:8686
--
-- Each request carries a whole file; the events it accepted are `requests x batch`.

local dir = os.getenv("BODIES") or "bodies"
local requests = {}
local next_request = 0
local threads = {}
refused = 0

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   for line in io.lines(dir .. "/manifest.txt") do
      local token, name = line:match("^(%S+) (%S+)$")
      local file = assert(io.open(dir .. "/" .. name, "rb"))
      local body = file:read("*a")
      file:close()
      requests[#requests + 1] = wrk.format("POST", "/v1/events", {
         ["Authorization"] = "Bearer " .. token,
         ["Content-Type"] = "application/x-ndjson",
      }, body)
   end
   -- Threads start at different files.
   next_request = math.random(#requests)
end

function request()
   next_request = next_request % #requests + 1
   return requests[next_request]
end

function response(status, headers, body)
   if status ~= 200 then
      refused = refused + 1
   end
end

function done(summary, latency, requests)
   local total = 0
   for _, thread in ipairs(threads) do
      total = total + thread:get("refused")
   end
   io.write(string.format("requests %d  refused %d  errors %d\n", summary.requests, total,
      summary.errors.connect + summary.errors.read + summary.errors.write
         + summary.errors.status + summary.errors.timeout))
end
