-- Whole Keras models from a table of tensors plus a model config (issue 14
-- item 6): a PyTorch model's weights (Linear, BatchNorm1d, Linear), renamed
-- and transposed with graft.map,
-- written as a Keras 3 .keras archive and a Keras 2 full-model .h5 with the
-- config of a .keras, a full-model .h5 or a model.to_json() file (Sequential
-- and Functional); Keras 3's
-- keras.models.load_model and tf-keras's load_model take them and predict
-- what torch predicts (1e-5 relative). graft.keras.config reads the three
-- kinds of config. Layers whose variables Keras keeps in sub-objects (LSTM,
-- GRU with reset_after on and off, SimpleRNN, Bidirectional, TimeDistributed,
-- a nested Sequential with BatchNormalization and a frozen layer): a .keras
-- and a tf-keras .h5 read by graft and written back as both kinds, and a
-- torch LSTM + bidirectional LSTM + per-step Linear through a short recipe;
-- the frameworks predict what the source predicts (1e-6 relative).
-- Oracle: spec/fixtures/gen_keras_whole.py (two oracle processes: one makes
-- the sources, one loads every file graft wrote).
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

-- target file, source, base (nil: the source's own config), reference
-- predictions (gen_keras_whole.py check tag)
local NESTED = {
  { "n_z33.keras", "z3.keras", nil, "z3" }, { "n_z32.h5", "z3.keras", "z2.h5", "z3" },
  { "n_z22.h5", "z2.h5", "z2.h5", "z2" }, { "n_z23.keras", "z2.h5", "z3.keras", "z2" },
  { "n_r3.keras", "rnn.pt", "r3.keras", "rnn" }, { "n_r2.h5", "rnn.pt", "r2.h5", "rnn" },
}

-- torch lstm, bi (bidirectional LSTM) and fc -> Keras LSTM "lstm",
-- Bidirectional "bi", TimeDistributed(Dense) "td", named as graft reads a
-- .keras (the .h5 writer takes the same names).
local function rnn_recipe(sd)
  local out = {}
  local function lstm(dst, src, sfx)
    local function p(w) return sd[src .. "." .. w .. "_l0" .. sfx] end
    local r = graft.layouts.lstm_torch_to_keras(p("weight_ih"), p("weight_hh"), p("bias_ih"),
      p("bias_hh"))
    for _, v in ipairs({ "kernel", "recurrent_kernel", "bias" }) do out[dst .. "/" .. v] = r[v] end
  end
  lstm("lstm/cell", "lstm", "")
  lstm("bi/forward_layer/cell", "bi", "")
  lstm("bi/backward_layer/cell", "bi", "_reverse")
  out["td/layer/kernel"] = sd["fc.weight"]:t()
  out["td/layer/bias"] = sd["fc.bias"]
  return out
end

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
    for _, w in ipairs(NESTED) do
      local t = w[2] == "rnn.pt" and rnn_recipe(graft.open(dir .. "/rnn.pt"))
        or graft.open(dir .. "/" .. w[2])
      graft.save(dir .. "/" .. w[1], t, { base = w[3] and dir .. "/" .. w[3] or nil })
      files[#files + 1] = dir .. "/" .. w[1] .. ":" .. w[4]
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

  for _, w in ipairs(NESTED) do
    it(w[1] .. " (nested layers, from " .. w[2] .. ") loads whole and predicts as its source (1e-6 relative)", function()
      local r = loaded[dir .. "/" .. w[1] .. ":" .. w[4]]
      assert.are.equal("number", type(r), json.encode(r))
      assert.is_true(r <= 1e-6, w[1] .. ": max |difference| / max |output| " .. tostring(r))
    end)
  end

  it("nested layers read back under the names they were written with, at Keras's own paths", function()
    -- { source, written, whether written from the source's own tensors }
    for _, pair in ipairs({ { "z3.keras", "n_z33.keras", true }, { "z2.h5", "n_z22.h5", true },
                            { "z3.keras", "n_z23.keras" }, { "z2.h5", "n_z32.h5" } }) do
      local src, out = graft.open(dir .. "/" .. pair[1]), graft.open(dir .. "/" .. pair[2])
      if pair[1]:match("%.(%w+)$") == pair[2]:match("%.(%w+)$") then
        -- Read and written back: names, order, HDF5 paths; values too
        -- where the source holds the same weights.
        assert.are.same(graft.names(src), graft.names(out), pair[2])
        assert.are.same(graft.meta(src).paths, graft.meta(out).paths, pair[2])
        if pair[3] then
          for _, n in ipairs(graft.names(src)) do assert.is_true(src[n]:equal(out[n]), n) end
        end
      end
      if pair[2]:find("%.h5$") then
        -- tf-keras's weight_names per layer (a nested model's
        -- non-trainable weights last), whichever file the tensors came from.
        local want = {}
        for _, l in ipairs(graft.meta(graft.open(dir .. "/z2.h5")).layers) do
          want[#want + 1] = { l.name, l.weight_names }
        end
        local got = {}
        for _, l in ipairs(graft.meta(out).layers) do got[#got + 1] = { l.name, l.weight_names } end
        assert.are.same(want, got, pair[2])
      end
    end
    local names = {}
    for _, n in ipairs(graft.names(graft.open(dir .. "/n_z33.keras"))) do names[n] = true end
    for _, n in ipairs({ "lstm/cell/kernel", "gru_1/cell/bias", "simple_rnn/cell/recurrent_kernel",
        "bidirectional/forward_layer/cell/kernel", "bidirectional/backward_layer/cell/bias",
        "time_distributed/layer/kernel", "sequential/batch_normalization/moving_variance",
        "sequential/dense_1/kernel" }) do
      assert.is_true(names[n], n)
    end
    local m = graft.meta(graft.open(dir .. "/n_r3.keras"))
    assert.are.equal("layers/bidirectional/backward_layer/cell/vars/1",
      m.paths["bidirectional/backward_layer/cell/recurrent_kernel"])
  end)

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
      { class_name = "LSTM", config = { name = "rnn" } },
      { class_name = "ConvLSTM2D", config = { name = "conv" } } } } }
    ok, err = pcall(graft.save, out, { ["rnn/kernel"] = k["fc1/kernel"] }, { model_config = lstm })
    assert.is_false(ok)
    assert.truthy(err:find(out .. ": rnn/kernel: layer \"rnn\" (LSTM) has no variable of this name "
      .. "(its variables: rnn/cell/kernel, rnn/cell/recurrent_kernel, rnn/cell/bias)", 1, true), err)
    ok, err = pcall(graft.save, out, { ["rnn/cell/kernel"] = k["fc1/kernel"] }, { model_config = lstm })
    assert.is_false(ok)
    assert.truthy(err:find(out .. ": layer \"rnn\" (LSTM): no tensor for layers/lstm/cell's variable "
      .. "recurrent_kernel (name it \"rnn/cell/recurrent_kernel\")", 1, true), err)
    ok, err = pcall(graft.save, out, { ["conv/cell/kernel"] = k["fc1/kernel"] }, { model_config = lstm })
    assert.is_false(ok)
    assert.truthy(err:find(out .. ": conv/cell/kernel: layer \"conv\" (ConvLSTM2D): ConvLSTM2D keeps "
      .. "its variables in a sub-object graft does not lay out", 1, true), err)
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
