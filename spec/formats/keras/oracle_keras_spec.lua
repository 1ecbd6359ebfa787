-- Keras 2 (tf-keras 2.21) and Keras 3 (3.15) as oracles (issue 11): files
-- they write (model.save .h5 / .keras, save_weights .h5 / .weights.h5) for
-- models with Dense, Conv1D/2D/3D, Conv2DTranspose, DepthwiseConv2D,
-- SeparableConv2D, BatchNormalization, Embedding, LSTM, GRU (reset_after
-- both ways), Bidirectional, TimeDistributed and a nested model are read by
-- graft bit-exactly as the framework holds the weights; the .h5 and
-- .weights.h5 files graft writes are loaded by the framework's own
-- load_weights (Keras 2: positional, by_name=True, skip_mismatch) into a
-- fresh model of the architecture, whose predictions then equal the source
-- model's. Generator and checker: spec/fixtures/gen_keras.py (two oracle
-- processes for the whole file).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local GEN = "spec/fixtures/gen_keras.py"
local MODELS = { "conv", "conv13", "rnn", "nested" }

local function triple(t)
  return { t.dtype, t.shape, H.hex(t:contiguous():bytes()) }
end

describe("Keras oracles", function()
  local dir, ref
  setup(function()
    dir = H.tmpdir()
    ref = json.decode(H.oracle(H.read(GEN), "gen", dir))
  end)
  teardown(H.cleanup)

  for _, m in ipairs(MODELS) do
    for _, f in ipairs({ m .. ".h5", m .. ".w.h5" }) do
      it("graft reads tf-keras " .. f .. " as tf-keras holds it: names, order, bits", function()
        local t = graft.open(dir .. "/k2/" .. f)
        assert.are.equal("keras", graft.meta(t).format)
        local names = graft.names(t)
        local want = ref.k2[m]
        assert.are.equal(#want, #names)
        for i, w in ipairs(want) do
          assert.are.equal(w[1], names[i])
          assert.are.same({ w[2], w[3], w[4] }, triple(t[names[i]]), w[1])
        end
      end)
    end

    for _, f in ipairs({ m .. ".keras", m .. ".weights.h5" }) do
      it("graft reads Keras 3 " .. f .. ": each variable exactly once, bit-exact", function()
        local t = graft.open(dir .. "/k3/" .. f)
        local by_value = {}
        for _, n in ipairs(graft.names(t)) do
          local key = json.encode(triple(t[n]))
          assert.is_nil(by_value[key], n)
          by_value[key] = n
        end
        local want = ref.k3[m]
        assert.are.equal(#want, #graft.names(t))
        for _, w in ipairs(want) do
          local key = json.encode({ w[2], w[3], w[4] })
          assert.truthy(by_value[key], "Keras 3 variable " .. w[1] .. " not found in graft's table")
        end
      end)
    end
  end

  describe("what graft writes", function()
    local res
    setup(function()
      local out = dir .. "/out"
      os.execute("mkdir -p " .. H.q(out .. "/k2") .. " " .. H.q(out .. "/k3"))
      for _, m in ipairs(MODELS) do
        -- positional: the full-model file's weights as a save_weights file
        local t = graft.open(dir .. "/k2/" .. m .. ".h5")
        graft.save(out .. "/k2/" .. m .. ".pos.h5", t, { format = "keras" })
        -- by name: layers in reverse order, and a layer the model lacks
        local order = {}
        local layers = graft.meta(t).layers
        for i = #layers, 1, -1 do
          for _, w in ipairs(layers[i].weights) do order[#order + 1] = w end
        end
        local u = {}
        for _, n in ipairs(order) do u[n] = t[n] end
        u["zz_extra/kernel"] = graft.zeros({ 2, 2 })
        order[#order + 1] = "zz_extra/kernel"
        graft.save(out .. "/k2/" .. m .. ".byname.h5", u, { format = "keras", order = order })
        -- Keras 3: the .keras archive's weights as a .weights.h5 file
        graft.save(out .. "/k3/" .. m .. ".weights.h5", graft.open(dir .. "/k3/" .. m .. ".keras"),
          { format = "keras3" })
      end
      -- layer names holding '/' (tf-keras allows them): a hand-built table
      -- grouped by opts.layer_names (in model order, which positional
      -- loading follows), the longest matching name winning
      local sl = graft.open(dir .. "/k2/slash.w.h5")
      local hand, horder = {}, {}
      for _, n in ipairs(graft.names(sl)) do
        hand[n] = sl[n]
        horder[#horder + 1] = n
      end
      for _, kind in ipairs({ "pos", "byname" }) do
        graft.save(out .. "/k2/slash." .. kind .. ".h5", hand,
          { format = "keras", order = horder, layer_names = { "blk/a", "blk" } })
      end
      -- skip_mismatch: the head layer's weights with shapes the model refuses
      local t = graft.open(dir .. "/k2/conv.w.h5")
      t["head/kernel"] = graft.zeros({ 5, 2 })
      t["head/bias"] = graft.zeros({ 7 })
      graft.save(out .. "/k2/conv.skip.h5", t, { format = "keras" })
      res = json.decode(H.oracle(H.read(GEN), "check", dir))
    end)

    for _, m in ipairs(MODELS) do
      it("tf-keras load_weights (positional) of graft's " .. m .. " .h5 predicts as the source", function()
        assert.is_true(res.k2[m].positional)
      end)
      it("tf-keras load_weights(by_name=True) of graft's " .. m .. " .h5 predicts as the source", function()
        assert.is_true(res.k2[m].by_name)
      end)
      it("Keras 3 load_weights of graft's " .. m .. " .weights.h5 predicts as the source", function()
        assert.is_true(res.k3[m].load_weights)
      end)
    end

    it("tf-keras loads graft's file of layers named with '/' (opts.layer_names), both ways", function()
      assert.is_true(res.k2.slash.positional)
      assert.is_true(res.k2.slash.by_name)
    end)

    it("graft reads tf-keras layers named with '/' by their weight names", function()
      local t = graft.open(dir .. "/k2/slash.w.h5")
      local names = graft.names(t)
      assert.are.equal(#ref.k2.slash, #names)
      for i, w in ipairs(ref.k2.slash) do
        assert.are.equal(w[1], names[i])
        assert.are.same({ w[2], w[3], w[4] }, triple(t[names[i]]), w[1])
      end
    end)

    it("tf-keras skip_mismatch skips only the mismatched layer of graft's file", function()
      local skip = res.k2.conv.skip
      assert.are.equal("fresh", skip.head)
      for _, l in ipairs({ "c2d", "bn", "dw", "sep", "tconv" }) do
        assert.are.equal("source", skip[l], l)
      end
    end)
  end)
end)
