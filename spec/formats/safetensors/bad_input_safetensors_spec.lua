-- safetensors: hostile and broken files. Every one must raise a Lua error
-- that names the file (and says what is wrong); none may crash, hang or read
-- outside the file. The checks mirror the reference reader (safetensors/src/
-- tensor.rs read_metadata + Metadata::validate) and add duplicate keys.
local graft = require "graft"
local H = require "helper"

local ST = "safetensors/"
local REAL = {
  "candle-jfk-codes-i64/jfk-codes.safetensors",
  "hf-safetensors-pr84-samples/B.safetensors",
  "hf-safetensors-pr84-samples/H.safetensors",
  "hf-safetensors-pr84-samples/I.safetensors",
  "hf-safetensors-pr84-samples/b.safetensors",
  "hf-safetensors-pr84-samples/d.safetensors",
  "hf-safetensors-pr84-samples/e.safetensors",
  "hf-safetensors-pr84-samples/f.safetensors",
  "hf-safetensors-pr84-samples/h.safetensors",
  "hf-safetensors-pr84-samples/i.safetensors",
  "hf-safetensors-pr84-samples/overall.safetensors",
  "iree-safetensors-testdata/empty.safetensors",
  "iree-safetensors-testdata/multiple.safetensors",
  "iree-safetensors-testdata/single.safetensors",
}

local function open_st(path)
  return graft.open(path, { format = "safetensors" })
end

-- Raises naming the file; returns the message.
local function refused(path, pattern)
  local err = H.raises(function() open_st(path) end)
  assert.truthy(err:find(path, 1, true), "error does not name the file: " .. err)
  if pattern then
    assert.truthy(err:find(pattern, 1, true),
      "error " .. err .. " does not say " .. pattern)
  end
  return err
end

-- A file from a header (padded to 8 unless told) and data; n overrides N.
local function st_file(dir, header, data, n, nopad)
  if not nopad then header = header .. string.rep(" ", (8 - #header % 8) % 8) end
  local p = dir .. "/bad.safetensors"
  H.write(p, string.pack("<i8", n or #header) .. header .. (data or ""))
  return p
end

local function f32(n) return string.rep("\0\0\128\63", n) end

describe("safetensors bad input", function()
  after_each(H.cleanup)

  it("truncated real files: every cut raises an error naming the file", function()
    if not H.have_real() then return H.real(ST) end
    local dir = H.tmpdir()
    for _, rel in ipairs(REAL) do
      local whole = H.read(H.real(ST .. rel))
      local step = #whole > 2000 and 97 or 1
      local cuts = {}
      for k = 0, #whole - 1, step do cuts[#cuts + 1] = k end
      for k = #whole - 64, #whole - 1 do if k > 0 then cuts[#cuts + 1] = k end end
      for _, k in ipairs(cuts) do
        local p = dir .. "/cut.safetensors"
        H.write(p, whole:sub(1, k))
        local err = H.raises(function() open_st(p) end)
        assert.truthy(err:find(p, 1, true), rel .. " cut at " .. k .. ": " .. err)
        -- format detection on the same bytes must not crash either
        pcall(graft.open, p)
      end
      -- one byte too many is refused as well
      local p = dir .. "/long.safetensors"
      H.write(p, whole .. "\0")
      refused(p)
    end
  end)

  it("mutated real files open or raise, never crash", function()
    if not H.have_real() then return H.real(ST) end
    local dir = H.tmpdir()
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    local alphabet = '{}[]",:0123456789-.eE \\u\0\255'
    for _, rel in ipairs(REAL) do
      local whole = H.read(H.real(ST .. rel))
      local lim = math.min(#whole, 300)
      for _ = 1, 60 do
        local b = { whole:byte(1, -1) }
        for _ = 1, 1 + rnd(3) do
          local pos = 1 + rnd(lim)
          if rnd(3) > 0 then
            local c = 1 + rnd(#alphabet)
            b[pos] = alphabet:byte(c)
          else
            b[pos] = rnd(256)
          end
        end
        local p = dir .. "/mut.safetensors"
        local bytes = {}
        for i = 1, #b do bytes[i] = string.char(b[i]) end
        H.write(p, table.concat(bytes))
        local ok, m = pcall(open_st, p)
        if ok then
          for _, n in ipairs(graft.names(m)) do assert.is_string(m[n]:bytes()) end
        else
          assert.truthy(tostring(m):find(p, 1, true), tostring(m))
        end
      end
    end
  end)

  it("a header length past the end of the file", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{}', "", 1000), "runs past the end")
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(1), 200),
      "runs past the end")
  end)

  it("a header length that cuts the JSON short", function()
    local dir = H.tmpdir()
    local hdr = '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    refused(st_file(dir, hdr, f32(1), 20, true), "not valid JSON")
  end)

  it("a header claiming more than 100 MB", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{}', "", 100000001), "exceeds")
    refused(st_file(dir, '{}', "", -1), "exceeds")
    refused(st_file(dir, '{}', "", 1 << 62), "exceeds")
  end)

  it("files shorter than the length field", function()
    local dir = H.tmpdir()
    for k = 0, 7 do
      local p = dir .. "/short.safetensors"
      H.write(p, string.rep("\8", k))
      refused(p)
    end
  end)

  it("data_offsets out of bounds, and a header that lies about sizes", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', f32(2)),
      'tensor "a": data_offsets [0, 16] run past the end')
    refused(st_file(dir, '{"a.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}}', f32(3)),
      'tensor "a.weight": data_offsets [0, 12] hold 12 bytes but shape {2,3} of F32 needs 24')
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32(2)),
      "after the last tensor")
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}', f32(2)),
      "end before they begin")
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[9007199254740990,9007199254740994]}}', f32(1)))
    refused(st_file(dir, '{}', f32(1)), "after the last tensor")
  end)

  it("overlapping tensors and holes between them", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
      .. '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', f32(3)), 'tensor "b"')
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
      .. '"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', f32(4)), "overlap tensor \"a\"")
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
      .. '"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', f32(3)), "unused")
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32(2)), "unused")
  end)

  it("accepts empty tensors sharing an offset, in header order", function()
    local dir = H.tmpdir()
    local m = open_st(st_file(dir, '{"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
      .. '"y":{"dtype":"I64","shape":[2,0],"data_offsets":[0,0]},'
      .. '"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
      .. '"w":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},'
      .. '"__metadata__":null}', f32(1)))
    assert.are.same({ "z", "y", "x", "w" }, graft.names(m))
    assert.are.same({ 2, 0 }, m.y.shape)
    assert.are.equal("", m.w:bytes())
    assert.is_nil(graft.meta(m).__metadata__)
  end)

  it("shape products that overflow", function()
    local dir = H.tmpdir()
    -- 2^31 * 2^31 = 2^62 elements of 4 bytes: 2^64 bytes
    refused(st_file(dir, '{"a":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,4]}}', f32(1)),
      'tensor "a": shape {2147483648,2147483648} of F32: byte size overflows')
    -- 2^62 elements of 1 byte fit 64 bits but not the file
    refused(st_file(dir, '{"a":{"dtype":"U8","shape":[2147483648,2147483648],"data_offsets":[0,4]}}', f32(1)),
      "hold 4 bytes but shape {2147483648,2147483648} of U8 needs 4611686018427387904")
    refused(st_file(dir, '{"a":{"dtype":"U8","shape":[1048576,1048576,1048576,1048576],"data_offsets":[0,4]}}', f32(1)),
      "overflows")
    -- empty, yet its strides would overflow
    refused(st_file(dir, '{"a":{"dtype":"U8","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}}', ""),
      "overflows")
  end)

  it("numbers that are not non-negative integers below 2^53", function()
    local dir = H.tmpdir()
    for _, bad in ipairs({ "[0.0,4]", "[0,4.0]", "[0,4e0]", "[-0,4]", "[0,04]", "[-4,0]",
                           "[0]", "[0,4,4]", "[\"0\",4]", "{}", "[true,4]",
                           "[0,18446744073709551620]", "[0,9007199254740993]" }) do
      refused(st_file(dir, '{"a":{"dtype":"U8","shape":[4],"data_offsets":' .. bad .. '}}', f32(1)),
        'tensor "a": "data_offsets"')
    end
    for _, bad in ipairs({ "[4.0]", "[-4]", "[1e0]", "[null]", "4", "[[4]]", "[4.5]" }) do
      refused(st_file(dir, '{"a":{"dtype":"U8","shape":' .. bad .. ',"data_offsets":[0,4]}}', f32(1)),
        'tensor "a": ')
    end
    refused(st_file(dir, '{"a":{"dtype":"U8","shape":[' .. string.rep("1,", 32) .. '4],"data_offsets":[0,4]}}', f32(1)),
      "more than 32 dimensions")
  end)

  it("dtypes that are unknown, unsupported or not strings", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}}', f32(1)),
      'tensor "a": unknown dtype "F128"')
    refused(st_file(dir, '{"a":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}}', f32(1)),
      "unknown dtype")
    for _, dt in ipairs({ "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ" }) do
      refused(st_file(dir, '{"a":{"dtype":"' .. dt .. '","shape":[8],"data_offsets":[0,4]}}', f32(1)),
        "dtype " .. dt .. " is not supported")
    end
    refused(st_file(dir, '{"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}', f32(1)), "must be a string")
  end)

  it("entries that are not tensor objects", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{"a":[1,2]}', ""), 'tensor "a"')
    refused(st_file(dir, '{"a":{"dtype":"U8","data_offsets":[0,4]}}', f32(1)), '"shape" is missing')
    refused(st_file(dir, '{"a":{"dtype":"U8","shape":[4]}}', f32(1)), '"data_offsets" is missing')
    refused(st_file(dir, '{"a":{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}}', f32(1)),
      '"dtype" appears twice')
    -- unknown fields are ignored, as serde does
    local m = open_st(st_file(dir, '{"a":{"extra":[1.5,{"x":null}],"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', f32(1)))
    assert.are.same({ 0, 0, 128, 63 }, m.a:totable())
  end)

  it("duplicate keys", function()
    local dir = H.tmpdir()
    refused(st_file(dir, '{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
      .. '"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}', f32(1)), 'tensor "a": the name appears twice')
    refused(st_file(dir, '{"__metadata__":{"x":"1"},"__metadata__":{"x":"1"},'
      .. '"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', f32(1)), "appears twice")
    refused(st_file(dir, '{"__metadata__":{"x":"1","x":"2"},'
      .. '"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}', f32(1)), '"x" appears twice')
  end)

  it("metadata that is not a map of strings", function()
    local dir = H.tmpdir()
    local t = ',"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'
    refused(st_file(dir, '{"__metadata__":{"n":1}' .. t, f32(1)), '__metadata__ value of "n" is not a string')
    refused(st_file(dir, '{"__metadata__":{"n":{"k":"v"}}' .. t, f32(1)), "not a string")
    refused(st_file(dir, '{"__metadata__":{"n":null}' .. t, f32(1)), "not a string")
    refused(st_file(dir, '{"__metadata__":["x"]' .. t, f32(1)), "__metadata__ must be an object")
    refused(st_file(dir, '{"__metadata__":"x"' .. t, f32(1)), "__metadata__ must be an object")
  end)

  it("headers that are not a JSON object in UTF-8", function()
    local dir = H.tmpdir()
    for _, hdr in ipairs({ "[]", "null", '"x"', "", "        ", "{", '{"a":}', "{}x",
                           "{},{}", "\239\187\191{}", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},}" }) do
      refused(st_file(dir, hdr, ""))
    end
    refused(st_file(dir, '{"\255":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', ""), "UTF-8")
    refused(st_file(dir, '{"\192\128":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', ""), "UTF-8")
    refused(st_file(dir, '{"\237\160\128":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', ""), "UTF-8")
    refused(st_file(dir, '{"a\0b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', ""), "control character")
    refused(st_file(dir, '{"a\\u0000b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', ""), "\\u0000")
    refused(st_file(dir, '{"a\\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}', ""), "JSON")
    refused(st_file(dir, '{}\0\0\0\0\0\0', "", nil, true), "control character")
    refused(st_file(dir, '{"a":NaN}', ""))
    refused(st_file(dir, string.rep("[", 5000) .. string.rep("]", 5000), ""))
    refused(st_file(dir, '{"a":' .. string.rep("[", 5000) .. string.rep("]", 5000) .. "}", ""))
  end)

  it("a directory, a missing path, an unreadable path", function()
    local dir = H.tmpdir()
    refused(dir)
    refused(dir .. "/nonexistent.safetensors")
    local p = dir .. "/empty.safetensors"
    H.write(p, "")
    refused(p)
  end)
end)
