-- Cookbook (b): a tf-keras CNN .h5 -> torch and a torch state dict -> a
-- Keras .h5 (weights-only and full model), each run as the docs say
-- (docs/cookbook/keras_cnn_torch.md) and proven by the target framework's
-- forward pass (spec/fixtures/cookbook/keras_cnn.py, oracle environment);
-- also the bundled examples (examples/transplant.lua, then the issue 12
-- round trip through examples/cookbook/torch_to_keras.lua) and the recipes
-- with the Flatten reorder taken out, which the outputs must expose.
local H = require "helper"
local C = require "cookbook.cookbook"

local GEN = "keras_cnn"
local TOL = 1e-5
local graft_ok = C.graft_ok

-- The recipe at `rel` with `old` replaced by `new` (exactly once), saved in dir.
local function broken_copy(rel, old, new, dir)
  return C.broken_copy(rel, old, new, dir .. "/" .. rel:match("[^/]+$"):gsub("%.lua$", "_broken.lua"))
end

describe("cookbook: tf-keras CNN <-> torch", function()
  local dir, res
  lazy_setup(function()
    dir = C.make(GEN)
    local d = dir
    -- Keras -> torch: the Flatten's feature map comes from the full model's config.
    graft_ok("run", "examples/cookbook/keras_to_torch.lua", d .. "/keras_cnn.h5", d .. "/torch.pt")
    -- Keras 3's .keras (the same weights): layers by their names, the map from config.json.
    graft_ok("run", "examples/cookbook/keras_to_torch.lua", d .. "/keras_cnn.keras", d .. "/torch_k3.pt")
    -- A weights-only file has no config: the map is given by hand.
    graft_ok("run", "examples/cookbook/keras_to_torch.lua", d .. "/keras_cnn_w.h5", d .. "/torch_w.pt", "fmap=3x3x8")
    -- torch -> Keras: weights only, and a full model from the Keras model's config.
    graft_ok("run", "examples/cookbook/torch_to_keras.lua", d .. "/torch_cnn.pt", d .. "/keras.h5", "fmap=3x3x8")
    graft_ok("run", "examples/cookbook/torch_to_keras.lua", d .. "/torch_cnn.pt", d .. "/keras_full.h5",
      "base=" .. d .. "/keras_cnn.h5")
    -- The same recipes without the Flatten reorder.
    local k2t = broken_copy("examples/cookbook/keras_to_torch.lua",
      "L.flatten_dense_tf_to_torch(w, fmap)", "L.dense_tf_to_torch(w)", d)
    local t2k = broken_copy("examples/cookbook/torch_to_keras.lua",
      "L.flatten_dense_torch_to_tf(x, fmap)", "L.dense_torch_to_tf(x)", d)
    graft_ok("run", k2t, d .. "/keras_cnn.h5", d .. "/torch_broken.pt")
    graft_ok("run", t2k, d .. "/torch_cnn.pt", d .. "/keras_broken.h5", "fmap=3x3x8")
    -- The bundled examples: transplant.lua, then the round trip of issue 12.
    graft_ok("run", "examples/transplant.lua", "examples/data/tiny_cnn_keras.h5", d .. "/tiny.pt")
    graft_ok("run", "examples/cookbook/torch_to_keras.lua", d .. "/tiny.pt", d .. "/back.h5",
      "conv1=conv1", "conv2=conv2", "fc=dense")
    os.execute("cp " .. H.q(H.ROOT .. "/examples/data/tiny_cnn_keras.h5") .. " " .. H.q(d))
    res = C.max_rel(C.gen(GEN, "check", d,
      "torch=" .. d .. "/torch.pt", "torch_w=" .. d .. "/torch_w.pt", "torch_k3=" .. d .. "/torch_k3.pt",
      "keras_h5=" .. d .. "/keras.h5", "keras_full=" .. d .. "/keras_full.h5",
      "torch_broken=" .. d .. "/torch_broken.pt", "keras_broken=" .. d .. "/keras_broken.h5",
      "tiny_torch=" .. d .. "/tiny.pt", "tiny_keras=" .. d .. "/back.h5"))
  end)
  lazy_teardown(H.cleanup)

  it("keras_to_torch: torch's forward pass matches tf-keras's (full model, weights-only + fmap, .keras)", function()
    assert.is_true(res.torch <= TOL, "max_rel " .. tostring(res.torch))
    assert.is_true(res.torch_w <= TOL, "max_rel " .. tostring(res.torch_w))
    assert.is_true(res.torch_k3 <= TOL, "max_rel " .. tostring(res.torch_k3))
  end)

  it("torch_to_keras: tf-keras load_weights and load_model compute what torch does", function()
    assert.is_true(res.keras_h5 <= TOL, "max_rel " .. tostring(res.keras_h5))
    assert.is_true(res.keras_full <= TOL, "max_rel " .. tostring(res.keras_full))
  end)

  it("without the Flatten reorder, both directions' outputs are wrong", function()
    assert.is_true(res.torch_broken > 1e-2, "max_rel " .. tostring(res.torch_broken))
    assert.is_true(res.keras_broken > 1e-2, "max_rel " .. tostring(res.keras_broken))
  end)

  it("a weights-only .h5 without fmap= is refused, naming the Dense and the fix", function()
    local _, err, code = H.graft("run", "examples/cookbook/keras_to_torch.lua", dir .. "/keras_cnn_w.h5",
      dir .. "/x.pt")
    assert.are_not.equal(0, code)
    assert.matches("fc1/kernel: this Dense follows a Flatten of conv feature maps; give their shape as fmap=HxWxC",
      err, 1, true)
  end)

  it("the bundled examples: transplant.lua and back reproduce the Keras file and its outputs", function()
    local out = graft_ok("diff", dir .. "/back.h5", "examples/data/tiny_cnn_keras.h5")
    assert.equal("same\n", out)
    assert.is_true(res.tiny_torch <= TOL, "max_rel " .. tostring(res.tiny_torch))
    assert.is_true(res.tiny_keras <= TOL, "max_rel " .. tostring(res.tiny_keras))
  end)
end)
