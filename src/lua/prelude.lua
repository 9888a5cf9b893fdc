-- Harmony's Lua prelude: runs once per state, before any script, with the
-- full environment. It returns the pieces the host needs; scripts never see
-- its locals.
local traceback, set_response, json_encode, json_decode, xpcall, set_reject = ...
local yield, setmetatable, error, tostring, next = coroutine.yield, setmetatable, error, tostring, next

local NEED_BODY, RESPOND, REJECT = {}, {}, {}

-- Reading the body may suspend the hook until the proxy has buffered it.
local function body_of(ud)
  local b = ud:body()
  if b == nil then
    yield(NEED_BODY)
    b = ud:body()
  end
  return b
end

-- One object per message kind and state; `ud` and `hdr` are upvalues.
-- `hdr` and `index` are the host's fast C versions of the userdata's
-- headers and of reading a field (see fast.rs; `index` calls `body_of` for
-- `body`). `headers` and the methods sit in the `__index` table, so reading
-- them calls no function; other keys fall through to its own `__index`.
-- The proxy itself stays empty, so every assignment reaches `__newindex`.
local function wrap(ud, hdr, index)
  local fields = {
    headers = hdr,
    json = function(_)
      local b = body_of(ud)
      if b == "" then return nil end
      return json_decode(b)
    end,
    set_json = function(_, t)
      ud:set("body", json_encode(t))
      ud:default_content_type("application/json")
    end,
  }
  setmetatable(fields, { __index = index })
  return setmetatable({}, {
    __index = fields,
    __newindex = function(_, k, v) ud:set(k, v) end,
    __metatable = false,
  })
end

-- `msg` of on_dimse: reading `msg.dataset` may suspend the hook until the
-- proxy has buffered the data set (`ud:dataset()` is false until then).
local function wrap_dimse(ud)
  local get, dataset = ud.get, ud.dataset
  return setmetatable({}, {
    __index = function(_, k)
      if k == "dataset" then
        local d = dataset(ud)
        if d == false then
          yield(NEED_BODY)
          d = dataset(ud)
          if d == false then error("the data set was not provided", 2) end
        end
        return d
      end
      return get(ud, k)
    end,
    __newindex = function(_, k, v) ud:set(k, v) end,
    __metatable = false,
  })
end

-- A read-only view of a table (`assoc`).
local function readonly(t)
  return setmetatable({}, {
    __index = t,
    __newindex = function(_, k) error("assoc." .. tostring(k) .. " is read-only", 2) end,
    __pairs = function() return next, t, nil end,
    __len = function() return #t end,
    __metatable = false,
  })
end

-- The message handler of every hook call: the host runs each hook as
-- `xpcall(hook, handler, msg, ctx)`, xpcall itself being the body of the
-- hook's coroutine (see coro.rs).
local function handler(e)
  if e == RESPOND or e == REJECT then return e end
  return traceback(tostring(e), 2)
end


local function respond(status, headers, body)
  set_response(status, headers, body)
  error(RESPOND, 0)
end

local function reject(reason)
  set_reject(reason)
  error(REJECT, 0)
end

return {
  handler = handler, wrap = wrap, body_of = body_of, respond = respond, NEED_BODY = NEED_BODY, RESPOND = RESPOND,
  wrap_dimse = wrap_dimse, readonly = readonly, reject = reject, REJECT = REJECT,
}
