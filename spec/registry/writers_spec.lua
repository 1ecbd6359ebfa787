-- Writers: every format graft.save writes is either a row of the C
-- registry (src/formats/format.c, reached through graft.core.write) or
-- assembled in Lua from such writers, and no format has a write binding of
-- its own beside core.write. Also the typed inputs of the TF bundle, graph
-- patch and GGUF rows (plan, base, header) through core.write.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

-- Formats written by Lua code over other writers, by design: the C rows
-- they rest on, and how.
local ASSEMBLED = {
  savedmodel = { rows = { "tf" },
    how = "base's files copied, variables/ a tf bundle (formats/tfsaved.lua)" },
  keras = { rows = { "hdf5" }, how = "a Keras 2 layout for the hdf5 writer (formats/keras_write.lua)" },
  keras3 = { rows = { "hdf5" }, how = "a Keras 3 layout for the hdf5 writer (formats/keras_write.lua)" },
  keras_zip = { rows = { "hdf5" },
    how = "model.weights.h5 by the hdf5 writer, zipped with config.json by core.zip_write" },
  tfjs = { rows = {}, how = "model.json and shard bytes by core.write_file (formats/tfjs.lua)" },
}

-- graft.core functions that write files, beside the registry's core.write.
local FILE_WRITERS = {
  write = "the registry's writers",
  write_file = "small files (indexes, state files) committed atomically",
  zip_write = "a stored zip of members",
  safetensors_write_set = "a sharded safetensors checkpoint committed as a set",
}

local function c_rows()
  local c = {}
  for _, row in ipairs(core.formats()) do c[row.name] = row end
  return c
end

describe("writers", function()
  it("every writable format is a C registry writer or assembled in Lua from them", function()
    local c = c_rows()
    local lua = {}
    for _, f in ipairs(graft.formats()) do
      lua[f.name] = f
      if f.write then
        local a = ASSEMBLED[f.name]
        if a then
          for _, row in ipairs(a.rows) do
            assert.is_true(c[row] and c[row].write, f.name .. " rests on " .. row)
          end
        else
          assert.is_true(c[f.name] and c[f.name].write, f.name .. " has no C writer row")
        end
      end
    end
    -- the exceptions stay exceptions: writable, and without a writer row
    for name in pairs(ASSEMBLED) do
      assert.is_true(lua[name] and lua[name].write, name)
      assert.is_falsy(c[name] and c[name].write, name .. " has a C writer: drop it from ASSEMBLED")
    end
    -- and every C writer is some format's save
    for name, row in pairs(c) do
      if row.write then assert.is_true(lua[name] and lua[name].write, name) end
    end
  end)

  it("core has no write binding but core.write and the listed file writers", function()
    for k, v in pairs(core) do
      if type(v) == "function" and (k:find("write", 1, true) or k:find("patch", 1, true)) then
        assert.truthy(FILE_WRITERS[k], "core." .. k)
      end
    end
    assert.is_nil(core.tf_write)
    assert.is_nil(core.tfgraph_patch)
    assert.is_nil(core.gguf_write)
    -- and the Lua modules call no other
    local p = io.popen("find lua -name '*.lua' | sort")
    for file in p:lines() do
      for fn in H.read(file):gmatch("core%.([%w_]+)%s*%(") do
        if fn:find("write", 1, true) or fn:find("patch", 1, true) then
          assert.truthy(FILE_WRITERS[fn], file .. ": core." .. fn)
        end
      end
    end
    p:close()
  end)

  it("tf, graphdef and gguf take their typed inputs plan, base and header", function()
    local c = c_rows()
    assert.are.equal("plan", c.tf.input)
    assert.are.equal("base", c.graphdef.input)
    assert.are.equal("header", c.gguf.input)
  end)
end)

describe("core.write typed inputs", function()
  after_each(H.cleanup)

  it("plan: a TF bundle's shard count and each tensor's shard", function()
    local dir = H.tmpdir()
    local t = { a = graft.tensor({ 1, 2 }), b = graft.tensor({ 3, 4, 5 }) }
    core.write(dir .. "/ck", "tf", { "a", "b" }, t, { plan = { num_shards = 2, shard_of = { b = 1 } } })
    assert.are.same({ "ck.data-00000-of-00002", "ck.data-00001-of-00002", "ck.index" }, H.ls(dir))
    local m = graft.open(dir .. "/ck")
    assert.are.same({ 3, 4, 5 }, m.b:totable())
    assert.are.equal(0, graft.meta(m).entries.a.shard_id)
    assert.are.equal(1, graft.meta(m).entries.b.shard_id)
    -- without a plan: one shard
    core.write(dir .. "/one", "tf", { "a" }, t)
    assert.truthy(io.open(dir .. "/one.data-00000-of-00001"))
    local err = H.raises(function()
      core.write(dir .. "/bad", "tf", { "a" }, t, { plan = { num_shards = 0 } })
    end)
    assert.truthy(err:find("graft: " .. dir .. "/bad: num_shards must be in [1, 100000]", 1, true), err)
    err = H.raises(function()
      core.write(dir .. "/bad", "tf", { "a" }, t, { plan = { num_shards = 2, shard_of = { a = 2 } } })
    end)
    assert.truthy(err:find('tensor "a": shard 2 is not in [0, 2)', 1, true), err)
    err = H.raises(function() core.write(dir .. "/bad", "tf", { "a" }, t, { base = "x" }) end)
    assert.truthy(err:find('format tf takes no option "base"', 1, true), err)
  end)

  it("base: the graph a patched GraphDef copies, named when it is missing", function()
    local dir = H.tmpdir()
    local t = { w = graft.tensor({ 1, 2 }) }
    local err = H.raises(function()
      core.write(dir .. "/o.pb", "graphdef", { "w" }, t, { base = dir .. "/none.pb" })
    end)
    assert.truthy(err:find("graft: " .. dir .. "/none.pb: ", 1, true), err)
    assert.falsy(err:find("o.pb", 1, true), err)
    err = H.raises(function() core.write(dir .. "/o.pb", "graphdef", { "w" }, t) end)
    assert.truthy(err:find("no base graph given", 1, true), err)
    assert.are.same({}, H.ls(dir))
  end)

  it("header: GGUF key/values in order, stored types and alignment", function()
    local dir = H.tmpdir()
    local t = { w = graft.zeros({ 1, 32 }), n = graft.tensor({ 1 }, "int32") }
    core.write(dir .. "/a.gguf", "gguf", { "w", "n" }, t, { header = {
      kv = { { key = "general.name", type = "string", value = "x" },
             { key = "general.alignment", type = "uint32", value = 64 } },
      types = { w = "q8_0" }, alignment = 64 } })
    local m = graft.open(dir .. "/a.gguf")
    local meta = graft.meta(m)
    assert.are.same({ "general.name", "general.alignment" }, { meta.kv[1].key, meta.kv[2].key })
    assert.are.equal(64, meta.alignment)
    assert.are.equal("q8_0", m.w.dtype)
    assert.are.equal("int32", m.n.dtype)
    -- without a header: no key/values, own dtypes, alignment 32
    core.write(dir .. "/b.gguf", "gguf", { "w" }, t)
    meta = graft.meta(graft.open(dir .. "/b.gguf"))
    assert.are.same({}, meta.kv)
    assert.are.equal(32, meta.alignment)
    local err = H.raises(function()
      core.write(dir .. "/c.gguf", "gguf", { "w" }, t, { header = { alignment = 0 } })
    end)
    assert.truthy(err:find("graft: " .. dir .. "/c.gguf: alignment 0 out of range", 1, true), err)
  end)
end)
