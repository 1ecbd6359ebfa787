-- Cookbook (c): a torch state dict -> a Keras 3 .weights.h5 that Keras 3's
-- model.load_weights reads, run as docs/cookbook/keras3_from_torch.md says
-- and proven by Keras 3's forward pass against torch's
-- (spec/fixtures/cookbook/keras_cnn.py, oracle environment); the recipe
-- without the Flatten reorder must be exposed by the outputs.
local H = require "helper"
local C = require "cookbook.cookbook"

local GEN = "keras_cnn"
local TOL = 1e-5
local graft_ok = C.graft_ok

describe("cookbook: torch -> Keras 3 .weights.h5", function()
  local dir, res = nil, {}
  lazy_setup(function()
    dir = C.make(GEN)
    graft_ok("run", "examples/cookbook/torch_to_keras.lua", dir .. "/torch_cnn.pt", dir .. "/cnn.weights.h5",
      "fmap=3x3x8")
    C.broken_copy("examples/cookbook/torch_to_keras.lua", "L.flatten_dense_torch_to_tf(x, fmap)",
      "L.dense_torch_to_tf(x)", dir .. "/broken.lua")
    graft_ok("run", dir .. "/broken.lua", dir .. "/torch_cnn.pt", dir .. "/broken.weights.h5", "fmap=3x3x8")
    res = C.max_rel(C.gen(GEN, "check", dir, "keras3=" .. dir .. "/cnn.weights.h5",
      "keras3_broken=" .. dir .. "/broken.weights.h5"))
  end)
  lazy_teardown(H.cleanup)

  it("Keras 3 load_weights + predict matches torch's forward pass", function()
    assert.is_true(res.keras3 <= TOL, "max_rel " .. tostring(res.keras3))
  end)

  it("names the layers as Keras 3 does, by class", function()
    local out = graft_ok("ls", dir .. "/cnn.weights.h5")
    for _, n in ipairs({ "conv2d/kernel", "batch_normalization/moving_variance", "conv2d_1/bias",
                         "dense/kernel", "dense_1/bias" }) do
      assert.matches(n, out, 1, true)
    end
  end)

  it("without the Flatten reorder the outputs are wrong", function()
    assert.is_true(res.keras3_broken > 1e-2, "max_rel " .. tostring(res.keras3_broken))
  end)

  it("refuses MODULE=LAYER renames for .weights.h5", function()
    local _, err, code = H.graft("run", "examples/cookbook/torch_to_keras.lua", dir .. "/torch_cnn.pt",
      dir .. "/x.weights.h5", "conv1=conv")
    assert.are_not.equal(0, code)
    assert.matches("names layers by class as Keras 3 does", err, 1, true)
  end)
end)
