-- TensorFlow bundles and tables that are broken or hostile. Each must raise
-- a Lua error naming the file (and the key where there is one) and saying
-- what is wrong; none may crash or read outside the files.
local graft = require "graft"
local H = require "helper"
local T = require "tf_helper"

local function refused(fn, ...)
  local err = H.raises(fn)
  for _, s in ipairs({ ... }) do
    assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
  end
  return err
end

-- A good one-tensor bundle: w = float32 [2] {1, 2}.
local function good(dir)
  local data = string.pack("<ff", 1, 2)
  return T.write(dir, { w = T.plain(1, { 2 }, data, 0) }, { data }), data
end

local function patch(path, at, bytes)
  local s = H.read(path)
  H.write(path, s:sub(1, at - 1) .. bytes .. s:sub(at + #bytes))
end

describe("bad tf input", function()
  after_each(H.cleanup)

  it("wrong magic", function()
    local dir = H.tmpdir()
    local p = good(dir)
    local s = H.read(p .. ".index")
    H.write(p .. ".index", s:sub(1, -2) .. "\0")
    refused(function() graft.open(p) end, p .. ".index", "wrong magic")
  end)

  it("truncated footer", function()
    local dir = H.tmpdir()
    local p = good(dir)
    H.write(p .. ".index", H.read(p .. ".index"):sub(-30))
    refused(function() graft.open(p, { format = "tf" }) end, p .. ".index", "footer")
  end)

  it("a block handle past the end", function()
    local dir = H.tmpdir()
    local p = good(dir)
    local s = H.read(p .. ".index")
    -- Footer: metaindex handle then index handle; make the index size huge.
    local foot = #s - 48
    local i = foot + 1
    local function skip() while s:byte(i) >= 0x80 do i = i + 1 end i = i + 1 end
    skip(); skip(); skip()   -- metaindex off, size; index off
    H.write(p .. ".index", s:sub(1, i - 1) .. "\255\255\3" .. s:sub(i + 3))
    refused(function() graft.open(p) end, p .. ".index", "runs past the end")
  end)

  it("a block crc mismatch", function()
    local dir = H.tmpdir()
    local p = good(dir)
    -- Byte 5 is inside the key of the header entry's value (the data block).
    local s = H.read(p .. ".index")
    patch(p .. ".index", 5, string.char(s:byte(5) ~ 0x01))
    refused(function() graft.open(p) end, p .. ".index", "block at offset 0", "checksum mismatch")
  end)

  it("a corrupt snappy block", function()
    local dir = H.tmpdir()
    local data = string.pack("<ff", 1, 2)
    local entries = {}
    for i = 1, 20 do entries["layer/" .. i] = T.plain(1, { 2 }, data, 0) end
    local p = T.write(dir, entries, { data }, { table = { snappy = true } })
    local keys, _, info = graft.core.testing.tftable_read(p .. ".index")
    assert.equal(21, #keys)
    assert.equal(1, info.snappy_blocks)
    -- Corrupt the snappy stream, then fix the trailer crc so only snappy
    -- can notice: the data block is first; its trailer follows it.
    local s = H.read(p .. ".index")
    local size = 0
    local foot = s:sub(-48)
    -- index handle -> read the index block's first entry handle instead:
    -- simpler: the data block ends where the metaindex block (8 bytes +
    -- trailer) starts, 13 bytes before the index block.
    local j = 1
    local function varint()
      local v, sh = 0, 0
      repeat local b = foot:byte(j); j = j + 1; v = v | ((b & 0x7F) << sh); sh = sh + 7 until b < 0x80
      return v
    end
    local moff = varint()
    size = moff - 5
    local block = s:sub(1, size)
    local bad = block:sub(1, 1) .. string.rep("\255", 6) .. block:sub(8)
    local crc = graft.core.testing.crc32c_mask(graft.core.testing.crc32c("\1", graft.core.testing.crc32c(bad)))
    H.write(p .. ".index", bad .. "\1" .. string.pack("<I4", crc) .. s:sub(size + 6))
    refused(function() graft.open(p) end, p .. ".index", "corrupt snappy")
  end)

  it("unsorted keys", function()
    local dir = H.tmpdir()
    local data = string.pack("<f", 1)
    -- Two blocks (block_size 1) whose keys go backwards across the boundary:
    -- built as two tables' worth by hand is hard, so swap the key bytes of a
    -- sorted table and fix the crc.
    local p = T.write(dir, { a1 = T.plain(1, {}, data, 0), a2 = T.plain(1, {}, data, 0) }, { data })
    local s = H.read(p .. ".index")
    local i1 = s:find("a1", 1, true)
    -- Entry a2 is stored as shared 1 + delta "2": make the delta "0" (a0 < a1).
    local e2 = s:find("\1\1", i1, true)
    assert.truthy(e2)
    local delta = e2 + 3
    assert.equal("2", s:sub(delta, delta))
    local moff = 0
    do
      local foot, j = s:sub(-48), 1
      local v, sh = 0, 0
      repeat local b = foot:byte(j); j = j + 1; v = v | ((b & 0x7F) << sh); sh = sh + 7 until b < 0x80
      moff = v
    end
    local block = s:sub(1, moff - 5)
    local nb = block:sub(1, delta - 1) .. "0" .. block:sub(delta + 1)
    local crc = graft.core.testing.crc32c_mask(graft.core.testing.crc32c("\0", graft.core.testing.crc32c(nb)))
    H.write(p .. ".index", nb .. "\0" .. string.pack("<I4", crc) .. s:sub(moff + 1))
    refused(function() graft.open(p) end, p .. ".index", 'key "a0"', "not sorted")
  end)

  it("an entry pointing past its shard", function()
    local dir = H.tmpdir()
    local data = string.pack("<ff", 1, 2)
    local p = T.write(dir, { w = T.plain(1, { 2 }, data, 4) }, { data })
    refused(function() graft.open(p) end, p .. ".index", 'key "w"', "past the end",
      "ckpt.data-00000-of-00001")
  end)

  it("a shard id past num_shards", function()
    local dir = H.tmpdir()
    local data = string.pack("<f", 1)
    local p = T.write(dir, { w = T.plain(1, {}, data, 0, 3) }, { data })
    refused(function() graft.open(p) end, 'key "w"', "shard_id 3")
  end)

  it("a missing shard", function()
    local dir = H.tmpdir()
    local data = string.pack("<f", 1)
    local p = T.write(dir, { w = T.plain(1, {}, data, 0, 1) }, { data }, { num_shards = 2 })
    refused(function() graft.open(p) end, "missing", "ckpt.data-00001-of-00002")
  end)

  it("an entry crc mismatch, when the tensor is first used and in graft verify", function()
    local dir = H.tmpdir()
    local p = good(dir)
    patch(p .. ".data-00000-of-00001", 1, "\9")
    local m = graft.open(p)   -- the index is fine
    refused(function() return m.w:totable() end, p .. ".index", 'key "w"', "crc32c mismatch")
    refused(function() graft.core.tf_verify(p) end, 'key "w"', "crc32c mismatch")
    local cli = require "graft.cli"
    local saved = io.stderr
    local msgs = {}
    io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do msgs[#msgs + 1] = s end end }
    local rc = cli.main({ "verify", p }, { write = function() end })
    io.stderr = saved
    assert.equal(2, rc)
    assert.truthy(table.concat(msgs):find("crc32c mismatch", 1, true))
  end)

  it("a size that does not match dtype and shape", function()
    local dir = H.tmpdir()
    local data = string.pack("<fff", 1, 2, 3)
    local p = T.write(dir, { w = T.plain(1, { 2 }, data, 0) }, { data })
    refused(function() graft.open(p) end, 'key "w"', "size 12")
  end)

  it("a string tensor whose lengths overrun", function()
    local dir = H.tmpdir()
    local sb = T.strings({ "abc", "de" })
    -- Claim the first string is 100 bytes; fix the length checksum so the
    -- overrun itself is what is caught.
    local lc = graft.core.testing.crc32c(string.pack("<I4I4", 100, 2))
    local body = T.varint(100) .. T.varint(2) .. string.pack("<I4", graft.core.testing.crc32c_mask(lc)) .. "abcde"
    local p = T.write(dir, { s = T.entry({ dtype = 7, shape = { 2 }, size = #body, crc = 0 }) }, { body })
    local m = graft.open(p)
    refused(function() return m.s:totable() end, p .. ".index", 'key "s"', "overrun")
    assert.truthy(#sb > 0)
  end)

  it("a string tensor whose length varints run off the entry", function()
    local dir = H.tmpdir()
    local body = "\255\255"
    local p = T.write(dir, { s = T.entry({ dtype = 7, shape = { 2 }, size = #body, crc = 0 }) }, { body })
    local m = graft.open(p)
    refused(function() return m.s:totable() end, 'key "s"', "run past the entry")
  end)

  it("no header entry, and a value that is not a BundleEntryProto", function()
    local dir = H.tmpdir()
    local data = string.pack("<f", 1)
    local p = T.write(dir, { w = T.plain(1, {}, data, 0) }, { data }, { no_header = true })
    refused(function() graft.open(p) end, "no header entry")
    local d2 = H.tmpdir()
    p = T.write(d2, { w = "\255\255\255" }, { data })
    refused(function() graft.open(p) end, 'key "w"', "not a BundleEntryProto")
  end)

  it("a bad restart array", function()
    local dir = H.tmpdir()
    local p = good(dir)
    local s = H.read(p .. ".index")
    -- The data block's last 4 bytes are its restart count; claim 1000.
    local foot, j, v, sh = s:sub(-48), 1, 0, 0
    repeat local b = foot:byte(j); j = j + 1; v = v | ((b & 0x7F) << sh); sh = sh + 7 until b < 0x80
    local block = s:sub(1, v - 5)
    local nb = block:sub(1, -5) .. string.pack("<I4", 1000)
    local crc = graft.core.testing.crc32c_mask(graft.core.testing.crc32c("\0", graft.core.testing.crc32c(nb)))
    H.write(p .. ".index", nb .. "\0" .. string.pack("<I4", crc) .. s:sub(v + 1))
    refused(function() graft.open(p) end, p .. ".index", "restart points")
  end)

  it("a garbage file and a prefix without an index", function()
    local dir = H.tmpdir()
    H.write(dir .. "/x.index", string.rep("\7", 100))
    refused(function() graft.open(dir .. "/x") end, "x.index", "wrong magic")
    refused(function() graft.open(dir .. "/nothing.index") end, "nothing.index")
  end)
end)
