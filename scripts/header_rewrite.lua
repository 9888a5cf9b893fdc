-- header_rewrite.lua: set, remove and rename request and response headers.
--
-- Harmony's built-in `headers` middleware can set and remove; this script
-- adds renaming and shows the shape of a Lua middleware you can extend
-- (e.g. to compute a value instead of using a fixed one).
--
-- Options (all optional; header names are case-insensitive):
--
--   request_set     = { ["x-gateway"] = "harmony" }  -- set (replace) on the request
--   request_remove  = { "x-debug", "cookie" }         -- remove from the request
--   request_rename  = { ["x-old"] = "x-new" }         -- rename on the request
--   response_set    = { ["x-frame-options"] = "DENY" }
--   response_remove = { "server", "x-powered-by" }
--   response_rename = { ["x-upstream-id"] = "x-backend-id" }
--   rename          = { ["x-old"] = "x-new" }          -- rename on BOTH sides
--
-- Order on each side: remove, then rename, then set. So `set` wins over a
-- rename onto the same name, and you can remove a header and set it anew.
--
-- A renamed header keeps its value; several fields of one name are joined
-- with ", " (so do not rename Set-Cookie, whose values cannot be joined).
-- Content-Length, Transfer-Encoding and Connection belong to the proxy:
-- naming them here is refused when the proxy starts (`harmony --check`).
--
-- Example (a pipeline file):
--
--   [middleware.rewrite]
--   type = "lua"
--   options = { script = "header_rewrite.lua", request_set = { "x-gateway" = "harmony" }, rename = { "x-old" = "x-new" }, response_remove = ["server"] }

local M = {}

local MANAGED = { ["content-length"] = true, ["transfer-encoding"] = true, ["connection"] = true }

-- Checked once, at start-up: a mistake in the options stops the proxy with a
-- clear message instead of failing every request.
local function check_name(opt, name)
  if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+%-.^_`|~]+$") then
    error(("header_rewrite: %s: invalid header name %q"):format(opt, tostring(name)), 0)
  end
  if MANAGED[name:lower()] then
    error(("header_rewrite: %s: header '%s' is managed by the proxy"):format(opt, name), 0)
  end
  return name
end

-- { name = value } -> list of { name, value } (values must be strings or numbers)
local function map_opt(opts, key)
  local out = {}
  for name, value in pairs(opts[key] or {}) do
    check_name(key, name)
    if type(value) ~= "string" and type(value) ~= "number" then
      error(("header_rewrite: %s.%s: value must be a string"):format(key, name), 0)
    end
    out[#out + 1] = { name, tostring(value) }
  end
  table.sort(out, function(a, b) return a[1] < b[1] end) -- deterministic order
  return out
end

-- { "a", "b" } -> list of names
local function list_opt(opts, key)
  local out = {}
  for _, name in ipairs(opts[key] or {}) do
    out[#out + 1] = check_name(key, name)
  end
  return out
end

-- { old = new } -> list of { old, new } (check both names)
local function rename_opt(opts, key, into)
  for old, new in pairs(opts[key] or {}) do
    check_name(key, old)
    check_name(key, new)
    into[#into + 1] = { old, new }
  end
  return into
end

function M.init(opts)
  M.request = {
    remove = list_opt(opts, "request_remove"),
    rename = rename_opt(opts, "request_rename", rename_opt(opts, "rename", {})),
    set = map_opt(opts, "request_set"),
  }
  M.response = {
    remove = list_opt(opts, "response_remove"),
    rename = rename_opt(opts, "response_rename", rename_opt(opts, "rename", {})),
    set = map_opt(opts, "response_set"),
  }
end

local function apply(rules, headers)
  for _, name in ipairs(rules.remove) do
    headers[name] = nil -- assigning nil removes every field of that name
  end
  for _, r in ipairs(rules.rename) do
    local value = headers[r[1]]
    if value ~= nil then
      headers[r[1]] = nil
      headers[r[2]] = value
    end
  end
  for _, s in ipairs(rules.set) do
    headers[s[1]] = s[2] -- replaces any existing field of that name
  end
end

function M.on_request(req, ctx)
  apply(M.request, req.headers)
end

function M.on_response(res, ctx)
  apply(M.response, res.headers)
end

return M
