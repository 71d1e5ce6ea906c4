-- Shared by customers.lua and anon.lua (loaded with dofile).
--
-- make_request(cookie): the request every benchmark connection sends; only
--   the Cookie header differs between the traffic kinds.
-- count_responses(): when the script's last argument is "count", counts
--   status codes and responses carrying X-Loyalty-Tier (used by the
--   Redis-down runs only: the per-response callback costs wrk CPU).
-- done(): prints one line that bench/run.sh parses:
--   BENCH requests=.. seconds=.. rps=.. p50_us=.. p99_us=.. ... [statuses=200:n,..] [personalized=n]

local threads = {}

function setup(thread)
    threads[#threads + 1] = thread
end

function make_request(cookie)
    return wrk.format("GET", "/", {
        ["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) loyalty-bench/1",
        ["Accept"] = "text/html,application/xhtml+xml",
        ["Accept-Language"] = "en-GB,en;q=0.8",
        ["Cookie"] = cookie,
    })
end

-- wrk asks whether a response() function exists after init() ran, so
-- init() may define it.
function count_responses()
    statuses = {}
    personalized = 0
    response = function(status, headers, body)
        statuses[status] = (statuses[status] or 0) + 1
        if headers["X-Loyalty-Tier"] then
            personalized = personalized + 1
        end
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    local secs = summary.duration / 1e6
    local out = string.format(
        "BENCH requests=%d seconds=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d"
        .. " bytes=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d",
        summary.requests, secs, summary.requests / secs,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, summary.bytes,
        e.connect, e.read, e.write, e.timeout, e.status)

    local all, pers, counted = {}, 0, false
    for _, t in ipairs(threads) do
        local s = t:get("statuses")
        if type(s) == "table" then
            counted = true
            for code, n in pairs(s) do
                all[code] = (all[code] or 0) + n
            end
            pers = pers + (t:get("personalized") or 0)
        end
    end
    if counted then
        local list = {}
        for code, n in pairs(all) do
            list[#list + 1] = code .. ":" .. n
        end
        table.sort(list)
        out = out .. " statuses=" .. (#list > 0 and table.concat(list, ",") or "none")
                  .. " personalized=" .. pers
    end
    io.write(out, "\n")
end
