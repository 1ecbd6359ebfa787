-- A TF bundle opens through its compact index (issue 13 item 4): tensors
-- are lazy handles made on first use, meta.entries is read from the index
-- when asked. What a user sees must be what the eager reader (core.read
-- with format "tf", every tensor and meta record made at once) gives.
-- Fixtures: bundles built by hand (spec/tf_helper.lua) and the real
-- checkpoints under ../shared/fixtures/real.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"
local T = require "tf_helper"

local REAL = {
  "tf_ckpt_v2/tf2onnx-regression/model",
  "savedmodel/genomic-gaps-sharded-tf2/variables/variables",
  "savedmodel/tf-rust-regression_savedmodel-tf2.5/variables/variables",
}

-- a: float32 [2, 2] (shard 0, offset 4); b: float32 [] (offset 0);
-- s: two strings; it: a variant (skipped); w: partitioned [2, 1].
local function build(dir, corrupt_a)
  local a = string.pack("<ffff", 1, 2, 3, 4)
  local b = string.pack("<f", 9)
  local sb, sc = T.strings({ "x", "yz" })
  local key1 = core.testing.tf_slice_key("w", { 0, 0 }, { 1, -1 })
  local key2 = core.testing.tf_slice_key("w", { 1, 0 }, { 1, -1 })
  local w1, w2 = string.pack("<f", 5), string.pack("<f", 6)
  local shard = b .. (corrupt_a and string.pack("<ffff", 1, 2, 3, 5) or a) .. sb .. w1 .. w2
  return T.write(dir, {
    a = T.entry({ dtype = T.DT.float, shape = { 2, 2 }, offset = #b, size = #a, crc = T.crc(a) }),
    b = T.plain(T.DT.float, {}, b, 0),
    s = T.entry({ dtype = T.DT.string, shape = { 2 }, offset = #b + #a, size = #sb, crc = sc }),
    it = T.entry({ dtype = T.DT.variant, shape = {}, size = 0 }),
    w = T.entry({ dtype = T.DT.float, shape = { 2, 1 }, slices = {
      { start = { 0, 0 }, length = { 1, -1 } }, { start = { 1, 0 }, length = { 1, -1 } } } }),
    [key1] = T.plain(T.DT.float, { 1, 1 }, w1, #b + #a + #sb),
    [key2] = T.plain(T.DT.float, { 1, 1 }, w2, #b + #a + #sb + 4),
  }, { shard })
end

local function entries_of(meta)
  local out, n = {}, 0
  for k, v in pairs(meta.entries) do
    out[k] = { shard_id = v.shard_id, offset = v.offset, size = v.size,
               crc32c = v.crc32c, dtype = v.dtype }
    n = n + 1
  end
  return out, n
end

describe("tf compact index", function()
  after_each(H.cleanup)

  it("gives the names, tensors and meta the eager reader gives", function()
    local p = build(H.tmpdir())
    local m = graft.open(p)
    local et, en, emeta = core.read(p, "tf")
    assert.same(en, graft.names(m))
    assert.same({ "b", "a", "s", "w" }, graft.names(m))
    for _, k in ipairs(en) do
      assert.equal(et[k].dtype, m[k].dtype, k)
      assert.same(et[k]:totable(), m[k]:totable(), k)
    end
    local meta = graft.meta(m)
    local got, n = entries_of(meta)
    assert.same(emeta.entries, got)
    assert.equal(4, n)   -- a, b, s and the skipped variant; not w
    assert.is_nil(meta.entries.w)
    assert.is_nil(meta.entries.nope)
    assert.is_nil(meta.entries[1])
    assert.equal("DT_VARIANT", meta.entries.it.dtype)
    assert.equal(meta.entries.a, meta.entries.a)   -- made once, then kept
    assert.same(emeta.partitioned, meta.partitioned)
    assert.same(emeta.skipped, meta.skipped)
    for _, k in ipairs({ "version", "num_shards", "endianness", "producer", "min_consumer" }) do
      assert.equal(emeta[k], meta[k], k)
    end
  end)

  it("reads fields without making a tensor; the bytes are checked on first use", function()
    local p = build(H.tmpdir(), true)
    local m = graft.open(p)
    assert.equal(m.a, m.a)
    assert.equal("float32", m.a.dtype)
    assert.same({ 2, 2 }, m.a.shape)
    assert.equal(2, m.a.ndim)
    assert.equal(4, m.a.numel)
    assert.equal(16, m.a.nbytes)
    assert.equal(1, m.a.block)
    assert.equal("Tensor(float32, {2,2})", tostring(m.a))
    assert.equal("Tensor(string, {2})", tostring(m.s))
    local err = select(2, pcall(function() return m.a:totable() end))
    assert.truthy(tostring(err):find(p .. ".index: key \"a\"", 1, true), err)
    assert.truthy(tostring(err):find("crc32c mismatch", 1, true), err)
    assert.same({ "x", "yz" }, m.s:totable())
    assert.same({ { 5 }, { 6 } }, m.w:totable())
    assert.equal(9, m.b:totable())
  end)

  it("closing the model releases made and unmade handles alike", function()
    local p = build(H.tmpdir())
    local m = graft.open(p)
    local kept = m.b:contiguous()
    assert.same({ "x", "yz" }, m.s:totable())   -- s is made, a is not
    graft.close(m)
    for _, k in ipairs({ "a", "b", "s", "w" }) do
      assert.truthy(core.is_released(m[k]), k)
      assert.equal("Tensor(released)", tostring(m[k]))
      local ok, err = pcall(function() return m[k].dtype end)
      assert.falsy(ok)
      assert.truthy(err:find("released", 1, true), err)
    end
    assert.equal(9, kept:totable())   -- a result outlives its source
    -- the index is freed once its handles and meta are gone
    m = nil
    collectgarbage()
    collectgarbage()
  end)

  it("opens the real bundles as the eager reader does", function()
    for _, rel in ipairs(REAL) do
      local src = H.real(rel)
      local m = graft.open(src)
      local et, en, emeta = core.read(src, "tf")
      assert.same(en, graft.names(m), rel)
      for _, k in ipairs(en) do
        assert.truthy(et[k]:equal(m[k]), rel .. ": " .. k)
      end
      assert.same(emeta.entries, (entries_of(graft.meta(m))), rel)
    end
  end)

  it("opens a bundle of scalars only (no dimension in the whole index)", function()
    -- fuzz/tfbundle.c found x->dims NULL here (UBSan: zero offset to NULL)
    local b = string.pack("<f", 2.5)
    local p = T.write(H.tmpdir(), { s = T.plain(T.DT.float, {}, b, 0) }, { b })
    local m = graft.open(p)
    assert.same({}, m.s.shape)
    assert.equal(2.5, m.s:totable())
  end)

  it("a handle made from a bundle saves like any tensor", function()
    local p = build(H.tmpdir())
    local m = graft.open(p)
    local out = H.tmpdir() .. "/x.safetensors"
    graft.save(out, { a = m.a, b = m.b })
    local r = graft.open(out)
    assert.same({ { 1, 2 }, { 3, 4 } }, r.a:totable())
    assert.equal(9, r.b:totable())
  end)
end)
