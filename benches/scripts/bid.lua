-- wrk / wrk2 script: POSTs a varied corpus of OpenRTB bid requests.
--
--   wrk -t1 -c64 -d10s -s benches/scripts/bid.lua http://127.0.0.1:8080/openrtb2/bid
--   FIXTURES=/path/to/openrtb wrk ... (default: tests/fixtures/openrtb, run from the repository root)
--   FIXTURES=dir NAMES="a.json b.json" wrk ...   (other files)
--
-- Each IAB example is loaded once; requests cycle through them with a fresh
-- auction id, so the bidder sees distinct auctions (de-duplication, ids) while
-- the bodies stay byte-for-byte realistic. The same script serves wrk2 (-R).

local dir = os.getenv("FIXTURES") or "tests/fixtures/openrtb"
local names = {
  "bid-request-2.5_expandable-creative.json", "bid-request-2.5_mobile.json",
  -- The IAB native example elides its assets; the corpus copy has them.
  "../corpus/native-1.0_iab-2.5-example-with-assets.json", "bid-request-2.5_pmp-with-direct-deal.json",
  "bid-request-2.5_simple-banner.json", "bid-request-2.5_video.json",
  "bid-request-2.6_expandable-creative.json", "bid-request-2.6_mobile.json",
  "bid-request-2.6_pmp-with-direct-deal.json", "bid-request-2.6_simple-banner.json",
  "bid-request-2.6_video.json",
}

-- NAMES="a.json b.json": another list of files under FIXTURES (deploy/pgo.sh
-- trains on tests/fixtures/corpus this way, not on the corpus benchmarks send).
if os.getenv("NAMES") then
  names = {}
  for n in os.getenv("NAMES"):gmatch("%S+") do table.insert(names, n) end
end

local bodies = {}
for _, n in ipairs(names) do
  local f = io.open(dir .. "/" .. n, "r")
  if f then
    local s = f:read("*a")
    f:close()
    -- Make the top-level id a placeholder we can vary per request.
    s = s:gsub('^%s*{%s*"id"%s*:%s*"[^"]*"', '{"id":"%%ID%%"', 1)
    table.insert(bodies, s)
  end
end
if #bodies == 0 then
  error("no fixtures found in " .. dir .. " (set FIXTURES)")
end

local counter = 0
local headers = { ["Content-Type"] = "application/json", ["x-openrtb-version"] = "2.6" }

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local n = 0
request = function()
  n = n + 1
  local body = bodies[(n % #bodies) + 1]:gsub("%%ID%%", (tid or 0) .. "-" .. n, 1)
  return wrk.format("POST", nil, headers, body)
end

local codes = {}
response = function(status, hdrs, body)
  codes[status] = (codes[status] or 0) + 1
end

done = function(summary, latency, requests)
  io.write(string.format("bid corpus: %d bodies\n", #bodies))
end
