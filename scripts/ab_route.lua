-- ab_route.lua: A/B routing between two backends of one pipeline.
--
-- A request whose header `header` equals `value` goes to `backend_b`.
-- Without that header, if `sticky_header` is set and present, the client is
-- assigned to B for `percent_b` percent of the values of that header: the
-- value is hashed with SHA-256, so one user always lands on the same
-- backend, on every worker and across restarts. Everything else goes to
-- `backend_a` (or, if that is unset, the pipeline's first backend).
--
-- Options:
--
--   backend_b       = "api_v2"     -- required: name of a backend of this pipeline
--   backend_a       = "api_v1"     -- optional: default = the pipeline's first backend
--   header          = "x-variant"  -- the explicit switch (default "x-variant")
--   value           = "b"          -- ... and the value that selects B (default "b")
--   sticky_header   = "x-user-id"  -- optional: hash this header for a sticky split
--   percent_b       = 10           -- share of sticky clients sent to B, 0..100 (default 0)
--   response_header = "x-variant-served"  -- optional: tell the client "a" or "b"
--
-- Example (the pipeline lists both backends; the first is the default):
--
--   [pipelines.api]
--   networks = ["default"]
--   endpoints = ["api_in"]
--   middleware = ["ab"]
--   backends = ["api_v1", "api_v2"]
--
--   [middleware.ab]
--   type = "lua"
--   options = { script = "ab_route.lua", backend_a = "api_v1", backend_b = "api_v2", sticky_header = "x-user-id", percent_b = 10 }
--
-- Backend names are checked when a request is routed: a name that is not a
-- backend of the pipeline fails that request with a 500 (see the log).
-- The choice is kept in ctx.vars.ab_variant ("a" or "b") for later stages.

local M = {}

function M.init(opts)
  M.header = opts.header or "x-variant"
  M.value = opts.value or "b"
  M.backend_a = opts.backend_a
  M.backend_b = opts.backend_b
  if type(M.backend_b) ~= "string" or M.backend_b == "" then
    error("ab_route: backend_b (the name of a backend of the pipeline) is required", 0)
  end
  M.sticky_header = opts.sticky_header
  M.percent_b = tonumber(opts.percent_b or 0)
  if not M.percent_b or M.percent_b < 0 or M.percent_b > 100 then
    error("ab_route: percent_b must be a number from 0 to 100", 0)
  end
  M.response_header = opts.response_header
end

-- 0..9999 from the first 32 bits of SHA-256: stable and evenly spread
local function bucket(s)
  return tonumber(harmony.sha256(s):sub(1, 8), 16) % 10000
end

local function variant(req)
  local explicit = req.headers[M.header]
  if explicit ~= nil then
    return explicit == M.value and "b" or "a"
  end
  if M.sticky_header then
    local id = req.headers[M.sticky_header]
    if id ~= nil and bucket(id) < M.percent_b * 100 then
      return "b"
    end
  end
  return "a"
end

function M.on_request(req, ctx)
  local v = variant(req)
  ctx.vars.ab_variant = v
  if v == "b" then
    ctx.route = M.backend_b
  elseif M.backend_a then
    ctx.route = M.backend_a
  end -- else: the pipeline's first backend
end

function M.on_response(res, ctx)
  if M.response_header and ctx.vars.ab_variant then
    res.headers[M.response_header] = ctx.vars.ab_variant
  end
end

return M
