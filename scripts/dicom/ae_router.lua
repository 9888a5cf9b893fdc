-- dicom/ae_router.lua: pick the backend of a DICOM association from the
-- calling AE title.
--
-- on_associate looks the calling AE title up in `routes` and sets
-- ctx.route to that backend (a backend of this pipeline). A caller not in
-- `routes` goes to `default` if set, else to the pipeline's usual backend;
-- with `strict = true` it is rejected instead (A-ASSOCIATE-RJ, permanent,
-- calling-AE-title-not-recognized). AE titles are compared after trimming
-- spaces, case-sensitively (as DICOM compares them).
--
-- Options:
--   routes  = { CT_SCANNER = "pacs_ct", MR_1 = "pacs_mr" }  -- calling AE -> backend
--   default = "pacs_main"   -- optional
--   strict  = false         -- true: reject callers not in routes (default ignored)
--
-- Example:
--   [middleware.by_ae]
--   type = "lua"
--   options = { script = "dicom/ae_router.lua", strict = true, routes = { CT_SCANNER = "pacs_ct" } }

local M = {}

function M.init(opts)
  M.routes = {}
  assert(opts.routes == nil or type(opts.routes) == "table", "ae_router.lua: routes must be a table")
  for ae, backend in pairs(opts.routes or {}) do
    assert(type(ae) == "string" and type(backend) == "string",
      "ae_router.lua: routes maps AE titles to backend names")
    M.routes[ae:match("^%s*(.-)%s*$")] = backend
  end
  assert(opts.default == nil or type(opts.default) == "string", "ae_router.lua: default must be a backend name")
  M.default = opts.default
  M.strict = opts.strict == true
end

function M.on_associate(assoc, ctx)
  local backend = M.routes[assoc.calling_ae]
  if backend then
    ctx.route = backend
    return
  end
  if M.strict then
    harmony.log.warn("ae_router: rejecting unknown calling AE", assoc.calling_ae, "from", assoc.peer)
    harmony.reject("calling-ae-not-recognized")
  end
  if M.default then ctx.route = M.default end
end

return M
