-- safetensors: the one-pass reader of plain headers (fast_header in
-- src/formats/safetensors.c) against the general cJSON reader it falls back
-- to. For real files, hand-written headers and seeded mutations of both,
-- the two must give the same names, dtypes, shapes, bytes and metadata, or
-- the same error; plain headers must take the fast path.
local graft = require "graft"
local H = require "helper"

local testing = graft.core.testing
local ST = "safetensors/"
local REAL = {
  "candle-jfk-codes-i64/jfk-codes.safetensors",
  "hf-safetensors-pr84-samples/B.safetensors",
  "hf-safetensors-pr84-samples/H.safetensors",
  "hf-safetensors-pr84-samples/overall.safetensors",
  "iree-safetensors-testdata/empty.safetensors",
  "iree-safetensors-testdata/multiple.safetensors",
  "iree-safetensors-testdata/single.safetensors",
}

local function f32(n) return string.rep("\0\0\128\63", n) end

-- A file from a header (padded to 8 with spaces unless told) and data.
local function st_bytes(header, data, nopad)
  if not nopad then header = header .. string.rep(" ", (8 - #header % 8) % 8) end
  return string.pack("<i8", #header) .. header .. (data or "")
end

local E = '{"dtype":"F32","shape":[1],"data_offsets":[%d,%d]}'
local function e(a) return string.format(E, a, a + 4) end

-- Headers, each with whether the fast path must read it.
local HEADERS = {
  { "{}", "", true },
  { "  {  }  ", "", true },
  { '{"a":' .. e(0) .. "}", f32(1), true },
  { '{"__metadata__":{"format":"pt","k":"v"},"a":' .. e(0) .. ',"b":' .. e(4) .. "}", f32(2), true },
  { '{"a":' .. e(0) .. ',"__metadata__":{},"b":' .. e(4) .. "}", f32(2), true },
  { '{\n  "b": {\n    "data_offsets": [4, 8],\n    "shape": [1],\n    "dtype": "F32"\n  },\n'
    .. '  "a": {"shape":[1],"dtype":"F32","data_offsets":[0,4]}\n}\n', f32(2), true },
  { '{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[0,3],'
    .. '"data_offsets":[8,8]},"y":{"dtype":"F16","shape":[2,2],"data_offsets":[8,16]}}', f32(4), true },
  { '{"\195\169\226\130\172":' .. e(0) .. "}", f32(1), true },
  -- misaligned (unpadded header): a lazy aligned copy
  { '{"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', "\0\0\0\0\0\0\240\63", true, true },
  -- the general path's own
  { '{"a":' .. e(0) .. ',"__metadata__":null}', f32(1), false },
  { '{"a\\u00e9":' .. e(0) .. "}", f32(1), false },
  { '{"a\\"b":' .. e(0) .. "}", f32(1), false },
  { '{"a":{"extra":[1.5,{"x":null}],"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(1), false },
  { '{"__metadata__":{"k":"a\\nb"},"a":' .. e(0) .. "}", f32(1), false },
  -- errors, with the general path's messages (placement is checked after
  -- either reader, so a plain header that misplaces its data is read fast)
  { '{"a":' .. e(0) .. ',"a":' .. e(4) .. "}", f32(2), false },
  { '{"__metadata__":{"x":"1","x":"2"},"a":' .. e(0) .. "}", f32(1), false },
  { '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', f32(1), true },
  { '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,04]}}', f32(1), false },
  { '{"a":{"dtype":"F4","shape":[8],"data_offsets":[0,4]}}', f32(1), false },
  { '{"a":{"dtype":"U8","shape":[2147483648,2147483648],"data_offsets":[0,4]}}', f32(1), true },
  { '{"a":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,4]}}', f32(1), false },
  { '{"a":' .. e(0) .. ",}", f32(1), false },
}

-- Everything graft.open shows of a file, or its error, as one string.
local function outcome(path)
  local ok, m = pcall(graft.open, path, { format = "safetensors" })
  if not ok then return "error: " .. tostring(m) end
  local out = {}
  for _, n in ipairs(graft.names(m)) do
    local t = m[n]
    out[#out + 1] = string.format("%q %s {%s} %q", n, t.dtype, table.concat(t.shape, ","),
      t:bytes())
  end
  local md = graft.meta(m).__metadata__
  if md then
    local keys = {}
    for k in pairs(md) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do out[#out + 1] = string.format("meta %q=%q", k, md[k]) end
  end
  return table.concat(out, "\n")
end

-- The outcome by the default reader, whether it took the fast path, and
-- the outcome by the general reader alone.
local function both(path)
  local fast = outcome(path)
  local took = testing.safetensors_general(true)
  local ok, general = pcall(outcome, path)
  testing.safetensors_general(false)
  assert(ok, general)
  return fast, took, general
end

-- Seeded mutations of bytes within the header (as the bad-input spec does).
local function mutations(whole, n, seed)
  local function rnd(k)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return seed % k
  end
  local alphabet = '{}[]",:0123456789-.eE \\u\0\255'
  local lim = math.min(#whole, 8 + string.unpack("<i8", whole))
  local out = {}
  for i = 1, n do
    local b = { whole:byte(1, -1) }
    for _ = 1, 1 + rnd(3) do
      local pos = 9 + rnd(math.max(lim - 8, 1))
      b[pos] = rnd(3) > 0 and alphabet:byte(1 + rnd(#alphabet)) or rnd(256)
    end
    local s = {}
    for k = 1, #b do s[k] = string.char(b[k]) end
    out[i] = table.concat(s)
  end
  return out
end

describe("safetensors one-pass header reader", function()
  after_each(function()
    testing.safetensors_general(false)
    H.cleanup()
  end)

  it("agrees with the general reader on hand-written headers", function()
    local p = H.tmpdir() .. "/h.safetensors"
    for i, h in ipairs(HEADERS) do
      H.write(p, st_bytes(h[1], h[2], h[4]))
      local fast, took, general = both(p)
      assert.are.equal(general, fast, "header " .. i .. ": " .. h[1])
      assert.are.equal(h[3], took, "header " .. i .. " fast path: " .. h[1])
    end
  end)

  it("agrees with the general reader on real files, which take the fast path", function()
    if not H.have_real() then return H.real(ST) end
    for _, rel in ipairs(REAL) do
      local fast, took, general = both(H.real(ST .. rel))
      assert.are.equal(general, fast, rel)
      assert.is_false(fast:find("^error") ~= nil, rel .. ": " .. fast)
      assert.is_true(took, rel)
    end
  end)

  it("agrees with the general reader on mutated headers", function()
    local p = H.tmpdir() .. "/m.safetensors"
    local sources = {}
    for _, h in ipairs(HEADERS) do
      if h[3] then sources[#sources + 1] = st_bytes(h[1], h[2], h[4]) end
    end
    if H.have_real() then
      for _, rel in ipairs(REAL) do sources[#sources + 1] = H.read(H.real(ST .. rel)) end
    end
    for i, whole in ipairs(sources) do
      for k, bytes in ipairs(mutations(whole, 25, 1000 + i)) do
        H.write(p, bytes)
        local fast, _, general = both(p)
        assert.are.equal(general, fast, "source " .. i .. " mutation " .. k)
      end
    end
    assert.is_true(H.have_real(), "real fixtures missing: " .. H.REAL)
  end)
end)
