-- deny.lua: refuse requests by method and/or path, with a JSON error.
--
-- Options:
--
--   methods = { "DELETE", "PATCH" }   -- methods to refuse (case-insensitive)
--   paths   = { "^/api/admin" }       -- Lua patterns matched against req.path
--   match   = "any"                   -- "any" (default): refuse if the method
--                                     --   OR the path matches;
--                                     -- "all": refuse only if both match
--                                     --   (e.g. DELETE under /api/admin)
--   status  = 403                     -- status of the refusal (default 403)
--   message = "..."                   -- the "detail" of the JSON body
--
-- The answer is
--
--   403 {"error":"forbidden","detail":"...","method":"DELETE","path":"/api/x","request_id":"..."}
--
-- req.path is the full normalised path as the client sent it, INCLUDING
-- the endpoint prefix (e.g. "/api/admin/users" for an endpoint on "/api"),
-- and without the query string. Paths are normalised before scripts see
-- them ("/api//admin", "/api/./admin" and "/api/%61dmin" all become
-- "/api/admin"), so a pattern cannot be side-stepped by spelling.
--
-- Lua patterns, not regular expressions: "^/api/admin" matches the prefix,
-- "%.php$" a suffix; "-" "." "%" "+" "*" "?" "[" "^" "$" "(" ")" are special
-- and are escaped with "%" ("^/api/my%-app").
--
-- Example:
--
--   [middleware.no_admin]
--   type = "lua"
--   options = { script = "deny.lua", methods = ["DELETE"], paths = ["^/api/admin"] }

local M = {}

function M.init(opts)
  M.methods = {}
  for _, m in ipairs(opts.methods or {}) do
    M.methods[tostring(m):upper()] = true
  end
  M.paths = {}
  for _, p in ipairs(opts.paths or {}) do
    -- a malformed pattern is reported at start-up, not on the first request
    local ok, err = pcall(string.find, "", p)
    if not ok then
      error(("deny: invalid path pattern %q: %s"):format(p, err), 0)
    end
    M.paths[#M.paths + 1] = p
  end
  M.match_all = (opts.match or "any") == "all"
  if opts.match ~= nil and opts.match ~= "any" and opts.match ~= "all" then
    error("deny: match must be \"any\" or \"all\"", 0)
  end
  M.status = math.tointeger(opts.status or 403)
  if not M.status or M.status < 400 or M.status > 599 then
    error("deny: status must be an integer between 400 and 599", 0)
  end
  M.message = opts.message or "this request is not allowed"
  M.has_methods = next(M.methods) ~= nil
  M.has_paths = #M.paths > 0
  if not M.has_methods and not M.has_paths then
    error("deny: give methods and/or paths", 0)
  end
end

local function path_matches(path)
  for _, p in ipairs(M.paths) do
    if path:find(p) then return true end
  end
  return false
end

function M.on_request(req, ctx)
  local method, path = req.method, req.path
  local by_method = M.has_methods and M.methods[method] == true
  local by_path = M.has_paths and path_matches(path)
  local deny
  if M.match_all then
    -- every configured criterion must match
    deny = (by_method or not M.has_methods) and (by_path or not M.has_paths)
  else
    deny = by_method or by_path
  end
  if deny then
    harmony.log.info("deny:", method, path, "rid=" .. ctx.request_id)
    harmony.respond(M.status, { ["Content-Type"] = "application/json" }, harmony.json.encode({
      error = "forbidden",
      detail = M.message,
      method = method,
      path = path,
      request_id = ctx.request_id,
    }))
  end
end

return M
