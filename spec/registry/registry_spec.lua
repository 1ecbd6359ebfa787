-- The format registry: graft.formats() contents, the C registry behind it,
-- detection of every format, docs/API.md generated from it, and format
-- names kept inside the registry and the formats' own files.
local graft = require "graft"
local core = require "graft.core"
local options = require "graft.options"
local H = require "helper"

local ALL = { "npy", "npz", "onnx", "onnx_tensor", "graphdef", "metagraph", "savedmodel", "tf", "tf_v1", "hdf5",
              "keras", "keras3", "keras_zip", "tfjs", "safetensors", "safetensors_index", "torch",
              "pickle", "gguf", "t7" }

local function by_name()
  local out = {}
  for _, f in ipairs(graft.formats()) do out[f.name] = f end
  return out
end

describe("graft.formats()", function()
  it("lists every format in detection order with its facts", function()
    local names = {}
    for i, f in ipairs(graft.formats()) do
      names[i] = f.name
      assert.are.equal("string", type(f.family), f.name)
      assert.truthy(#f.description > 10, f.name)
      assert.are.equal("boolean", type(f.read), f.name)
      assert.are.equal("boolean", type(f.write), f.name)
      assert.are.equal("table", type(f.extensions), f.name)
    end
    assert.are.same(ALL, names)
    local f = by_name()
    assert.are.same({ "pt", "pth", "bin" }, f.torch.extensions)
    assert.are.same({ "weights.h5" }, f.keras3.extensions)
    assert.is_true(f.torch.write)
    assert.is_true(f.keras_zip.write)
    assert.is_false(f.pickle.write)
    assert.is_false(f.safetensors_index.write)
    assert.are.equal("torch", f.pickle.family)
    assert.are.equal("keras", f.hdf5.family)
  end)

  it("gives each format's options, the common ones included, with descriptions", function()
    local f = by_name()
    local function keys(t)
      local out = {}
      for k, d in pairs(t) do
        assert.are.equal("string", type(d), k)
        out[#out + 1] = k
      end
      table.sort(out)
      return out
    end
    assert.are.same({ "format", "select", "strip" }, keys(f.torch.open_options))
    assert.are.same({ "dtype", "format", "order", "progress", "provenance" },
      keys(f.torch.save_options))
    assert.are.same({ "dtype", "format", "max_shard_size", "metadata", "order", "progress",
      "provenance" }, keys(f.safetensors.save_options))
    assert.are.same({ "compress", "dtype", "format", "order", "progress", "provenance" },
      keys(f.npz.save_options))
    assert.are.same({ "checkpoint_state", "dtype", "format", "num_shards", "order", "progress",
      "provenance", "shards" }, keys(f.tf.save_options))
    assert.are.same({ "base", "dtype", "format", "order", "progress", "provenance" },
      keys(f.graphdef.save_options))
    assert.are.same({ "backend", "base", "dtype", "format", "keras_version", "layer_names",
      "model_config", "order", "progress", "provenance", "regroup", "strings",
      "top_level_model_weights", "training_config" }, keys(f.keras.save_options))
    assert.are.same({ "dtype", "format", "model_name", "order", "progress", "provenance", "regroup" },
      keys(f.keras3.save_options))
    assert.are.same({ "dtype", "format", "order", "plain", "progress", "provenance" },
      keys(f.hdf5.save_options))
    assert.are.same({ "base", "date_saved", "dtype", "format", "keras_version", "model_config",
      "order", "progress", "provenance" }, keys(f.keras_zip.save_options))
    -- formats that are not written take no save options
    assert.are.same({}, keys(f.pickle.save_options))
    assert.are.same({ "format" }, keys(f.keras_zip.open_options))
  end)

  it("returns a copy: changing it does not change the registry", function()
    local list = graft.formats()
    list[1].name = "changed"
    list[1].save_options.x = "y"
    local again = graft.formats()
    assert.are.equal("npy", again[1].name)
    assert.is_nil(again[1].save_options.x)
  end)

  it("every format graft.core reads or writes has its row in the C registry", function()
    local c = {}
    for _, row in ipairs(core.formats()) do c[row.name] = row end
    local lua = by_name()
    for name, f in pairs(lua) do
      -- formats joined in Lua from others (a SavedModel, a sharded index)
      -- or laid out in Lua over another's bytes (Keras over HDF5) have no C
      -- row of their own; tfjs weights are graft.core.tensor over slices
      -- of the shard bytes, written with core.write_file
      local joined = { savedmodel = true, safetensors_index = true, keras = true, keras3 = true,
                       tfjs = true }
      if not joined[name] then
        assert.truthy(c[name], name)
        assert.are.equal(f.read, c[name].read, name)
      end
    end
    assert.are.equal("metadata", c.safetensors.input)
    assert.are.equal("tree", c.torch.input)
    assert.are.equal("layout", c.hdf5.input)
    assert.are.equal("compress", c.npz.input)
    assert.is_nil(c.npy.input)
  end)
end)

describe("core.write", function()
  after_each(H.cleanup)

  it("takes an options table: progress plus the format's one typed input", function()
    local dir = H.tmpdir()
    local t = { w = graft.tensor({ 1, 2 }) }
    local calls = 0
    core.write(dir .. "/a.safetensors", "safetensors", { "w" }, t,
      { metadata = { k = "v" }, progress = function() calls = calls + 1 end })
    assert.truthy(calls > 0)
    assert.are.same({ k = "v" }, graft.meta(graft.open(dir .. "/a.safetensors")).__metadata__)
    local err = H.raises(function()
      core.write(dir .. "/b.safetensors", "safetensors", { "w" }, t, { tree = {} })
    end)
    assert.truthy(err:find('format safetensors takes no option "tree"', 1, true), err)
    err = H.raises(function()
      core.write(dir .. "/b.npy", "npy", { "w" }, t, { metadata = {} })
    end)
    assert.truthy(err:find('format npy takes no option "metadata"', 1, true), err)
    err = H.raises(function() core.write(dir .. "/b.x", "nope", { "w" }, t) end)
    assert.truthy(err:find("cannot write format 'nope'", 1, true), err)
    err = H.raises(function() core.read(dir .. "/a.safetensors", "nope") end)
    assert.truthy(err:find("cannot read format 'nope'", 1, true), err)
    assert.are.same({ "a.safetensors" }, H.ls(dir))
  end)

  it("core.zip_names lists a zip's members from the C reader", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/a.npz", { x = graft.tensor({ 1 }), y = graft.tensor({ 2 }) })
    assert.are.same({ "x.npy", "y.npy" }, core.zip_names(dir .. "/a.npz"))
    H.write(dir .. "/bad.zip", "PK\3\4 not really")
    assert.truthy(H.raises(function() core.zip_names(dir .. "/bad.zip") end):find("bad.zip", 1, true))
  end)
end)

describe("detection through the registry", function()
  after_each(H.cleanup)

  it("recognises every format graft writes, from its bytes", function()
    local dir = H.tmpdir()
    local t = { ["dense/kernel"] = graft.tensor({ { 1, 2 } }), ["dense/bias"] = graft.tensor({ 3 }) }
    local cases = {
      { "a.npy", "npy", { ["x"] = graft.tensor({ 1 }) } },
      { "a.npz", "npz" }, { "a.safetensors", "safetensors" }, { "a.pt", "torch" },
      { "a.h5", "hdf5" }, { "a.weights.h5", "hdf5" }, { "a.hdf5", "hdf5" },
    }
    for _, c in ipairs(cases) do
      graft.save(dir .. "/" .. c[1], c[3] or t)
      assert.are.equal(c[2], graft.detect(dir .. "/" .. c[1]), c[1])
    end
    -- the bytes decide, not the extension
    graft.save(dir .. "/npz.pt", t, { format = "npz" })
    assert.are.equal("npz", graft.detect(dir .. "/npz.pt"))
    graft.save(dir .. "/st.bin", t, { format = "safetensors" })
    assert.are.equal("safetensors", graft.detect(dir .. "/st.bin"))
    assert.is_true(os.execute("mkdir " .. H.q(dir .. "/ck")))
    graft.save(dir .. "/ck/model", t, { format = "tf" })
    for _, p in ipairs({ "ck", "ck/model", "ck/model.index", "ck/model.data-00000-of-00001" }) do
      assert.are.equal("tf", graft.detect(dir .. "/" .. p), p)
    end
    graft.save(dir .. "/big.safetensors", t, { max_shard_size = 8 })
    assert.are.equal("safetensors_index", graft.detect(dir .. "/big.safetensors.index.json"))
    H.write(dir .. "/empty.bin", "")
    assert.are.equal("graft: " .. dir .. "/empty.bin: empty file",
      H.raises(function() graft.detect(dir .. "/empty.bin") end))
    H.write(dir .. "/junk.bin", "\1\2junk")
    assert.are.equal("graft: " .. dir .. '/junk.bin: unrecognised format (first bytes "\\x01\\x02junk")',
      H.raises(function() graft.detect(dir .. "/junk.bin") end))
  end)

  it("recognises real framework files of every family", function()
    local cases = {
      { "keras3/keras-pre_pr22362_nested_container/pre_pr22362_nested_container.keras", "keras_zip" },
      { "keras3/keras-pre_pr22362-weights-extracted/model.weights.h5", "hdf5" },
      { "keras_h5/hls4ml-KERAS_3layer-weights-only-keras2.0.0/KERAS_3layer_weights.h5", "hdf5" },
      { "pytorch/hls4ml-legacy-checkpoint-dict/model_1iteration.pt", "torch" },
      { "pytorch/torchserve-pr418-legacy-iris-state_dict/iris.pt", "torch" },
      { "tf_graphdef/hls4ml-3layer/3layer.pb", "graphdef" },
      { "tf_meta/session_bundle_half_plus_two/00000123/export.meta", "metagraph" },
      { "savedmodel/tf-serving-saved_model_half_plus_two_cpu/00000123", "savedmodel" },
      { "savedmodel/tf-serving-saved_model_half_plus_two_cpu/00000123/saved_model.pb", "savedmodel" },
      { "tf_ckpt_v2/tf2onnx-regression/model.index", "tf" },
      { "tf_ckpt_v2/tf2onnx-regression", "tf" },
    }
    for _, c in ipairs(cases) do
      assert.are.equal(c[2], graft.detect(H.real(c[1])), c[1])
    end
  end)
end)

describe("docs/API.md", function()
  it("documents every format and option: its generated section is current", function()
    local doc = dofile("tools/formats-doc.lua")
    local have = doc.section(H.read("docs/API.md"))
    assert.truthy(have, "docs/API.md has no formats section")
    assert.are.equal(doc.render(graft.formats(), options.common), have)
    for _, f in ipairs(graft.formats()) do
      assert.truthy(have:find("| `" .. f.name .. "` |", 1, true), f.name)
      for _, op in ipairs({ "open", "save" }) do
        for k in pairs(f[op .. "_options"]) do
          assert.truthy(have:find("`" .. f.name .. "` " .. op .. " `" .. k .. "`", 1, true)
            or have:find("- " .. op .. " `" .. k .. "`", 1, true), f.name .. " " .. k)
        end
      end
    end
  end)
end)

describe("format names", function()
  -- A quoted format name outside the registry and the formats' own files
  -- means format-specific code has leaked into the facade or the binding.
  local allowed = { "^src/formats/", "^lua/graft/formats/", "^lua/graft/registry%.lua$" }

  it("appear as string literals only in the registry and the formats' own files", function()
    local names = {}
    for _, f in ipairs(graft.formats()) do names[#names + 1] = f.name end
    for _, row in ipairs(core.formats()) do names[#names + 1] = row.name end
    local p = io.popen("find src lua -name '*.c' -o -name '*.h' -o -name '*.lua' | sort")
    local found = {}
    for file in p:lines() do
      local ok = false
      for _, pat in ipairs(allowed) do ok = ok or file:find(pat) ~= nil end
      if not ok then
        local text = H.read(file)
        for _, n in ipairs(names) do
          if text:find('"' .. n .. '"', 1, true) then found[#found + 1] = file .. ": " .. n end
        end
      end
    end
    p:close()
    assert.are.same({}, found)
  end)

  it("no module under lua/graft requires the facade", function()
    local p = io.popen("find lua/graft -name '*.lua' | sort")
    local found = {}
    for file in p:lines() do
      local text = H.read(file)
      if file ~= "lua/graft/cli.lua" and (text:find('require%s*%(?%s*"graft"') or
          text:find("require%s*%(?%s*'graft'")) then
        found[#found + 1] = file
      end
    end
    p:close()
    assert.are.same({}, found)
  end)
end)
