-- Harmony's Lua prelude: runs once per state, before any script, with the
-- full environment. It returns the pieces the host needs; scripts never see
-- its locals.
local traceback, set_response, json_encode, json_decode = ...
local yield, xpcall, rawget, setmetatable, error, tostring = coroutine.yield, xpcall, rawget, setmetatable, error, tostring

local NEED_BODY, RESPOND = {}, {}
local UD, HDR = {}, {}

-- Reading the body may suspend the hook until the proxy has buffered it.
local function body_of(ud)
  local b = ud:body()
  if b == nil then
    yield(NEED_BODY)
    b = ud:body()
  end
  return b
end

local methods = {
  json = function(self)
    local b = body_of(rawget(self, UD))
    if b == "" then return nil end
    return json_decode(b)
  end,
  set_json = function(self, t)
    local ud = rawget(self, UD)
    ud:set("body", json_encode(t))
    ud:default_content_type("application/json")
  end,
}

local MT = {
  __index = function(t, k)
    if k == "headers" then return rawget(t, HDR) end
    local ud = rawget(t, UD)
    if k == "body" then return body_of(ud) end
    local m = methods[k]
    if m then return m end
    return ud:get(k)
  end,
  __newindex = function(t, k, v) rawget(t, UD):set(k, v) end,
  __metatable = false,
}

local function wrap(ud, hdr) return setmetatable({ [UD] = ud, [HDR] = hdr }, MT) end

local function handler(e)
  if e == RESPOND then return RESPOND end
  return traceback(tostring(e), 2)
end

-- The body of every hook coroutine.
local function run(fn, msg, ctx)
  return xpcall(fn, handler, msg, ctx)
end


local function respond(status, headers, body)
  set_response(status, headers, body)
  error(RESPOND, 0)
end

return { run = run, wrap = wrap, respond = respond, NEED_BODY = NEED_BODY, RESPOND = RESPOND }
