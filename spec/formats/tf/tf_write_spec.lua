-- Writing tensor bundles: rewriting every uncompressed real checkpoint
-- reproduces its .index and .data bytes; graft-written bundles read back
-- with their blocks, header and crc32c checked; num_shards; the
-- `checkpoint` state file; partitioned variables and big-endian bundles
-- (built by hand, TF is not installable) read back as TF defines them.
local graft = require "graft"
local H = require "helper"
local T = require "tf_helper"

local REAL = {
  "tf_ckpt_v2/tf2onnx-regression/model",
  "savedmodel/tf2onnx-regression/variables/variables",
  "savedmodel/tf-serving-saved_model_half_plus_two_mkl/00000123/variables/variables",
  "savedmodel/tf-serving-saved_model_counter/00000123/variables/variables",
  "savedmodel/tf-rust-regression_savedmodel-tf2.5/variables/variables",
  "savedmodel/genomic-gaps-sharded-tf2/variables/variables",
}

local function data_files(prefix, n)
  local t = {}
  for k = 0, n - 1 do t[#t + 1] = prefix .. string.format(".data-%05d-of-%05d", k, n) end
  return t
end

describe("tf bundle writer", function()
  after_each(H.cleanup)

  it("rewrites every uncompressed real bundle byte for byte", function()
    for _, rel in ipairs(REAL) do
      local src = H.real(rel)
      local m = graft.open(src)
      local n = graft.meta(m).num_shards
      local out = H.tmpdir() .. "/ckpt"
      graft.save(out, m, { format = "tf", checkpoint_state = false })
      assert.equal(H.hex(H.read(src .. ".index")), H.hex(H.read(out .. ".index")), rel)
      local want, got = data_files(src, n), data_files(out, n)
      for k = 1, n do
        assert.truthy(H.read(want[k]) == H.read(got[k]), rel .. " shard " .. (k - 1))
      end
    end
  end)

  it("writes every dtype and strings, and reads them back with crc32c checked", function()
    local dir = H.tmpdir()
    local t = {
      f32 = graft.tensor({ { 1.5, -2 }, { 3, 4 } }, "float32"),
      f64 = graft.tensor({ 1e300, -0.0 }, "float64"),
      f16 = graft.tensor({ 1, 65504 }, "float16"),
      bf16 = graft.tensor({ 1, -3 }, "bfloat16"),
      i64 = graft.tensor({ -9007199254740993, 7 }, "int64"),
      i32 = graft.tensor({ -1, 2 }, "int32"),
      i16 = graft.tensor({ -1, 2 }, "int16"),
      i8 = graft.tensor({ -1, 2 }, "int8"),
      u8 = graft.tensor({ 255, 2 }, "uint8"),
      u16 = graft.tensor({ 65535 }, "uint16"),
      u32 = graft.tensor({ 4294967295 }, "uint32"),
      u64 = graft.tensor({ 1 }, "uint64"),
      b = graft.tensor({ true, false }, "bool"),
      empty = graft.zeros({ 0, 3 }, "float32"),
      w = graft.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32"):t(),
    }
    graft.save(dir .. "/all", t, { format = "tf" })
    assert.equal(15, graft.core.tf_verify(dir .. "/all"))
    local m = graft.open(dir .. "/all")
    for k, v in pairs(t) do
      assert.equal(v.dtype, m[k].dtype, k)
      assert.same(v.shape, m[k].shape, k)
      assert.same(v:totable(), m[k]:totable(), k)
    end
    local keys = graft.core.testing.tftable_read(dir .. "/all.index")
    assert.equal("", keys[1])
    for i = 2, #keys do assert.truthy(keys[i - 1] < keys[i]) end
  end)

  it("reads string tensors TF's way and writes them back byte for byte", function()
    local dir = H.tmpdir()
    local list = { "", "h\195\169llo", string.rep("x", 300), "a\0b" }
    local sb, sc = T.strings(list)
    local one, oc = T.strings({ "scalar string" })
    local p = T.write(dir, {
      s = T.entry({ dtype = 7, shape = { 2, 2 }, size = #sb, crc = sc }),
      s0 = T.entry({ dtype = 7, shape = {}, offset = #sb, size = #one, crc = oc }),
    }, { sb .. one })
    local m = graft.open(p)
    assert.equal("string", m.s.dtype)
    assert.same({ { list[1], list[2] }, { list[3], list[4] } }, m.s:totable())
    assert.equal("scalar string", m.s0:totable())
    local out = H.tmpdir() .. "/ckpt"
    graft.save(out, m, { format = "tf", checkpoint_state = false })
    assert.equal(H.hex(H.read(p .. ".index")), H.hex(H.read(out .. ".index")))
    assert.equal(H.hex(H.read(p .. ".data-00000-of-00001")), H.hex(H.read(out .. ".data-00000-of-00001")))
    -- A transposed view of strings is written in its own row-major order.
    graft.save(out, { t = m.s:t() }, { format = "tf", checkpoint_state = false })
    assert.same({ { list[1], list[3] }, { list[2], list[4] } }, graft.open(out).t:totable())
  end)

  it("a new shard count removes the old checkpoint's data files it does not overwrite", function()
    local dir = H.tmpdir()
    local t = {}
    for i = 1, 10 do t["v" .. i] = graft.tensor({ i, i + 0.5, i * 2 }, "float32") end
    graft.save(dir .. "/m", t, { format = "tf", num_shards = 3 })
    graft.save(dir .. "/m", t, { format = "tf", num_shards = 2 })
    for _, f in ipairs(data_files(dir .. "/m", 3)) do assert.is_false(H.exists(f), f) end
    for _, f in ipairs(data_files(dir .. "/m", 2)) do assert.truthy(H.exists(f), f) end
    assert.equal(10, graft.core.tf_verify(dir .. "/m"))
    -- the same count: its files are the new ones, nothing else goes
    graft.save(dir .. "/m", t, { format = "tf", num_shards = 2 })
    for _, f in ipairs(data_files(dir .. "/m", 2)) do assert.truthy(H.exists(f), f) end
    assert.equal(10, graft.core.tf_verify(dir .. "/m"))
  end)

  it("splits the data into num_shards files and reads them back", function()
    local dir = H.tmpdir()
    local t = {}
    for i = 1, 10 do t["v" .. i] = graft.tensor({ i, i + 0.5, i * 2 }, "float32") end
    graft.save(dir .. "/m", t, { format = "tf", num_shards = 3 })
    for _, f in ipairs(data_files(dir .. "/m", 3)) do assert.truthy(H.exists(f), f) end
    local m = graft.open(dir .. "/m.index")
    local meta = graft.meta(m)
    assert.equal(3, meta.num_shards)
    local used = {}
    for k, v in pairs(t) do
      assert.same(v:totable(), m[k]:totable())
      used[meta.entries[k].shard_id] = true
    end
    assert.truthy(used[0] and used[1] and used[2])
    assert.equal(10, graft.core.tf_verify(dir .. "/m"))
  end)

  it("writes the `checkpoint` state file, keeping earlier checkpoints listed", function()
    local dir = H.tmpdir()
    local t = { x = graft.tensor({ 1 }, "float32") }
    graft.save(dir .. "/ckpt-1", t, { format = "tf" })
    graft.save(dir .. "/ckpt-2", { x = graft.tensor({ 2 }, "float32") }, { format = "tf" })
    local st = graft.tf.parse_state(H.read(dir .. "/checkpoint"), "checkpoint")
    assert.equal("ckpt-2", st.model_checkpoint_path)
    assert.same({ "ckpt-1", "ckpt-2" }, st.all_model_checkpoint_paths)
    -- The directory opens the latest.
    assert.same({ 2 }, graft.open(dir).x:totable())
    -- A directory as the target gets the prefix ckpt.
    local d2 = H.tmpdir()
    graft.save(d2, t, { format = "tf" })
    assert.truthy(H.exists(d2 .. "/ckpt.index"))
    assert.same({ 1 }, graft.open(d2).x:totable())
  end)

  it("parses and formats CheckpointState text with escapes and timestamps", function()
    local st = graft.tf.parse_state([[
model_checkpoint_path: "/abs/ckpt-\"3\""
all_model_checkpoint_paths: "ckpt-2"
all_model_checkpoint_paths: "/abs/ckpt-\"3\""
all_model_checkpoint_timestamps: 1690000000.5
last_preserved_timestamp: 1689999999.25
]], "x")
    assert.equal('/abs/ckpt-"3"', st.model_checkpoint_path)
    assert.same({ "ckpt-2", '/abs/ckpt-"3"' }, st.all_model_checkpoint_paths)
    assert.same({ 1690000000.5 }, st.all_model_checkpoint_timestamps)
    assert.equal(1689999999.25, st.last_preserved_timestamp)
    local again = graft.tf.parse_state(graft.tf.format_state(st), "y")
    assert.same(st, again)
    local err = H.raises(function() graft.tf.parse_state("bogus: 1\n", "ck") end)
    assert.truthy(err:find("ck: line 1", 1, true), err)
  end)

  it("reads a partitioned variable from its slice entries", function()
    -- w: float32 [4, 3] saved as rows 0..1 (shard 0) and rows 2..3 (shard 1).
    local dir = H.tmpdir()
    local top = string.pack("<ffffff", 1, 2, 3, 4, 5, 6)
    local bottom = string.pack("<ffffff", 7, 8, 9, 10, 11, 12)
    local s1 = { start = { 0, 0 }, length = { 2, -1 } }
    local s2 = { start = { 2, 0 }, length = { 2, -1 } }
    local key1 = graft.core.testing.tf_slice_key("w", { 0, 0 }, { 2, -1 })
    local key2 = graft.core.testing.tf_slice_key("w", { 2, 0 }, { 2, -1 })
    -- docs/formats/tf.md#slice-keys: variable w, rows 5..9 of [10,4] -> 00 77 00 01 01 02 85 85 80 7F
    assert.equal("0077000101028585807f", H.hex(graft.core.testing.tf_slice_key("w", { 5, 0 }, { 5, -1 })))
    local p = T.write(dir, {
      w = T.entry({ dtype = 1, shape = { 4, 3 }, slices = { s1, s2 } }),
      [key1] = T.plain(1, { 2, 3 }, top, 0, 0),
      [key2] = T.plain(1, { 2, 3 }, bottom, 0, 1),
      b = T.plain(1, { 1 }, string.pack("<f", 9), #top, 0),
    }, { top .. string.pack("<f", 9), bottom })
    local m = graft.open(p)
    assert.same({ "b", "w" }, graft.names(m))
    assert.same({ { 1, 2, 3 }, { 4, 5, 6 }, { 7, 8, 9 }, { 10, 11, 12 } }, m.w:totable())
    assert.equal(2, #graft.meta(m).partitioned.w)
    assert.equal(3, graft.core.tf_verify(p))
  end)

  it("reads a big-endian bundle (crc over the stored bytes, values swapped)", function()
    local dir = H.tmpdir()
    local data = string.pack(">fi4", 1.5, -7)
    local p = T.write(dir, {
      f = T.plain(1, {}, data:sub(1, 4), 0),
      i = T.plain(3, {}, data:sub(5, 8), 4),
    }, { data }, { big = true })
    local m = graft.open(p)
    assert.equal("big", graft.meta(m).endianness)
    assert.equal(1.5, m.f:totable())
    assert.equal(-7, m.i:totable())
  end)

  it("leaves variant tensors out and lists them in meta.skipped", function()
    local dir = H.tmpdir()
    local p = T.write(dir, {
      it = T.entry({ dtype = 21, shape = {}, size = 0 }),
      x = T.plain(1, {}, string.pack("<f", 1), 0),
    }, { string.pack("<f", 1) })
    local m = graft.open(p)
    assert.same({ "x" }, graft.names(m))
    assert.equal("DT_VARIANT", graft.meta(m).skipped.it)
  end)

  it("writes data first and the index last; a failed save leaves no index", function()
    local dir = H.tmpdir()
    local bad = graft.tensor({ 0 / 0 }, "float32"):cast("int32")   -- fails when written
    local err = H.raises(function()
      graft.save(dir .. "/x", { a = graft.tensor({ 1 }, "float32"), b = bad }, { format = "tf" })
    end)
    assert.truthy(err:find("x.data-00000-of-00001", 1, true), err)
    assert.falsy(H.exists(dir .. "/x.index"))
    assert.same({}, H.ls(dir))
  end)

  it("refuses names TF cannot hold and writing over the bundle being read", function()
    local dir = H.tmpdir()
    local err = H.raises(function() graft.save(dir .. "/x", { [""] = graft.tensor({ 1 }) }, { format = "tf" }) end)
    assert.truthy(err:find("header", 1, true), err)
    graft.save(dir .. "/x", { a = graft.tensor({ 1 }) }, { format = "tf" })
    local m = graft.open(dir .. "/x")
    err = H.raises(function() graft.save(dir .. "/x", m, { format = "tf" }) end)
    assert.truthy(err:find("x.data-00000-of-00001", 1, true), err)
  end)
end)
