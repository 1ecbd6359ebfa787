-- graft.json: JSON for indexes and `--json` output. Decoding is cJSON's
-- (graft.core.json_decode); encoding is here, in two styles: compact, and
-- the style of Python's json.dumps(indent=2, sort_keys=True), which is how
-- Hugging Face writes *.index.json (ASCII only, non-ASCII as \uXXXX).

local core = require "graft.core"

local json = {}

json.decode = core.json_decode

-- Marks a Lua table to be encoded as a JSON array even when empty.
json.array_mt = { __jsontype = "array" }
-- A value encoded as JSON null (a nil field is left out instead).
json.null = setmetatable({}, { __name = "json.null" })

-- JSON null where it must survive a round trip (Keras model configs:
-- "batch_shape": [null, 4]).
json.null = setmetatable({}, { __jsontype = "null", __tostring = function() return "null" end })

-- Decoding that keeps what encoding needs back: null as json.null, arrays
-- (empty ones too) marked with array_mt.
function json.decode_exact(text)
  return core.json_decode(text, json.null, json.array_mt)
end

local escapes = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t",
}

local function encode_string(s)
  local out = s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end)
  -- Non-ASCII as \uXXXX (UTF-16), as Python's ensure_ascii does.
  if out:find("[\128-\255]") then
    local ok, parts = pcall(function()
      local t = {}
      for _, cp in utf8.codes(out) do
        if cp < 128 then
          t[#t + 1] = string.char(cp)
        elseif cp < 0x10000 then
          t[#t + 1] = string.format("\\u%04x", cp)
        else
          cp = cp - 0x10000
          t[#t + 1] = string.format("\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF))
        end
      end
      return table.concat(t)
    end)
    if ok then out = parts end
  end
  return '"' .. out .. '"'
end

local function is_array(t)
  local mt = getmetatable(t)
  if mt and mt.__jsontype == "array" then return true end
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  if n == 0 then return false end
  for i = 1, n do
    if t[i] == nil then return false end
  end
  return true
end

-- Floats as Python's repr: the shortest digits that read back exactly,
-- fixed notation for decimal exponents -4 .. 15 (with ".0" when integral),
-- otherwise d.ddde+XX.
local function shortest_digits(v)
  for p = 1, 17 do
    local s = string.format("%." .. (p - 1) .. "e", v)
    if tonumber(s) == v or p == 17 then
      local m, e = s:match("^(%d[%.%d]*)e([-+]%d+)$")
      return (m:gsub("%.", "")), tonumber(e)
    end
  end
end

local function encode_number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v or v == math.huge or v == -math.huge then
    error("graft: cannot encode " .. tostring(v) .. " in JSON", 0)
  end
  if v == 0 then return (1 / v < 0) and "-0.0" or "0.0" end
  local sign = v < 0 and "-" or ""
  local digits, e = shortest_digits(math.abs(v))
  digits = digits:gsub("0+$", "")
  if digits == "" then digits = "0" end
  if e >= -4 and e < 16 then
    local n = #digits
    if e < 0 then return sign .. "0." .. string.rep("0", -e - 1) .. digits end
    if n <= e + 1 then return sign .. digits .. string.rep("0", e + 1 - n) .. ".0" end
    return sign .. digits:sub(1, e + 1) .. "." .. digits:sub(e + 2)
  end
  local mant = #digits > 1 and (digits:sub(1, 1) .. "." .. digits:sub(2)) or digits
  return string.format("%s%se%s%02d", sign, mant, e < 0 and "-" or "+", math.abs(e))
end

local function encode(v, indent, level)
  local tv = type(v)
  if tv == "nil" or v == json.null then return "null" end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then return encode_number(v) end
  if tv == "string" then return encode_string(v) end
  if tv ~= "table" then return encode_string(tostring(v)) end
  if v == json.null then return "null" end
  local nl, pad, pad2, sep
  if indent then
    pad = "\n" .. string.rep(" ", indent * (level + 1))
    pad2 = "\n" .. string.rep(" ", indent * level)
    sep, nl = ",", true
  else
    pad, pad2, sep = "", "", ","
  end
  local parts = {}
  if is_array(v) then
    if #v == 0 then return "[]" end
    for i = 1, #v do parts[i] = encode(v[i], indent, level + 1) end
    if nl then return "[" .. pad .. table.concat(parts, sep .. pad) .. pad2 .. "]" end
    return "[" .. table.concat(parts, sep) .. "]"
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  if #keys == 0 then return "{}" end
  for i, k in ipairs(keys) do
    local val = v[k]
    if val == nil then val = v[tonumber(k)] end
    parts[i] = encode_string(k) .. (nl and ": " or ":") .. encode(val, indent, level + 1)
  end
  if nl then return "{" .. pad .. table.concat(parts, sep .. pad) .. pad2 .. "}" end
  return "{" .. table.concat(parts, sep) .. "}"
end

-- Compact, keys sorted (stable output for scripts).
function json.encode(v) return encode(v, nil, 0) end
-- json.dumps(v, indent=2, sort_keys=True)
function json.encode_pretty(v) return encode(v, 2, 0) end

return json
