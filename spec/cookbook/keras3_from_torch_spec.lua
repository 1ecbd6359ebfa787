-- Cookbook (c): a torch state dict -> a Keras 3 .weights.h5 that Keras 3's
-- model.load_weights reads, run as docs/cookbook/keras3_from_torch.md says
-- and proven by Keras 3's forward pass against torch's
-- (spec/fixtures/cookbook/keras_cnn.py, oracle environment); the recipe
-- without the Flatten reorder must be exposed by the outputs.
local H = require "helper"

local GEN = H.ROOT .. "/spec/fixtures/cookbook/keras_cnn.py"
local TOL = 1e-5

local function graft_ok(...)
  local out, err, code = H.graft(...)
  assert(code == 0, "graft " .. table.concat({ ... }, " ") .. " exited " .. tostring(code) .. ": " .. err)
  return out
end

describe("cookbook: torch -> Keras 3 .weights.h5", function()
  local dir, res = nil, {}
  lazy_setup(function()
    dir = H.tmpdir()
    H.oracle(H.read(GEN), "make", dir)
    graft_ok("run", "examples/cookbook/torch_to_keras.lua", dir .. "/torch_cnn.pt", dir .. "/cnn.weights.h5",
      "fmap=3x3x8")
    local text = H.read(H.ROOT .. "/examples/cookbook/torch_to_keras.lua")
    local old = "L.flatten_dense_torch_to_tf(x, fmap)"
    local s, e = text:find(old, 1, true)
    assert(s and not text:find(old, e + 1, true))
    H.write(dir .. "/broken.lua", text:sub(1, s - 1) .. "L.dense_torch_to_tf(x)" .. text:sub(e + 1))
    graft_ok("run", dir .. "/broken.lua", dir .. "/torch_cnn.pt", dir .. "/broken.weights.h5", "fmap=3x3x8")
    local out = H.oracle(H.read(GEN), "check", dir, "keras3=" .. dir .. "/cnn.weights.h5",
      "keras3=" .. dir .. "/broken.weights.h5")
    local i = 0
    for v in out:gmatch("keras3 max_rel=(%S+)") do
      i = i + 1
      res[i] = tonumber(v)
    end
  end)
  lazy_teardown(H.cleanup)

  it("Keras 3 load_weights + predict matches torch's forward pass", function()
    assert.is_true(res[1] <= TOL, "max_rel " .. tostring(res[1]))
  end)

  it("names the layers as Keras 3 does, by class", function()
    local out = graft_ok("ls", dir .. "/cnn.weights.h5")
    for _, n in ipairs({ "conv2d/kernel", "batch_normalization/moving_variance", "conv2d_1/bias",
                         "dense/kernel", "dense_1/bias" }) do
      assert.matches(n, out, 1, true)
    end
  end)

  it("without the Flatten reorder the outputs are wrong", function()
    assert.is_true(res[2] > 1e-2, "max_rel " .. tostring(res[2]))
  end)

  it("refuses MODULE=LAYER renames for .weights.h5", function()
    local _, err, code = H.graft("run", "examples/cookbook/torch_to_keras.lua", dir .. "/torch_cnn.pt",
      dir .. "/x.weights.h5", "conv1=conv")
    assert.are_not.equal(0, code)
    assert.matches("names layers by class as Keras 3 does", err, 1, true)
  end)
end)
