-- rate_limit.lua: a token bucket per client.
--
-- Every client has a bucket of `burst` tokens that refills at `rate` tokens
-- per second. A request takes one token; with none left the proxy answers
-- 429 with Retry-After (seconds until a token is back) and the request does
-- not reach the upstream. Responses that passed carry X-RateLimit-Remaining
-- (whole tokens left) and X-RateLimit-Limit (the burst).
--
-- Options:
--
--   rate  = 5          -- tokens per second (> 0; may be fractional, e.g. 0.5)
--   burst = 10         -- bucket size: requests a fresh client may make at once (>= 1)
--   key   = "peer"     -- who is a "client": "peer" (the client IP, default) or
--                      -- a request header name, e.g. "x-api-key"; a request
--                      -- without that header is counted by its IP
--   name  = "default"  -- bucket namespace; give each rate_limit middleware
--                      -- its own name if several share one proxy
--
-- Example: 2 requests per second per API key, bursts of up to 20:
--
--   [middleware.limit]
--   type = "lua"
--   options = { script = "rate_limit.lua", rate = 2, burst = 20, key = "x-api-key" }
--
-- Limits of this simple design (adapt if they matter to you):
--   * The state lives in harmony.cache, which is per worker: with
--     proxy.workers = N a client may get up to N times the limit, and a
--     restart or configuration reload may reset the buckets.
--   * The cache is an LRU of proxy.lua_cache_entries entries: a flood of
--     distinct keys evicts old buckets (which then start full again).
--   * Behind another proxy, "peer" is that proxy's address: key on a header
--     it sets instead (and make sure clients cannot set it themselves).

local M = {}

function M.init(opts)
  M.rate = tonumber(opts.rate)
  M.burst = tonumber(opts.burst)
  if not M.rate or M.rate <= 0 then error("rate_limit: rate (tokens per second, > 0) is required", 0) end
  if not M.burst or M.burst < 1 then error("rate_limit: burst (>= 1) is required", 0) end
  M.limit_text = tostring(math.tointeger(M.burst) or M.burst)
  M.key = opts.key or "peer"
  M.prefix = "rate_limit:" .. (opts.name or "default") .. ":"
  -- after burst/rate seconds idle a bucket is full again, same as a new one:
  -- let the cache forget it then
  M.ttl = math.max(1, math.ceil(M.burst / M.rate))
end

-- "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "::1"
local function peer_ip(peer)
  return peer:match("^%[(.*)%]:%d+$") or peer:match("^(.*):%d+$") or peer
end

local function client_of(req)
  if M.key ~= "peer" then
    local v = req.headers[M.key]
    if v ~= nil and v ~= "" then return "h:" .. v end
  end
  return "ip:" .. peer_ip(req.peer)
end

function M.on_request(req, ctx)
  local key = M.prefix .. client_of(req)
  local now = harmony.now()
  -- the bucket is stored as "tokens timestamp" (the cache holds plain values)
  local tokens, last = M.burst, now
  local saved = harmony.cache.get(key)
  if saved then
    local t, ts = saved:match("^(%S+) (%S+)$")
    tokens, last = tonumber(t), tonumber(ts)
  end
  tokens = math.min(M.burst, tokens + math.max(0, now - last) * M.rate)
  if tokens < 1 then
    harmony.cache.set(key, ("%.6f %.3f"):format(tokens, now), M.ttl)
    local retry = math.max(1, math.ceil((1 - tokens) / M.rate))
    harmony.respond(429, {
      ["Content-Type"] = "application/json",
      ["Retry-After"] = tostring(retry),
      ["X-RateLimit-Limit"] = M.limit_text,
      ["X-RateLimit-Remaining"] = "0",
    }, harmony.json.encode({
      error = "rate_limited",
      detail = ("too many requests; retry in %d s"):format(retry),
      request_id = ctx.request_id,
    }))
  end
  tokens = tokens - 1
  harmony.cache.set(key, ("%.6f %.3f"):format(tokens, now), M.ttl)
  -- on_response runs later for the same request and sees the same ctx
  ctx.vars.rate_limit_remaining = math.floor(tokens)
end

function M.on_response(res, ctx)
  local remaining = ctx.vars.rate_limit_remaining
  if remaining then
    res.headers["X-RateLimit-Remaining"] = tostring(remaining)
    res.headers["X-RateLimit-Limit"] = M.limit_text
  end
end

return M
