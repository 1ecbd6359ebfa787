-- Torch7 .t7 bad input: truncations at every length, sizes and counts that
-- overrun, bad type tags, object indexes out of range or of the wrong
-- kind, tensors outside their storage, too many dimensions, deep nesting
-- and seeded byte mutations; the same for files of 4-byte longs (both byte
-- orders), whose long size is settled at the first header holding longs. Every outcome is a clear error naming the file
-- or a file that opens and reads fully; never a crash (this spec runs under
-- `make asan` too). Files are built here byte by byte (docs/formats/t7.md).
local graft = require "graft"
local H = require "helper"

local function i4(...) return string.pack("<" .. string.rep("i4", select("#", ...)), ...) end
local function i8(...) return string.pack("<" .. string.rep("i8", select("#", ...)), ...) end
local function str(s) return i4(#s) .. s end

local function torch_head(index, cls) return i4(4, index) .. str("V 1") .. str(cls) end
local function storage(index, vals)
  return torch_head(index, "torch.FloatStorage") .. i8(#vals) .. string.pack("<" .. string.rep("f", #vals), table.unpack(vals))
end
-- A FloatTensor of `size`/`stride` at 1-based `off` on `st` (bytes of a
-- storage object or of a reference).
local function tensor(index, size, stride, off, st)
  local b = { torch_head(index, "torch.FloatTensor"), i4(#size) }
  for _, v in ipairs(size) do b[#b + 1] = i8(v) end
  for _, v in ipairs(stride) do b[#b + 1] = i8(v) end
  b[#b + 1] = i8(off)
  b[#b + 1] = st
  return table.concat(b)
end
local function table_of(index, pairs_bytes, n) return i4(3, index, n) .. pairs_bytes end
local function key(s) return i4(2) .. str(s) end

local GOOD = table_of(1, key("a") .. tensor(2, { 2, 2 }, { 2, 1 }, 1, storage(3, { 1, 2, 3, 4 }))
  .. key("b") .. tensor(4, { 3 }, { 1 }, 2, i4(4, 3)), 2)

-- GOOD with 4-byte longs in byte order bo ("<" or ">"), plus a LongTensor
-- whose storage's elements are longs too, and a tds.Vec.
local function good4(bo)
  local function i(...) return string.pack(bo .. string.rep("i4", select("#", ...)), ...) end
  local function s(x) return i(#x) .. x end
  local function head(index, cls) return i(4, index) .. s("V 1") .. s(cls) end
  local function k(x) return i(2) .. s(x) end
  local fst = head(3, "torch.FloatStorage") .. i(4) .. string.pack(bo .. "ffff", 1, 2, 3, 4)
  local lst = head(6, "torch.LongStorage") .. i(3, -7, 0, 9)
  return i(3, 1, 4)
    .. k("a") .. head(2, "torch.FloatTensor") .. i(2, 2, 2, 2, 1, 1) .. fst
    .. k("b") .. head(4, "torch.FloatTensor") .. i(1, 3, 1, 2) .. i(4, 3)
    .. k("l") .. head(5, "torch.LongTensor") .. i(1, 2, 1, 2) .. lst
    .. k("v") .. head(7, "tds.Vec") .. i(2, 2) .. s("x") .. i(5, 1)
end

local dir = H.tmpdir()
local n = 0
local function file(bytes)
  n = n + 1
  local p = dir .. "/f" .. n .. ".t7"
  H.write(p, bytes)
  return p
end

-- Opens as t7 and reads every tensor; returns the error or nil.
local function try(bytes)
  local p = file(bytes)
  local ok, err = pcall(function()
    local m = graft.open(p, { format = "t7" })
    for _, name in ipairs(graft.names(m)) do m[name]:totable() end
  end)
  if ok then return nil end
  err = tostring(err)
  assert.is_truthy(err:find(p, 1, true), err)
  assert.is_truthy(err:match("^graft: "), err)
  return err
end

local function fails(bytes, pattern)
  local err = try(bytes)
  assert.is_truthy(err, "expected an error")
  assert.is_truthy(err:find(pattern), err)
end

describe("t7 bad input", function()
  it("the well-formed base file opens", function()
    assert.is_nil(try(GOOD))
    local m = graft.open(file(GOOD))
    assert.are.same({ 2, 3, 4 }, m.b:totable())
  end)

  it("every truncation is an error", function()
    for len = 0, #GOOD - 1 do
      assert.is_truthy(try(GOOD:sub(1, len)), "length " .. len)
    end
  end)

  it("trailing bytes are an error", function()
    fails(GOOD .. "x", "bytes after the object")
  end)

  it("bad type tags", function()
    fails(i4(99), "no type tag")
    fails(table_of(1, key("a") .. i4(-1), 1), "unknown type tag %-1")
  end)

  it("huge and negative sizes", function()
    fails(torch_head(1, "torch.FloatStorage") .. i8(1 << 61), "truncated")
    fails(torch_head(1, "torch.DoubleStorage") .. i8(-5), "bad storage size")
    fails(torch_head(1, "torch.FloatStorage") .. i8(0x7fffffffffffffff), "storage")
    fails(i4(2, 0x7fffffff) .. "abc", "truncated")
    fails(i4(2, -3), "negative length")
    fails(i4(3, 1, 0x7fffffff), "overruns")
    fails(torch_head(1, "tds.Vec") .. i8(1 << 40), "overruns")
  end)

  it("tensors outside their storage, bad dims, no storage", function()
    fails(tensor(1, { 5 }, { 1 }, 1, storage(2, { 1, 2, 3, 4 })), ".")
    fails(tensor(1, { 2 }, { 4 }, 1, storage(2, { 1, 2, 3, 4 })), ".")
    fails(tensor(1, { 2 }, { 1 }, 9, storage(2, { 1, 2, 3, 4 })), "storage offset")
    fails(tensor(1, { 2 }, { 1 }, 0, storage(2, { 1, 2, 3, 4 })), "storage offset")
    fails(tensor(1, { -2 }, { 1 }, 1, storage(2, { 1, 2 })), "negative size")
    fails(tensor(1, { 1 << 40, 1 << 40 }, { 1, 1 }, 1, storage(2, { 1 })), ".")
    fails(tensor(1, { 2 }, { 1 }, 1, i4(0)), "no storage")
    -- empty, but its other sizes overflow (found by fuzz/t7_fuzz.c)
    fails(tensor(1, { 0, 1 << 40, 1 << 40 }, { 1, 1, 1 }, 1, i4(0)), "size overflows")
    fails(i4(4, 1) .. str("V 1") .. str("torch.FloatTensor") .. i4(40), "dimensions")
    fails(i4(4, 1) .. str("V 1") .. str("torch.FloatTensor") .. i4(-1), "dimensions")
    -- a DoubleTensor on a FloatStorage
    fails(i4(4, 1) .. str("V 1") .. str("torch.DoubleTensor") .. i4(1) .. i8(1, 1, 1) .. storage(2, { 1 }),
      "float64 on a storage of float32")
  end)

  it("object indexes out of range or of another kind", function()
    fails(table_of(0, "", 0), "index 0 out of range")
    fails(table_of(-7, "", 0), "out of range")
    fails(table_of(1 << 30, "", 0), "out of range")
    -- a tensor whose storage is the table that holds it
    fails(table_of(1, key("t") .. tensor(2, { 1 }, { 1 }, 1, i4(4, 1)), 1), "another type")
    -- a table reference to a torch object's index
    fails(table_of(1, key("s") .. storage(2, { 1 }) .. key("r") .. i4(3, 2), 2), "another type")
    -- a tensor that is its own storage
    fails(tensor(1, { 1 }, { 1 }, 1, i4(4, 1)), "itself")
  end)

  it("odd keys (nil, huge numbers) are names, not crashes (found by fuzz/t7_fuzz.c)", function()
    local hash = torch_head(1, "tds.Hash") .. i8(2) .. i4(0) .. string.pack("<id", 1, 2.0)
      .. i4(1) .. string.pack("<d", -3.1e231) .. tensor(2, { 1 }, { 1 }, 1, storage(3, { 7 }))
    local m = graft.open(file(hash), { format = "t7" })
    assert.are.same({ "-3.0999999999999999e+231" }, graft.names(m))
  end)

  it("an object whose class is named t7.storage is an object, not a storage (found by fuzz/t7_fuzz.c)", function()
    -- standing alone: torch_head's state is a nil
    local m = graft.open(file(table_of(1, key("x") .. torch_head(2, "t7.storage") .. i4(0), 1)), { format = "t7" })
    assert.are.same({}, graft.names(m))
    -- as a tensor's storage
    fails(tensor(1, { 1 }, { 1 }, 1, torch_head(2, "t7.storage") .. i4(0)), "not a storage")
  end)

  it("deep nesting is capped", function()
    local depth = 5000
    local b = {}
    for i = 1, depth do b[#b + 1] = table_of(i, key("x"), 1) end
    b[#b + 1] = i4(0)
    fails(table.concat(b), "nested deeper")
  end)

  it("seeded byte mutations never crash", function()
    local rnd = 12345
    local function rand(k)
      rnd = (rnd * 1103515245 + 12345) % 2147483648
      return rnd % k
    end
    for _ = 1, 400 do
      local b = { GOOD:byte(1, -1) }
      for _ = 1, 1 + rand(4) do b[1 + rand(#b)] = rand(256) end
      try(string.char(table.unpack(b)))
    end
  end)

  it("files of 4-byte longs: read as such, every truncation an error, mutations no crash", function()
    for _, bo in ipairs({ "<", ">" }) do
      local good = good4(bo)
      local m = graft.open(file(good))
      assert.are.same({ 2, 3, 4 }, m.b:totable())
      assert.are.same({ 0, 9 }, m.l:totable())
      assert.are.equal(4, graft.meta(m).long_size)
      for len = 0, #good - 1 do
        assert.is_truthy(try(good:sub(1, len)), "length " .. len)
      end
      local rnd = 777
      local function rand(n)
        rnd = (rnd * 1103515245 + 12345) % 2147483648
        return rnd % n
      end
      for _ = 1, 300 do
        local b = { good:byte(1, -1) }
        for _ = 1, 1 + rand(4) do b[1 + rand(#b)] = rand(256) end
        try(string.char(table.unpack(b)))
      end
    end
  end)

  it("a failed read says which long size it used and how to force the other", function()
    -- GOOD cut inside its first tensor header reads as 8-byte longs
    fails(GOOD:sub(1, 101), "longs read as 8 bytes, as detected; the option long_size = 4 reads them as 4")
    -- a root storage whose first element is 0 (4-byte longs): its 8-byte
    -- reading runs past the end, so the probe cannot tell; forced, it opens
    local root = torch_head(1, "torch.FloatStorage") .. i4(3) .. string.pack("<fff", 0, 1, 2)
    fails(root, "long_size = 4 reads them as 4")
    local m = graft.open(file(root), { long_size = 4 })
    assert.are.same({ 0, 1, 2 }, m.storage:totable())
    -- a 4-byte file forced to 8, and the other way
    local err = H.raises(function() graft.open(file(good4("<")), { long_size = 8 }) end)
    assert.is_truthy(err:find("long_size = 8 given, but the file reads with 4-byte longs", 1, true), err)
    err = H.raises(function() graft.open(file(GOOD), { long_size = 4 }) end)
    assert.is_truthy(err:find("long_size = 4 given, but the file reads with 8-byte longs", 1, true), err)
    -- damaged whichever size: the forced size is named
    err = H.raises(function() graft.open(file(GOOD:sub(1, 150)), { long_size = 8 }) end)
    assert.is_truthy(err:find("(longs read as 8 bytes: long_size = 8)", 1, true), err)
  end)

  it("a file that is no t7 is not claimed", function()
    local p = dir .. "/plain.bin"
    H.write(p, "hello world, not a model\n")
    local err = H.raises(function() graft.open(p) end)
    assert.is_truthy(err:find("unrecognised format", 1, true), err)
  end)
end)
