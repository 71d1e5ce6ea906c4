-- Traffic kind "cookie": logged-in customers. Each connection rotates
-- through K distinct customer ids drawn from 1..N with a seeded PRNG
-- (MINSTD, computed exactly in doubles, so the ids do not depend on the
-- LuaJIT build), Cookie: ...; loyalty_id=<id>; ...
--
--   wrk ... -s bench/wrk/customers.lua URL -- N K SEED [count]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local reqs, n, pos = {}, 0, 0

function init(args)
    local max_id = tonumber(args[1]) or 100000
    local k = math.min(tonumber(args[2]) or 10000, max_id)
    local state = (tonumber(args[3]) or 1) % 2147483647
    if state == 0 then state = 1 end
    if args[4] == "count" then count_responses() end

    local seen = {}
    while n < k do
        state = (state * 48271) % 2147483647
        local id = state % max_id + 1
        if not seen[id] then
            seen[id] = true
            n = n + 1
            reqs[n] = make_request("_ga=GA1.2.1419278023.1731840000; loyalty_id="
                                   .. id .. "; cart=3")
        end
    end
end

function request()
    pos = pos % n + 1
    return reqs[pos]
end
