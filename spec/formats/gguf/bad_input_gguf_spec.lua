-- GGUF bad input: truncations at every length, counts and lengths that
-- overrun, unknown type ids, blocks past the end, bad alignment, huge
-- n_dims, deep nesting and seeded byte mutations. Every outcome is a
-- clear error naming the file (and key or tensor) or a file that opens
-- and reads fully; never a crash (this spec runs under `make asan` too).
-- The files are built here byte by byte (layout: docs/formats/gguf.md).
local graft = require "graft"
local H = require "helper"

local function str(s) return string.pack("<s8", s) end

-- A key/value: key, GGUF value type id, encoded value.
local function kv(key, vt, bytes) return str(key) .. string.pack("<I4", vt) .. bytes end

-- A tensor info: name, dims in ggml order, ggml type id, offset.
local function info(name, ne, gtype, offset)
  local b = { str(name), string.pack("<I4", #ne) }
  for _, n in ipairs(ne) do b[#b + 1] = string.pack("<I8", n) end
  b[#b + 1] = string.pack("<I4I8", gtype, offset)
  return table.concat(b)
end

local function pad(s, align)
  return s .. string.rep("\0", (align - #s % align) % align)
end

-- header + kvs + infos, padded to `align`, then data.
local function gguf(opts)
  local kvs, infos = opts.kvs or {}, opts.infos or {}
  local head = "GGUF" .. string.pack("<I4I8I8", opts.version or 3, opts.nt or #infos, opts.nkv or #kvs)
  local body = head .. table.concat(kvs) .. table.concat(infos)
  return pad(body, opts.align or 32) .. (opts.data or "")
end

-- A valid file: every scalar kv type, a string array, nested arrays, and
-- an F32, a Q4_0 and a Q6_K tensor.
local function valid()
  local q4 = string.pack("<I2", 0x3c00) .. string.rep("\x9a", 16)        -- d = 1.0
  local q6 = string.rep("\x5a", 128) .. string.rep("\x1b", 64) .. string.rep("\3", 16) .. string.pack("<I2", 0x2c00)
  local f32 = string.pack("<ffff", 1, 2, 3, 4)
  local data = pad(f32, 32) .. pad(q4:rep(2), 32) .. q6
  return gguf({
    kvs = {
      kv("general.architecture", 8, str("test")),
      kv("u8", 0, "\7"), kv("i16", 3, string.pack("<i2", -3)), kv("f32", 6, string.pack("<f", 0.5)),
      kv("b", 7, "\1"), kv("u64", 10, string.pack("<I8", 9)), kv("f64", 12, string.pack("<d", 0.25)),
      kv("arr", 9, string.pack("<I4I8", 8, 2) .. str("x") .. str("yz")),
      kv("nest", 9, string.pack("<I4I8", 9, 1) .. string.pack("<I4I8", 5, 2) .. string.pack("<i4i4", 1, 2)),
    },
    infos = { info("w", { 2, 2 }, 0, 0), info("q", { 32, 2 }, 2, 32), info("k", { 256 }, 14, 96) },
    data = data,
  })
end

local dir
setup(function() dir = H.tmpdir() end)
teardown(H.cleanup)

local function path_of(name) return dir .. "/" .. name .. ".gguf" end

-- Opens and fully reads (every tensor dequantised); returns nil or the error.
local function try(name, bytes)
  local p = path_of(name)
  H.write(p, bytes)
  local ok, err = pcall(function()
    local m = graft.open(p)
    for _, n in ipairs(graft.names(m)) do
      local t = m[n]
      t:bytes()
      t:float():bytes()
    end
    return m
  end)
  if ok then return nil end
  err = tostring(err)
  assert.are.equal("graft: " .. p .. ": ", err:sub(1, #p + 9), err)
  return err
end

local function fails(name, bytes, pattern)
  local err = try(name, bytes)
  assert.is_not_nil(err, name .. " opened")
  assert.matches(pattern, err)
end

describe("gguf bad input", function()
  it("the valid base file opens and reads", function()
    assert.is_nil(try("valid", valid()))
    local m = graft.open(path_of("valid"))
    assert.are.same({ 2, 2 }, m.w.shape)
    assert.are.same({ 2, 32 }, m.q.shape)
    assert.are.same({ 256 }, m.k.shape)
    -- qs bytes 0x9a, d = 1: element j is (0xa - 8), element j + 16 is (0x9 - 8)
    local q = m.q:float():totable()
    assert.are.equal(2, q[1][1])
    assert.are.equal(1, q[2][17])
  end)

  it("every truncation is a clear error", function()
    local v = valid()
    local n = 0
    for len = 0, #v - 1 do
      local err = try("trunc", v:sub(1, len))
      assert.is_not_nil(err, "truncated to " .. len .. " bytes opened")
      assert.is_truthy(err:find("truncated", 1, true) or err:find("past the end", 1, true)
        or err:find("cannot fit", 1, true) or err:find("empty file", 1, true)
        or err:find("unrecognised format", 1, true), err)
      n = n + 1
    end
    assert.is_true(n > 500)
  end)

  it("refuses version 1 and unknown versions", function()
    fails("v1", gguf({ version = 1 }), "GGUF version 1 is not supported")
    fails("v9", gguf({ version = 9 }), "GGUF version 9 is not supported")
    fails("vbe", gguf({ version = 0x03000000 }), "big%-endian")
  end)

  it("counts and lengths that overrun", function()
    fails("nkv", gguf({ nkv = 1 << 60 }), "key/value pairs cannot fit")
    fails("nt", gguf({ nt = 1 << 62 }), "tensor infos cannot fit")
    fails("keylen", gguf({ kvs = { string.pack("<I8", 1 << 62) .. "abc" } }), "key 1: length %d+ at byte 24 runs past the end")
    fails("strlen", gguf({ kvs = { kv("s", 8, string.pack("<I8", 1 << 40)) } }), "key \"s\": string value: length")
    fails("arrlen", gguf({ kvs = { kv("a", 9, string.pack("<I4I8", 4, 1 << 61)) } }),
      "key \"a\": array of %d+ uint32 items at byte %d+ cannot fit")
    fails("strarr", gguf({ kvs = { kv("a", 9, string.pack("<I4I8", 8, 3) .. str("x") .. string.pack("<I8", 1 << 40)
      .. string.rep("\0", 40)) } }), "key \"a\": array item 2: string value: length %d+ at byte %d+ runs past the end")
    fails("namelen", gguf({ infos = { string.pack("<I8", 1 << 50) .. string.rep("\0", 40) } }),
      "name of tensor 1: length %d+ at byte 24 runs past the end")
  end)

  it("unknown value and tensor type ids", function()
    fails("vtype", gguf({ kvs = { kv("x", 13, "") } }), "key \"x\": unknown value type 13")
    fails("itype", gguf({ kvs = { kv("x", 9, string.pack("<I4I8", 77, 1)) } }), "key \"x\": array at byte %d+ has unknown item type 77")
    fails("gtype", gguf({ infos = { info("t", { 4 }, 99, 0) }, data = string.rep("\0", 32) }),
      "tensor \"t\": unknown ggml type id 99")
    fails("iq", gguf({ infos = { info("t", { 256 }, 16, 0) }, data = string.rep("\0", 66) }),
      "tensor \"t\": ggml type IQ2_XXS %(16%) is not supported")
  end)

  it("tensor data past the end, partial blocks, huge dims", function()
    fails("past", gguf({ infos = { info("t", { 32, 100 }, 2, 0) }, data = string.rep("\0", 18) }),
      "tensor \"t\": its 1800 bytes at offset 0 run past the end of the file")
    fails("offpast", gguf({ infos = { info("t", { 32 }, 8, 1 << 62) }, data = string.rep("\0", 34) }),
      "tensor \"t\": its 34 bytes at offset %d+ run past the end")
    fails("offwrap", gguf({ infos = { info("t", { 32 }, 8, -32) }, data = string.rep("\0", 34) }),
      "tensor \"t\": its 34 bytes at offset %d+ run past the end")
    fails("partial", gguf({ infos = { info("t", { 33, 1 }, 8, 0) }, data = string.rep("\0", 68) }),
      "tensor \"t\": Q8_0 rows must hold whole 32%-element blocks, but ne%[0%] is 33")
    fails("ndims", gguf({ infos = { string.pack("<s8I4", "t", 1000) } }), "tensor \"t\": n_dims 1000 is more than ggml's 4")
    fails("dimover", gguf({ infos = { info("t", { 1 << 62, 1 << 62 }, 0, 0) } }), "tensor \"t\": element count overflows")
    fails("dimneg", gguf({ infos = { info("t", { -1 }, 0, 0) } }), "tensor \"t\": element count overflows")
    fails("bytesover", gguf({ infos = { info("t", { 1 << 61, 3 }, 28, 0) } }), "tensor \"t\": byte size overflows")
    fails("nul", gguf({ infos = { info("a\0b", { 1 }, 0, 0) }, data = "\0\0\0\0" }), "name holds a NUL byte")
    fails("dup", gguf({ infos = { info("t", { 1 }, 0, 0), info("t", { 1 }, 0, 32) }, data = string.rep("\0", 36) }),
      "tensor \"t\" appears twice")
  end)

  it("bad alignment", function()
    fails("align3", gguf({ kvs = { kv("general.alignment", 4, string.pack("<I4", 3)) } }),
      "general.alignment 3 is not a power of two")
    fails("align0", gguf({ kvs = { kv("general.alignment", 4, string.pack("<I4", 0)) } }),
      "general.alignment 0 is not a power of two")
    fails("alignty", gguf({ kvs = { kv("general.alignment", 8, str("64")) } }),
      "key \"general.alignment\" must be a uint32, not string")
    fails("offalign", gguf({ infos = { info("t", { 1 }, 0, 4) }, data = string.rep("\0", 8) }),
      "tensor \"t\": offset 4 is not a multiple of the alignment 32")
  end)

  it("arrays nested too deep", function()
    local deep = string.pack("<I4I8", 9, 1):rep(100) .. string.pack("<I4I8", 0, 0)
    fails("deep", gguf({ kvs = { kv("d", 9, deep) } }), "key \"d\": array item 1: arrays nested more than 64 deep$")
  end)

  it("seeded byte mutations: errors or full reads, never a crash", function()
    local v = valid()
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    end
    local opened = 0
    for i = 1, 600 do
      local b = { v:byte(1, -1) }
      for _ = 1, 1 + rnd(3) do
        local at = 1 + rnd(#b)
        local how = rnd(3)
        if how == 0 then b[at] = b[at] ~ (1 << rnd(8))
        elseif how == 1 then b[at] = 0xff
        else b[at] = rnd(256) end
      end
      local s = {}
      for k = 1, #b, 4096 do s[#s + 1] = string.char(table.unpack(b, k, math.min(k + 4095, #b))) end
      if not try("mut" .. (i % 8), table.concat(s)) then opened = opened + 1 end
    end
    assert.is_true(opened > 0)
  end)
end)
