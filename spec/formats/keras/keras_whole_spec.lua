-- Whole Keras models from a table of tensors plus a model config (issue 14
-- item 6): a PyTorch model's weights (Linear, BatchNorm1d, Linear), renamed
-- and transposed with graft.map,
-- written as a Keras 3 .keras archive and a Keras 2 full-model .h5 with the
-- config of a .keras, a full-model .h5 or a model.to_json() file (Sequential
-- and Functional); Keras 3's
-- keras.models.load_model and tf-keras's load_model take them and predict
-- what torch predicts (1e-5 relative). graft.keras.config reads the three
-- kinds of config. Oracle: spec/fixtures/gen_keras_whole.py (two oracle
-- processes: one makes the sources, one loads every file graft wrote).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local GEN = "spec/fixtures/gen_keras_whole.py"

-- target file -> base config it is written with
local WRITES = {
  { "w_k3.keras", "k3.keras" }, { "w_j3.keras", "k3.json" },
  { "w_k2.h5", "k2.h5" }, { "w_j2.h5", "k2.json" },
  { "w_k3f.keras", "k3f.keras" }, { "w_k2f.h5", "k2f.h5" },
}

local function recipe(t)
  return graft.map(t, {
    { "^(fc%d)%.weight$", "%1/kernel", "t" },
    { "^(fc%d)%.bias$", "%1/bias" },
    -- Listed out of Keras's order: the writer orders a layer's variables.
    { "^bn%.running_var$", "bn/moving_variance" },
    { "^bn%.running_mean$", "bn/moving_mean" },
    { "^bn%.weight$", "bn/gamma" },
    { "^bn%.bias$", "bn/beta" },
    { "^bn%.num_batches_tracked$", graft.drop },
  }, { order = "rules" })
end

describe("whole Keras models", function()
  local dir, loaded
  setup(function()
    dir = H.tmpdir()
    json.decode(H.oracle(H.read(GEN), "gen", dir))
    local k = recipe(graft.open(dir .. "/torch.pt"))
    local files = {}
    for _, w in ipairs(WRITES) do
      graft.save(dir .. "/" .. w[1], k, { base = dir .. "/" .. w[2] })
      files[#files + 1] = dir .. "/" .. w[1]
    end
    -- Config given as a table, and a .keras re-saved with its own config.
    -- Config given as a table, with a provenance (the whole model still loads).
    local prov = graft.provenance.make({ dir .. "/torch.pt" })
    graft.save(dir .. "/w_cfg.keras", k, { model_config = graft.keras.config(dir .. "/k3.keras"),
      provenance = prov })
    graft.save(dir .. "/w_cfg.h5", k, { model_config = graft.keras.config(dir .. "/k2.h5"),
      training_config = H.read(dir .. "/k2.train.json"), provenance = prov })
    graft.save(dir .. "/w_again.keras", graft.open(dir .. "/w_k3.keras"))
    for _, f in ipairs({ "w_cfg.keras", "w_cfg.h5", "w_again.keras" }) do
      files[#files + 1] = dir .. "/" .. f
    end
    loaded = json.decode(H.oracle(H.read(GEN), "check", dir, table.unpack(files)))
  end)
  teardown(H.cleanup)

  for _, f in ipairs({ "w_k3.keras", "w_j3.keras", "w_k2.h5", "w_j2.h5",
                       "w_k3f.keras", "w_k2f.h5", "w_cfg.keras", "w_cfg.h5", "w_again.keras" }) do
    it(f .. " loads whole in its Keras and predicts as the torch model (1e-5 of the output's scale)", function()
      local r = loaded[dir .. "/" .. f]
      assert.are.equal("number", type(r), json.encode(r))
      assert.is_true(r <= 1e-5, f .. ": max |difference| / max |output| " .. tostring(r))
    end)
  end

  it("graft.keras.config reads a .keras, a full-model .h5 and to_json files", function()
    for _, src in ipairs({ "k3.keras", "k3.json", "k2.h5", "k2.json" }) do
      local c = graft.keras.config(dir .. "/" .. src)
      assert.are.equal("Sequential", c.class_name, src)
      local names = {}
      for _, l in ipairs(c.config.layers) do names[#names + 1] = l.config.name end
      assert.are.same({ "fc1", "bn", "act", "fc2" },
        { table.unpack(names, #names - 3, #names) }, src)
      -- JSON null survives: the input's batch dimension.
      local shape = c.config.layers[1].config.batch_shape or c.config.layers[1].config.batch_input_shape
      assert.are.equal(json.null, shape[1], src)
      assert.are.equal(6, shape[2], src)
    end
  end)

  it("the .keras holds metadata.json, config.json, model.weights.h5 with the base's config", function()
    local t = graft.open(dir .. "/w_j3.keras")
    local m = graft.meta(t)
    assert.are.equal("keras3", m.format)
    assert.are.equal("zip", m.container)
    assert.are.equal("3.15.1", m.metadata.keras_version)
    assert.truthy(m.metadata.date_saved:match("^%d%d%d%d%-%d%d%-%d%d@%d%d:%d%d:%d%d$"))
    assert.are.same(graft.core.zip_names(dir .. "/w_j3.keras"),
      { "metadata.json", "config.json", "model.weights.h5" })
    assert.are.equal(json.encode(graft.keras.config(dir .. "/k3.json")),
      json.encode(graft.keras.config(dir .. "/w_j3.keras")))
    local k = recipe(graft.open(dir .. "/torch.pt"))
    assert.are.same({ "dense/kernel", "dense/bias", "batch_normalization/gamma",
      "batch_normalization/beta", "batch_normalization/moving_mean",
      "batch_normalization/moving_variance", "dense_1/kernel", "dense_1/bias" }, graft.names(t))
    for _, n in ipairs({ "fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias", "bn/moving_variance" }) do
      local o = n:gsub("^fc1", "dense"):gsub("^fc2", "dense_1"):gsub("^bn", "batch_normalization")
      assert.is_true(t[o]:equal(k[n]), n)
    end
  end)

  it("the full-model .h5 carries model_config, versions and training_config only when given", function()
    local m = graft.meta(graft.open(dir .. "/w_k2.h5"))
    assert.are.equal("keras", m.format)
    assert.are.equal("model_weights", m.weights_group)
    assert.are.equal("Sequential", m.model_config.class_name)
    assert.are.equal("2.21.0", m.keras_version)
    assert.is_nil(m.training_config)
    assert.are.same(json.decode(H.read(dir .. "/k2.train.json")),
      graft.meta(graft.open(dir .. "/w_cfg.h5")).training_config)
  end)

  it("whole models record graft's provenance (root attributes of the .h5, the archive's metadata.json)", function()
    local sha = graft.core.sha256_file(dir .. "/torch.pt")
    for _, f in ipairs({ "w_cfg.h5", "w_cfg.keras" }) do
      local out, err, code = H.graft("ls", "--json", dir .. "/" .. f)
      assert.are.equal(0, code, err)
      local md = json.decode(out).metadata
      assert.are.equal("table", type(md), f .. ": " .. out)
      assert.are.equal(graft.version, md["graft.version"], f)
      assert.are.same({ { name = "torch.pt", sha256 = sha } }, json.decode(md["graft.sources"]), f)
    end
  end)

  it("a .h5 without a config stays weights-only", function()
    local k = recipe(graft.open(dir .. "/torch.pt"))
    graft.save(dir .. "/plain.h5", k)
    local m = graft.meta(graft.open(dir .. "/plain.h5"))
    assert.are.equal("keras", m.format)
    assert.is_nil(m.model_config)
    assert.are.equal("/", m.weights_group)
  end)

  it("refuses what cannot make a loadable model, naming the file and the tensor", function()
    local k = recipe(graft.open(dir .. "/torch.pt"))
    local out = dir .. "/bad.keras"
    assert.has_error(function() graft.save(out, k) end,
      "graft: " .. out .. ": a .keras archive needs a model config: opts.model_config or opts.base "
      .. "(a .keras, a full-model .h5 or a model.to_json() file)")
    local extra = {}
    for n, v in pairs(k) do extra[n] = v end
    extra["fc9/kernel"] = k["fc1/kernel"]
    local ok, err = pcall(graft.save, out, extra, { base = dir .. "/k3.json" })
    assert.is_false(ok)
    assert.truthy(err:find(out .. ": fc9/kernel: no layer of the model config is named \"fc9\"", 1, true), err)
    ok, err = pcall(graft.save, out, k, { base = dir .. "/k3.json", model_config = {} })
    assert.is_false(ok)
    assert.truthy(err:find("not both", 1, true), err)
    local lstm = { class_name = "Sequential", config = { name = "s", layers = {
      { class_name = "LSTM", config = { name = "rnn" } } } } }
    ok, err = pcall(graft.save, out, { ["rnn/kernel"] = k["fc1/kernel"] }, { model_config = lstm })
    assert.is_false(ok)
    assert.truthy(err:find(out .. ": rnn/kernel: layer \"rnn\" (LSTM) keeps its variables in sub-objects", 1, true), err)
    ok, err = pcall(graft.keras.config, dir .. "/plain.h5")
    assert.is_false(ok)
    assert.truthy(err:find("no model_config attribute", 1, true), err)
    ok, err = pcall(graft.keras.config, dir .. "/x.npy")
    assert.is_false(ok)
    assert.truthy(err:find(dir .. "/x.npy", 1, true), err)
    assert.is_nil(io.open(out))
    assert.is_nil(io.open(out .. ".graft-weights.h5"))
  end)

  it("core.zip_write streams file members and leaves the target untouched on failure", function()
    local out = dir .. "/z.zip"
    graft.core.zip_write(out, { { name = "a.txt", data = "hello" }, { name = "b.npy", file = dir .. "/x.npy" } })
    -- Python's zipfile (what Keras reads with) checks each member's CRC.
    local same = H.py([[
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(z.testzip() is None and z.read("a.txt") == b"hello"
      and z.read("b.npy") == open(sys.argv[2], "rb").read()
      and all(i.compress_type == 0 for i in z.infolist()))
]], out, dir .. "/x.npy")
    assert.are.equal("True\n", same)
    local ok, err = pcall(graft.core.zip_write, out, { { name = "c", file = dir .. "/missing" } })
    assert.is_false(ok)
    assert.truthy(err:find(dir .. "/missing", 1, true), err)
    assert.are.same({ "a.txt", "b.npy" }, graft.core.zip_names(out))
  end)
end)
