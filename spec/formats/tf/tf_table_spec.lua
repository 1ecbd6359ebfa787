-- The SSTable of TF .index files: real tables (raw and snappy blocks),
-- tables graft builds (several blocks, restart points, TF's index
-- separators), and rebuilding every uncompressed real table byte for byte.
local core = require "graft.core"
local H = require "helper"

local UNCOMPRESSED = {
  "tf_ckpt_v2/tf2onnx-regression/model.index",
  "savedmodel/tf2onnx-regression/variables/variables.index",
  "savedmodel/tf-serving-saved_model_half_plus_two_mkl/00000123/variables/variables.index",
  "savedmodel/tf-serving-saved_model_counter/00000123/variables/variables.index",
  "savedmodel/tf-rust-regression_savedmodel-tf2.5/variables/variables.index",
  "savedmodel/genomic-gaps-sharded-tf2/variables/variables.index",
  "tf_meta/session_bundle_half_plus_two/00000123/export-00000-of-00001",
}
local SNAPPY = {
  "savedmodel/tf-serving-saved_model_half_plus_two_cpu/00000123/variables/variables.index",
  "savedmodel/tf-serving-saved_model_half_plus_two_tf2_cpu/00000123/variables/variables.index",
}

local function write(dir, bytes)
  local p = dir .. "/t.index"
  H.write(p, bytes)
  return p
end

describe("tf table", function()
  after_each(H.cleanup)

  it("reads the keys of real uncompressed tables in order, header first", function()
    local keys, _, info = core.testing.tftable_read(H.real(UNCOMPRESSED[1]))
    assert.same({ "", "W", "b" }, keys)
    assert.equal(0, info.snappy_blocks)
    assert.equal(1, info.data_blocks)
    keys = core.testing.tftable_read(H.real(UNCOMPRESSED[6]))
    assert.equal(68, #keys)   -- the header and 67 entries
    for i = 2, #keys do assert.truthy(keys[i - 1] < keys[i]) end
  end)

  it("reads the snappy-compressed real tables", function()
    local keys, values, info = core.testing.tftable_read(H.real(SNAPPY[1]))
    assert.same({ "", "a", "a2", "b", "c", "c2" }, keys)
    assert.equal(1, info.snappy_blocks)
    assert.equal("\8\1\26\2\8\1", values[1])   -- num_shards 1, producer 1
    keys, _, info = core.testing.tftable_read(H.real(SNAPPY[2]))
    assert.equal(1, info.snappy_blocks)
    assert.same({ "", "_CHECKPOINTABLE_OBJECT_GRAPH", "a/.ATTRIBUTES/VARIABLE_VALUE",
      "b/.ATTRIBUTES/VARIABLE_VALUE", "c/.ATTRIBUTES/VARIABLE_VALUE" }, keys)
  end)

  it("rebuilds every uncompressed real table byte for byte", function()
    for _, rel in ipairs(UNCOMPRESSED) do
      local p = H.real(rel)
      local keys, values = core.testing.tftable_read(p)
      assert.equal(H.hex(H.read(p)), H.hex(core.testing.tftable_build(keys, values)), rel)
    end
  end)

  it("builds several data blocks with restart points and reads them back", function()
    local dir = H.tmpdir()
    local keys, values = {}, {}
    for i = 1, 500 do
      keys[i] = string.format("layer%04d/kernel", i)
      values[i] = string.rep(string.char(i % 256), i % 37)
    end
    for _, interval in ipairs({ 1, 3, 16 }) do
      local t = core.testing.tftable_build(keys, values, { block_size = 512, restart_interval = interval })
      local k2, v2, info = core.testing.tftable_read(write(dir, t))
      assert.same(keys, k2)
      assert.same(values, v2)
      assert.truthy(info.data_blocks > 10)
    end
  end)

  it("flushes a block before an entry of twice the block size", function()
    local dir = H.tmpdir()
    local t = core.testing.tftable_build({ "a", "b", "c" }, { "x", string.rep("y", 2048), "z" },
      { block_size = 1024 })
    local _, v, info = core.testing.tftable_read(write(dir, t))
    assert.equal(2048, #v[2])
    assert.equal(3, info.data_blocks)
  end)

  it("writes TF's index separators: shortest separator and short successor", function()
    -- One entry per block: the index keys are "b" (between "abc" and "c..")
    -- and the successor of the last key.
    local t = core.testing.tftable_build({ "abc", "cde" }, { string.rep("x", 300), string.rep("y", 300) },
      { block_size = 256 })
    assert.truthy(t:find("%z\1[\2-\4]b"), "separator of abc / cde is b")
    assert.truthy(t:find("%z\1[\2-\4]d"), "successor of cde is d")
  end)

  it("writes snappy blocks when they save an eighth, as TF does", function()
    local dir = H.tmpdir()
    local keys, values = { "" }, { "hdr" }
    for i = 1, 50 do keys[#keys + 1] = "k" .. string.format("%03d", i); values[#values + 1] = string.rep("abcd", 40) end
    local t = core.testing.tftable_build(keys, values, { snappy = true })
    local k2, v2, info = core.testing.tftable_read(write(dir, t))
    assert.same(keys, k2)
    assert.same(values, v2)
    assert.equal(1, info.snappy_blocks)
    assert.truthy(#t < #core.testing.tftable_build(keys, values))
  end)

  it("refuses keys that do not strictly increase", function()
    local err = H.raises(function() core.testing.tftable_build({ "b", "a" }, { "", "" }) end)
    assert.truthy(err:find('key "a"', 1, true), err)
    err = H.raises(function() core.testing.tftable_build({ "a", "a" }, { "", "" }) end)
    assert.truthy(err:find("increasing", 1, true), err)
  end)

  it("builds and reads an empty table", function()
    local dir = H.tmpdir()
    local keys = core.testing.tftable_read(write(dir, core.testing.tftable_build({}, {})))
    assert.same({}, keys)
  end)
end)
