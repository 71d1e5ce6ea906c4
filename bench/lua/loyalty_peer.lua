-- loyalty_peer: the benchmark's Lua implementation of what
-- ngx_http_loyalty_module does, used by bench/conf/lua-headers.conf
-- (rewrite()) and bench/conf/lua-inject.conf (rewrite_inject()).
--
-- Per request (rewrite phase), rewrite():
--   * every client-sent X-Loyalty-* request header is removed;
--   * cookie loyalty_id (1-64 of [A-Za-z0-9_-]) ->
--     HMGET loyalty:customer:<id> tier points
--     through lua-resty-redis (Debian: lua-nginx-redis, module "nginx.redis")
--     with a keepalive connection pool;
--   * the storefront gets the module's request headers: X-Loyalty-Status
--     (ok / anonymous / invalid / unknown / timeout / error), X-Loyalty-Id
--     when the cookie is valid, X-Loyalty-Tier and X-Loyalty-Points when ok;
--   * $peer_tier / $peer_points are set for known customers, so the
--     config's add_header lines send the response headers.
-- Any Redis problem means "no personalization" (fail open), never an error.
--
-- rewrite_inject() does the same with the module's whole HMGET (tier
-- points cashback segments first_order birthday referral_code offers) and
-- also sets $loyalty_json to the fragment the config's sub_filter inserts
-- before </head>: {"status":"ok","tier":..,"points":..,"cashback":..,
-- "referral_code":..,"segments":[..],"offers":[..]} for known customers
-- (members without a valid value left out), {"status":"<status>"}
-- otherwise, like the module, so anonymous visitors get
-- {"status":"anonymous"}. Unlike the module it has no tier ladder (no
-- label, next_tier, points_to_next, progress) and no offer catalog: offers
-- is the record's array as stored, checked only for its [...] shape and
-- made safe for <script> (< > & and U+2028/9 escaped), not parsed.
-- lua-cjson is not installed by make bench, so the JSON is concatenated;
-- every other value is allow-listed first and needs no escaping.

local redis = require "nginx.redis"

local ngx = ngx
local var = ngx.var
local null = ngx.null
local log = ngx.log
local ERR = ngx.ERR
local get_headers = ngx.req.get_headers
local set_header = ngx.req.set_header
local clear_header = ngx.req.clear_header
local find = string.find
local sub = string.sub
local gsub = string.gsub
local byte = string.byte
local concat = table.concat

local _M = {}

local opt = {
    host = "127.0.0.1",
    port = 6379,
    timeout_ms = 50,
    pool_size = 32,
    idle_ms = 60000,
    key_prefix = "loyalty:customer:",
}

function _M.configure(t)
    for k, v in pairs(t) do
        opt[k] = v
    end
end

-- remove X-Loyalty-* whatever the client sent (get_headers lowercases names)
local function strip_client_headers()
    for name in pairs(get_headers(100)) do
        if sub(name, 1, 10) == "x-loyalty-" then
            clear_header(name)
        end
    end
end

-- lookup(id, inject): "ok", tier, points[, res] or a failure status; with
-- inject, every field of the module's HMGET, res being HMGET's reply.
local function lookup(id, inject)
    local red = redis:new()
    -- one timeout for connect, send and read: lua-resty-redis 0.27 has no
    -- set_timeouts (an unknown method there becomes a Redis command)
    red:set_timeout(opt.timeout_ms)

    local ok, err = red:connect(opt.host, opt.port)
    if not ok then
        log(ERR, "loyalty peer: redis connect: ", err)
        return (err == "timeout") and "timeout" or "error"
    end

    local res
    if inject then
        res, err = red:hmget(opt.key_prefix .. id, "tier", "points", "cashback",
                             "segments", "first_order", "birthday",
                             "referral_code", "offers")
    else
        res, err = red:hmget(opt.key_prefix .. id, "tier", "points")
    end
    if not res then
        log(ERR, "loyalty peer: redis hmget: ", err)
        red:close()
        return (err == "timeout") and "timeout" or "error"
    end

    red:set_keepalive(opt.idle_ms, opt.pool_size)

    local tier, points = res[1], res[2]
    if tier == null and points == null then
        return "unknown"
    end

    -- the same allow-lists as the module: the values end up in headers
    if tier == null or #tier == 0 or #tier > 32 or find(tier, "[^%w_-]")
       or points == null or #points == 0 or #points > 18
       or find(points, "[^0-9]")
    then
        log(ERR, "loyalty peer: record rejected for id ", id)
        return "error"
    end

    return "ok", tier, points, res
end

-- status, tier, points[, res]: the lookup's outcome, with the storefront's
-- X-Loyalty-* request headers and $peer_tier / $peer_points set.
local function personalize(inject)
    strip_client_headers()

    local id = var.cookie_loyalty_id
    if id == nil then
        set_header("X-Loyalty-Status", "anonymous")
        return "anonymous"
    end

    if #id == 0 or #id > 64 or find(id, "[^%w_-]") then
        set_header("X-Loyalty-Status", "invalid")
        return "invalid"
    end

    local status, tier, points, res = lookup(id, inject)

    set_header("X-Loyalty-Status", status)
    set_header("X-Loyalty-Id", id)

    if status == "ok" then
        set_header("X-Loyalty-Tier", tier)
        set_header("X-Loyalty-Points", points)
        var.peer_tier = tier
        var.peer_points = points
    end

    return status, tier, points, res
end

function _M.rewrite()
    personalize(false)
end

-- the fragment ------------------------------------------------------------

local script_unsafe = {
    ["<"] = "\\u003c", [">"] = "\\u003e", ["&"] = "\\u0026", ["\127"] = "\\u007f",
}
local script_unsafe_uni = { ["\226\128\168"] = "\\u2028", ["\226\128\169"] = "\\u2029" }

-- a value of HMGET's reply as a string, nil when missing or empty
local function field(res, i)
    local v = res[i]
    if v == null or v == nil or #v == 0 then
        return nil
    end
    return v
end

-- "a,b,,c" -> '["a","b","c"]'; nil when empty or when any name is bad
local function segments_json(v)
    local out, n = {}, 0
    for name in v:gmatch("[^,]+") do
        if #name > 32 or find(name, "[^%w_-]") then
            return nil
        end
        n = n + 1
        if n > 32 then
            return nil
        end
        out[n] = '"' .. name .. '"'
    end
    if n == 0 then
        return nil
    end
    return "[" .. concat(out, ",") .. "]"
end

-- the stored offers array, made safe inside <script>; nil unless it has
-- the shape of a non-empty array
local function offers_json(v)
    local first = find(v, "[^ \t\r\n]")
    local last = find(v, "[^ \t\r\n][ \t\r\n]*$")
    if not first or byte(v, first) ~= 91 or byte(v, last) ~= 93 then  -- [ ]
        return nil
    end
    v = sub(v, first, last)
    if find(v, "^%[[ \t\r\n]*%]$") then
        return nil
    end
    if find(v, "[<>&\127]") then
        v = gsub(v, "[<>&\127]", script_unsafe)
    end
    if find(v, "\226\128[\168\169]") then
        v = gsub(v, "\226\128[\168\169]", script_unsafe_uni)
    end
    return v
end

local function fragment(status, tier, points, res)
    if status ~= "ok" then
        return '{"status":"' .. status .. '"}'
    end

    -- tier and points are allow-listed by lookup(); points as a number
    local out = {
        '{"status":"ok","tier":"', tier, '","points":', (gsub(points, "^0+(%d)", "%1")),
    }
    local n = #out

    local v = field(res, 3)                            -- cashback
    if v and #v <= 15 and find(v, "^%d+%.?%d?%d?$") and not find(v, "%.$")
       and #(v:match("^%d+")) <= 12
    then
        out[n + 1] = ',"cashback":'
        out[n + 2] = (gsub(v, "^0+(%d)", "%1"))
        n = n + 2
    end

    v = field(res, 7)                                  -- referral_code
    if v and #v <= 32 and not find(v, "[^%w_-]") then
        out[n + 1] = ',"referral_code":"'
        out[n + 2] = v
        out[n + 3] = '"'
        n = n + 3
    end

    v = field(res, 4)                                  -- segments
    v = v and segments_json(v)
    if v then
        out[n + 1] = ',"segments":'
        out[n + 2] = v
        n = n + 2
    end

    v = field(res, 8)                                  -- offers
    v = v and offers_json(v)
    if v then
        out[n + 1] = ',"offers":'
        out[n + 2] = v
        n = n + 2
    end

    out[n + 1] = "}"
    return concat(out)
end

function _M.rewrite_inject()
    var.loyalty_json = fragment(personalize(true))
end

return _M
