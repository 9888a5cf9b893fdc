-- dicom/deidentify.lua: de-identify every stored instance (C-STORE-RQ) on its
-- way to the backend, after the DICOM PS3.15 Annex E Basic Application
-- Level Confidentiality Profile (main attributes; not a certified
-- implementation of every row of Table E.1-1).
--
-- What it does to each data set:
--   * PatientName is emptied (or set to the pseudonym, see name_as_id);
--     PatientID becomes a pseudonym: prefix .. 16 hex digits of
--     HMAC-SHA256(secret, PatientID), so one patient keeps one pseudonym.
--   * Birth date, addresses, phone numbers, other IDs and names, institution,
--     physicians, operators, station, accession number, study ID,
--     descriptions, patient age/size/weight... are emptied (type 2) or removed.
--   * Dates: "shift" (default) moves every study/series/acquisition/content
--     date back by a per-patient number of days (1..max_shift_days, derived
--     from the secret and the original PatientID, so a patient's timeline
--     keeps its intervals); "blank" empties or removes them as the profile's
--     Z/X actions say.
--   * UIDs: StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID,
--     FrameOfReferenceUID, and the same attributes plus
--     ReferencedSOPInstanceUID / ReferencedFrameOfReferenceUID inside
--     sequences are replaced by "2.25." .. the decimal value of the first 16
--     bytes of HMAC-SHA256(secret, uid) (with UUID version/variant bits set).
--     The same original UID always gives the same new UID, on every worker,
--     association and restart, as long as the secret stays the same.
--     msg.affected_sop_instance_uid is set to the new SOPInstanceUID, and
--     the C-STORE-RSP gets the original UID back, so the sender sees the
--     UIDs it sent.
--   * All private attributes (odd groups) are removed, nested ones too.
--   * PatientIdentityRemoved = "YES", DeidentificationMethod and
--     DeidentificationMethodCodeSequence (DCM 113100, plus 113107 when dates
--     are shifted) are added.
--
-- Options:
--   secret            = "..."     -- required, at least 16 characters; keep it secret
--                                 -- and stable: it is the whole pseudonymisation key
--   patient_id_prefix = "ANON-"   -- optional
--   name_as_id        = false     -- true: PatientName = the pseudonym instead of empty
--   dates             = "shift"   -- or "blank"
--   max_shift_days    = 365       -- with dates = "shift"
--   keep              = { "PatientSex" }  -- optional: keywords to leave alone
--
-- Example:
--   [middleware.deid]
--   type = "lua"
--   options = { script = "dicom/deidentify.lua", secret = "change-me-to-a-long-random-value" }

local M = {}

-- Z: made empty (type 2), X: removed.
local EMPTY = {
  "PatientBirthDate", "AccessionNumber", "StudyID", "ReferringPhysicianName", "PatientSex",
}
local REMOVE = {
  "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "PatientAddress",
  "PatientTelephoneNumbers", "OtherPatientIDs", "OtherPatientNames", "OtherPatientIDsSequence",
  "IssuerOfPatientID", "PatientAge", "PatientSize", "PatientWeight", "MilitaryRank",
  "BranchOfService", "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments",
  "MedicalRecordLocator", "PatientInsurancePlanCodeSequence", "PatientReligiousPreference",
  "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
  "StationName", "DeviceSerialNumber", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
  "OperatorsName", "PhysiciansOfRecord", "RequestingPhysician", "ReferringPhysicianAddress",
  "ReferringPhysicianTelephoneNumbers", "StudyDescription", "SeriesDescription",
  "RequestAttributesSequence", "ReferencedPatientSequence", "AdmittingDiagnosesDescription",
  "PerformedProcedureStepID", "ScheduledProcedureStepID", "RequestedProcedureID",
  "ImageComments", "AcquisitionDateTime",
}
local DATES_EMPTY = { "StudyDate", "StudyTime", "ContentDate", "ContentTime" }
local DATES_REMOVE = { "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime" }
local SHIFTED = { "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate" }
local UIDS = {
  "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
  "ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID",
}

function M.init(opts)
  assert(type(opts.secret) == "string" and #opts.secret >= 16,
    "deidentify.lua: options.secret (a string of at least 16 characters) is required")
  M.secret = opts.secret
  M.prefix = opts.patient_id_prefix or "ANON-"
  M.name_as_id = opts.name_as_id == true
  M.dates = opts.dates or "shift"
  assert(M.dates == "shift" or M.dates == "blank", "deidentify.lua: dates must be \"shift\" or \"blank\"")
  M.max_shift = math.tointeger(opts.max_shift_days or 365)
  assert(M.max_shift and M.max_shift >= 1, "deidentify.lua: max_shift_days must be a positive integer")
  M.keep = {}
  for _, k in ipairs(opts.keep or {}) do M.keep[k] = true end
end

-- The decimal digits of a big-endian byte string (long division by 10).
local function decimal(bytes)
  local digits, n = {}, { bytes:byte(1, -1) }
  local nonzero = true
  while nonzero do
    nonzero = false
    local rem = 0
    for i = 1, #n do
      local cur = rem * 256 + n[i]
      n[i] = cur // 10
      rem = cur % 10
      if n[i] ~= 0 then nonzero = true end
    end
    digits[#digits + 1] = rem
  end
  local out = {}
  for i = #digits, 1, -1 do out[#out + 1] = tostring(digits[i]) end
  return (table.concat(out):gsub("^0+(%d)", "%1"))
end

local function hex_bytes(hex)
  return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

-- "2.25." .. a 128-bit UUID (version 8, RFC 9562 variant) derived from the UID.
local function new_uid(uid)
  local b = { hex_bytes(harmony.hmac_sha256(M.secret, "uid:" .. uid):sub(1, 32)):byte(1, -1) }
  b[7] = (b[7] & 0x0F) | 0x80
  b[9] = (b[9] & 0x3F) | 0x80
  return "2.25." .. decimal(string.char(table.unpack(b)))
end
M.new_uid = new_uid

-- Dates: days since 1970-01-01 and back (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = (153 * mp + 2) // 5 + d - 1
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = z // 146097
  local doe = z - era * 146097
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

local function shift_date(da, days)
  local y, m, d = da:match("^(%d%d%d%d)(%d%d)(%d%d)$")
  if not y then return "" end
  local ny, nm, nd = civil_from_days(days_from_civil(tonumber(y), tonumber(m), tonumber(d)) - days)
  return string.format("%04d%02d%02d", ny, nm, nd)
end
M.shift_date = shift_date

-- Private attributes and UIDs, in this item and every nested one.
local function walk(item)
  for _, tag in ipairs(item:tags()) do
    local group = tonumber(tag:sub(2, 5), 16)
    if group % 2 == 1 then
      item:delete(tag)
    elseif item:vr(tag) == "SQ" then
      for _, child in ipairs(item[tag]) do walk(child) end
    end
  end
  for _, k in ipairs(UIDS) do
    local v = item[k]
    if type(v) == "string" and v ~= "" and not M.keep[k] then item[k] = new_uid(v) end
  end
end

local function apply(ds, list, value)
  for _, k in ipairs(list) do
    if not M.keep[k] and ds:has(k) then ds[k] = value end
  end
end

local function deidentify(msg, ctx)
  local ds = msg.dataset
  if ds == nil then return end
  local original_id = ds.PatientID or ""
  local original_sop = ds.SOPInstanceUID or msg.affected_sop_instance_uid

  if not M.keep.PatientID then
    local pseudonym = M.prefix .. harmony.hmac_sha256(M.secret, "pid:" .. original_id):sub(1, 16):upper()
    ds.PatientID = pseudonym
    if not M.keep.PatientName then ds.PatientName = M.name_as_id and pseudonym or "" end
  elseif not M.keep.PatientName then
    ds.PatientName = ""
  end
  apply(ds, EMPTY, "")
  apply(ds, REMOVE, nil)

  if M.dates == "blank" then
    apply(ds, DATES_EMPTY, "")
    apply(ds, DATES_REMOVE, nil)
  else
    local days = 1 + tonumber(harmony.hmac_sha256(M.secret, "date:" .. original_id):sub(1, 8), 16) % M.max_shift
    for _, k in ipairs(SHIFTED) do
      local v = ds[k]
      if type(v) == "string" and v ~= "" and not M.keep[k] then ds[k] = shift_date(v, days) end
    end
  end

  walk(ds)

  ds.PatientIdentityRemoved = "YES"
  ds.DeidentificationMethod = "HARMONY PS3.15 E basic profile"
  local codes = { { CodeValue = "113100", CodingSchemeDesignator = "DCM",
                    CodeMeaning = "Basic Application Confidentiality Profile" } }
  if M.dates == "shift" then
    codes[2] = { CodeValue = "113107", CodingSchemeDesignator = "DCM",
                 CodeMeaning = "Retain Longitudinal Temporal Information Modified Dates Option" }
  end
  ds.DeidentificationMethodCodeSequence = codes

  if original_sop then
    local new = ds.SOPInstanceUID or new_uid(original_sop)
    msg.affected_sop_instance_uid = new
    -- the response carries the new UID: give the sender back its own
    local back = ctx.vars.deidentify_uids or {}
    ctx.vars.deidentify_uids = back
    back[new] = original_sop
  end
end

function M.on_dimse(msg, ctx)
  if msg.command == "C-STORE-RQ" then
    deidentify(msg, ctx)
  elseif msg.command == "C-STORE-RSP" then
    local back = ctx.vars.deidentify_uids
    local uid = msg.affected_sop_instance_uid
    if back and uid and back[uid] then
      msg.affected_sop_instance_uid = back[uid]
      back[uid] = nil
    end
  end
end

return M
