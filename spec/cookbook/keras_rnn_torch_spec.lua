-- Cookbook (d): Keras LSTM / GRU (reset_after True and False, stacked,
-- Bidirectional) <-> torch nn.LSTM / nn.GRU, both directions, .h5 and
-- Keras 3 .weights.h5, run as docs/cookbook/keras_rnn_torch.md says and
-- proven by the target framework's forward pass
-- (spec/fixtures/cookbook/keras_rnn.py, oracle environment). A
-- reset_after=False GRU has no nn.GRU equivalent: the recipe refuses it
-- unless told the target module computes Keras's variant (the fixture's
-- KerasGRU), and nn.GRU given those weights computes something else. The
-- recipes without the GRU gate reorder must be exposed by the outputs.
local H = require "helper"
local C = require "cookbook.cookbook"

local GEN = "keras_rnn"
local K2T, T2K = "examples/cookbook/keras_to_torch.lua", "examples/cookbook/torch_to_keras.lua"
local TOL = 1e-5

local graft_ok, broken_copy = C.graft_ok, C.broken_copy

describe("cookbook: Keras LSTM/GRU <-> torch nn.LSTM/nn.GRU", function()
  local d, res
  lazy_setup(function()
    d = C.make(GEN)
    -- Keras -> torch: the two Keras LSTMs stack into torch's 2-layer "lstm".
    graft_ok("run", K2T, d .. "/keras_a.h5", d .. "/ta.pt", "lstm_1=lstm")
    -- Keras 3 objects are named by class (bidirectional); the layer's name (bigru) is used.
    graft_ok("run", K2T, d .. "/keras_a.weights.h5", d .. "/ta3.pt", "lstm_1=lstm")
    graft_ok("run", K2T, d .. "/keras_b.h5", d .. "/tb.pt", "gru=reset_before")
    -- torch -> Keras, .h5 and .weights.h5
    graft_ok("run", T2K, d .. "/torch_a.pt", d .. "/ka.h5")
    graft_ok("run", T2K, d .. "/torch_a.pt", d .. "/ka.weights.h5")
    graft_ok("run", T2K, d .. "/torch_b.pt", d .. "/kb.h5", "gru=reset_before")
    graft_ok("run", T2K, d .. "/torch_b.pt", d .. "/kb.weights.h5", "gru=reset_before")
    -- Without the GRU gate reorder (z,r,h vs r,z,n): transposes only.
    local k2t = broken_copy(K2T, 'f, label = L.gru_keras_to_torch, "gru_keras_to_torch"',
      'f, label = function(k, r, b) return { weight_ih = k:t(), weight_hh = r:t(), '
        .. 'bias_ih = b:select(1, 1), bias_hh = b:select(1, 2) } end, "no reorder"', d .. "/k2t_broken.lua")
    local t2k = broken_copy(T2K, 'f, label = L.gru_torch_to_keras, "gru_torch_to_keras"',
      'f, label = function(wi, wh, bi, bh) return { kernel = wi:t(), recurrent_kernel = wh:t(), '
        .. 'bias = graft.stack({ bi, bh }, 1) } end, "no reorder"', d .. "/t2k_broken.lua")
    graft_ok("run", k2t, d .. "/keras_a.h5", d .. "/ta_broken.pt", "lstm_1=lstm")
    graft_ok("run", t2k, d .. "/torch_a.pt", d .. "/ka_broken.h5")
    res = C.max_rel(C.gen(GEN, "check", d,
      "torch_a=" .. d .. "/ta.pt", "torch_a=" .. d .. "/ta3.pt", "torch_b=" .. d .. "/tb.pt",
      "keras_a=" .. d .. "/ka.h5", "keras_a=" .. d .. "/ka.weights.h5",
      "keras_b=" .. d .. "/kb.h5", "keras_b=" .. d .. "/kb.weights.h5",
      "torch_a=" .. d .. "/ta_broken.pt", "keras_a=" .. d .. "/ka_broken.h5", "nngru_b=" .. d .. "/tb.pt"))
  end)
  lazy_teardown(H.cleanup)

  local function ok(key)
    assert.is_number(res[key], key .. " not checked")
    assert.is_true(res[key] <= TOL, key .. ": max_rel " .. tostring(res[key]))
  end

  it("Keras -> torch: stacked LSTM, Bidirectional GRU, GRU (reset_after) from .h5 and .weights.h5", function()
    ok("torch_a ta.pt")
    ok("torch_a ta3.pt")
  end)

  it("Keras reset_after=False GRUs -> a torch module computing Keras's variant", function()
    ok("torch_b tb.pt")
  end)

  it("torch -> Keras .h5 (tf-keras) and .weights.h5 (Keras 3), reset_after True and False", function()
    ok("keras_a ka.h5")
    ok("keras_a ka.weights.h5")
    ok("keras_b kb.h5")
    ok("keras_b kb.weights.h5")
  end)

  it("refuses a reset_after=False GRU without gru=reset_before, naming the weight and why", function()
    local _, err, code = H.graft("run", K2T, d .. "/keras_b.h5", d .. "/x.pt")
    assert.are_not.equal(0, code)
    assert.matches("gru/gru_cell/bias: a GRU with reset_after=False: torch's nn.GRU applies the reset gate "
      .. "after the recurrent matmul", err, 1, true)
  end)

  it("nn.GRU given a reset_after=False GRU's weights computes something else", function()
    assert.is_true(res["nngru_b tb.pt"] > 1e-3, "max_rel " .. tostring(res["nngru_b tb.pt"]))
  end)

  it("without the GRU gate reorder both directions' outputs are wrong", function()
    assert.is_true(res["torch_a ta_broken.pt"] > 1e-2, "max_rel " .. tostring(res["torch_a ta_broken.pt"]))
    assert.is_true(res["keras_a ka_broken.h5"] > 1e-2, "max_rel " .. tostring(res["keras_a ka_broken.h5"]))
  end)
end)
