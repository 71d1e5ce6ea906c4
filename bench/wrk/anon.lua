-- Traffic kind "anon": the request of customers.lua without the loyalty_id
-- cookie (the other cookies stay).
--
--   wrk ... -s bench/wrk/anon.lua URL -- [count]
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local req

function init(args)
    if args[#args] == "count" then count_responses() end
    req = make_request("_ga=GA1.2.1419278023.1731840000; cart=3")
end

function request()
    return req
end
