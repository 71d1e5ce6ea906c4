-- loyalty_peer: the benchmark's Lua implementation of what
-- ngx_http_loyalty_module does, used by bench/conf/lua-headers.conf.
--
-- Per request (rewrite phase):
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

local function lookup(id)
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
    res, err = red:hmget(opt.key_prefix .. id, "tier", "points")
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

    return "ok", tier, points
end

function _M.rewrite()
    strip_client_headers()

    local id = var.cookie_loyalty_id
    if id == nil then
        set_header("X-Loyalty-Status", "anonymous")
        return
    end

    if #id == 0 or #id > 64 or find(id, "[^%w_-]") then
        set_header("X-Loyalty-Status", "invalid")
        return
    end

    local status, tier, points = lookup(id)

    set_header("X-Loyalty-Status", status)
    set_header("X-Loyalty-Id", id)

    if status == "ok" then
        set_header("X-Loyalty-Tier", tier)
        set_header("X-Loyalty-Points", points)
        var.peer_tier = tier
        var.peer_points = points
    end
end

return _M
