-- dicom/cfind_fixer.lua: normalise C-FIND queries before the backend sees them.
--
-- On every C-FIND-RQ:
--   * PatientName, when given, is upper-cased and gets a trailing "*"
--     wildcard unless it already holds "*" or "?" (so "doe^j" matches
--     "DOE^JOHN" on archives that match case-sensitively);
--   * every key listed in `drop` is removed from the query;
--   * every key listed in `return_keys` is added empty when missing, so
--     the responses carry it (an empty key is a return key in C-FIND).
-- Keys are DICOM keywords (PatientBirthDate) or tags ("(0010,0030)").
--
-- Options:
--   drop        = { "OtherPatientIDsSequence" }           -- optional
--   return_keys = { "PatientBirthDate", "PatientSex" }    -- optional
--   uppercase   = true   -- false: leave PatientName's case alone
--   wildcard    = true   -- false: do not add the trailing "*"
--
-- Example:
--   [middleware.find_fix]
--   type = "lua"
--   options = { script = "dicom/cfind_fixer.lua", return_keys = ["PatientBirthDate", "StudyDescription"] }

local M = {}

local function list(v, name)
  assert(v == nil or type(v) == "table", "cfind_fixer.lua: " .. name .. " must be a list of keywords")
  return v or {}
end

function M.init(opts)
  M.drop = list(opts.drop, "drop")
  M.return_keys = list(opts.return_keys, "return_keys")
  M.uppercase = opts.uppercase ~= false
  M.wildcard = opts.wildcard ~= false
end

function M.on_dimse(msg, ctx)
  if msg.command ~= "C-FIND-RQ" then return end
  local ds = msg.dataset
  if ds == nil then return end
  local name = ds.PatientName
  if type(name) == "string" and name ~= "" then
    if M.uppercase then name = name:upper() end
    if M.wildcard and not name:find("[*?]") then name = name .. "*" end
    if name ~= ds.PatientName then ds.PatientName = name end
  end
  for _, key in ipairs(M.drop) do
    ds:delete(key)
  end
  for _, key in ipairs(M.return_keys) do
    if not ds:has(key) then ds[key] = "" end
  end
end

return M
