-- fhir/patient_from_flat.lua: turn a flat patient record into a FHIR R4
-- Patient resource on its way to a FHIR server.
--
-- The client sends (POST or PUT, JSON):
--
--   {"id":"p1","first_name":"Ada","last_name":"Lovelace","birth_date":"1815-12-10",
--    "gender":"F","mrn":"MRN-1","phone":"+44 20 1234","email":"ada@example.org"}
--
-- and the upstream receives (Content-Type: application/fhir+json):
--
--   {"resourceType":"Patient","id":"p1",
--    "identifier":[{"system":"<opts.mrn_system>","value":"MRN-1"}],
--    "name":[{"family":"Lovelace","given":["Ada"]}],
--    "birthDate":"1815-12-10","gender":"female",
--    "telecom":[{"system":"phone","value":"+44 20 1234"},{"system":"email","value":"ada@example.org"}]}
--
-- Only last_name is required; absent fields are left out of the resource.
-- gender: "male"/"m", "female"/"f", "other"/"o" (any case); anything else,
-- or none, becomes "unknown".
--
-- Invalid input (not a JSON object, no last_name, a birth_date that is not
-- a real YYYY-MM-DD date, an id FHIR would refuse) is answered by the proxy
-- with 400 and a FHIR OperationOutcome listing every problem; the request
-- does not reach the upstream.
--
-- Options:
--
--   mrn_system = "urn:oid:1.2.36.146.595.217.0.1"  -- identifier system of the MRN
--                                                 -- (omitted from the identifier if unset)
--   methods    = ["POST", "PUT"]                   -- requests to transform (default
--                                                 -- POST and PUT; others pass untouched)
--
-- Example:
--
--   [middleware.patient_map]
--   type = "lua"
--   options = { script = "fhir/patient_from_flat.lua", mrn_system = "urn:oid:1.2.36.146.595.217.0.1" }
--
-- The body is read with req:json(), which makes the proxy buffer it (up to
-- proxy.buffered_body_bytes, 413 beyond). req:set_json() replaces it and the
-- proxy sends the new Content-Length upstream.

local M = {}

function M.init(opts)
  M.mrn_system = opts.mrn_system
  M.methods = {}
  for _, m in ipairs(opts.methods or { "POST", "PUT" }) do
    M.methods[tostring(m):upper()] = true
  end
end

local GENDER = {
  male = "male", m = "male",
  female = "female", f = "female",
  other = "other", o = "other",
}

local function days_in(year, month)
  if month == 2 then
    local leap = (year % 4 == 0 and year % 100 ~= 0) or year % 400 == 0
    return leap and 29 or 28
  end
  return (month == 4 or month == 6 or month == 9 or month == 11) and 30 or 31
end

-- "YYYY-MM-DD" and a date that exists
local function valid_date(s)
  if type(s) ~= "string" then return false end
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return false end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  return m >= 1 and m <= 12 and d >= 1 and d <= days_in(y, m)
end

-- JSON null (harmony.json.null) counts as absent
local function present(v)
  return v ~= nil and v ~= harmony.json.null
end

-- a non-empty string (numbers are accepted and converted), else nil
local function text(v)
  if type(v) == "number" then v = tostring(math.tointeger(v) or v) end
  if type(v) == "string" and v:match("%S") then return v end
  return nil
end

local function outcome(problems)
  local issues = {}
  for i, p in ipairs(problems) do
    issues[i] = { severity = "error", code = "invalid", diagnostics = p }
  end
  return { resourceType = "OperationOutcome", issue = issues }
end

local function reject(problems)
  harmony.respond(400, { ["Content-Type"] = "application/fhir+json" }, harmony.json.encode(outcome(problems)))
end

-- The mapping itself; returns the Patient or nil and a list of problems.
function M.to_patient(rec)
  local problems = {}
  if type(rec) ~= "table" then
    return nil, { "the body must be a JSON object" }
  end
  local family = text(rec.last_name)
  if not family then problems[#problems + 1] = "last_name is required" end
  if present(rec.birth_date) and not valid_date(rec.birth_date) then
    problems[#problems + 1] = "birth_date must be a date as YYYY-MM-DD, got " .. harmony.json.encode(rec.birth_date)
  end
  local id = text(rec.id)
  if present(rec.id) and not (id and id:match("^[%w%-%.]+$") and #id <= 64) then
    problems[#problems + 1] = "id must be 1-64 letters, digits, '-' or '.'"
  end
  if #problems > 0 then return nil, problems end

  local p = { resourceType = "Patient", id = id }
  local mrn = text(rec.mrn)
  if mrn then
    p.identifier = { { system = M.mrn_system, value = mrn } }
  end
  local name = { family = family }
  local given = text(rec.first_name)
  if given then name.given = { given } end
  p.name = { name }
  if present(rec.birth_date) then p.birthDate = rec.birth_date end
  p.gender = GENDER[string.lower(text(rec.gender) or "")] or "unknown"
  local telecom = {}
  if text(rec.phone) then telecom[#telecom + 1] = { system = "phone", value = text(rec.phone) } end
  if text(rec.email) then telecom[#telecom + 1] = { system = "email", value = text(rec.email) } end
  if #telecom > 0 then p.telecom = telecom end
  return p
end

function M.on_request(req, ctx)
  if not M.methods[req.method] then return end
  -- req:json() raises on malformed JSON: answer that with an OperationOutcome too
  local ok, rec = pcall(req.json, req)
  if not ok then
    return reject({ "the body is not valid JSON: " .. tostring(rec) })
  end
  local patient, problems = M.to_patient(rec)
  if not patient then
    return reject(problems)
  end
  req:set_json(patient)
  req.headers["content-type"] = "application/fhir+json"
end

return M
