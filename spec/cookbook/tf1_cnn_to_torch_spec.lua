-- Cookbook (a): a TF1 conv net checkpoint (tf.compat.v1.train.Saver, one
-- Adam step) -> torch, through the one documented command; proven by
-- torch's forward pass on NCHW input against TF's on NHWC (oracle
-- environment). spec/fixtures/cookbook/tf1_cnn_to_torch.py makes the
-- checkpoint and checks graft's outputs.
local H = require "helper"
local C = require "cookbook.cookbook"

local RECIPE = "examples/cookbook/tf1_cnn_to_torch.lua"
local GEN = "tf1_cnn_to_torch"

describe("cookbook tf1_cnn_to_torch", function()
  local dir
  setup(function()
    dir = C.make(GEN)
  end)
  teardown(H.cleanup)

  it("gives torch the TF net's outputs; without the Flatten reorder it does not", function()
    local out = C.graft_ok("run", RECIPE, dir .. "/model.ckpt", dir .. "/net.pt", "fmap=4x4x16",
      "template=" .. dir .. "/template.pt")
    assert.truthy(out:find("8 tensors, checked against", 1, true), out)

    -- The broken variant: the recipe extended with one override that only
    -- transposes the Dense after the Flatten (the shapes still fit).
    local broken = dir .. "/no_reorder.lua"
    H.write(broken, string.format([[
local base = dofile(%q)
local src, dst = ...
base.run(src, dst, { fmap = "4x4x16", template = %q }, { { "^fc1/kernel$", "fc1.weight", "t" } })
]], H.ROOT .. "/" .. RECIPE, dir .. "/template.pt"))
    -- graft.check cannot see it: same names and shapes
    C.graft_ok("run", broken, dir .. "/model.ckpt", dir .. "/broken.pt")
    out = C.graft_ok("check", dir .. "/broken.pt", dir .. "/template.pt")
    assert.truthy(out:find("ok: 8 tensors match the template", 1, true), out)

    C.assert_outputs(GEN, dir, "net.pt", { "broken.pt" }) -- broken: the missing Flatten reorder
  end)

  it("drops the optimizer state and names every step in the dry run", function()
    local out = C.graft_ok("run", RECIPE, "--dry-run", dir .. "/model.ckpt", dir .. "/x.pt",
      "fmap=4x4x16")
    assert.truthy(out:find("fc1/kernel float32 {256,32} -> fc1.weight float32 {32,256}  [flatten_dense_tf_to_torch fmap 4x4x16]",
      1, true), out)
    assert.truthy(out:find("conv2/kernel float32 {3,3,8,16} -> conv2.weight float32 {16,8,3,3}  [conv_tf_to_torch]", 1, true), out)
    assert.truthy(out:find("fc2/kernel float32 {32,10} -> fc2.weight float32 {10,32}  [dense_tf_to_torch]", 1, true), out)
    for _, n in ipairs({ "global_step", "beta1_power", "beta2_power", "conv1/kernel/Adam", "fc2/bias/Adam_1" }) do
      assert.truthy(out:find("\n" .. n .. " [^\n]*%(dropped%)"), n .. "\n" .. out)
    end
    assert.falsy(H.exists(dir .. "/x.pt"))
  end)

  it("refuses a missing fmap, a feature map that fits no Dense kernel and unknown arguments", function()
    local _, err, code = H.graft("run", RECIPE, dir .. "/model.ckpt", dir .. "/x.pt")
    assert.are.equal(2, code)
    assert.truthy(err:find("fmap= is required", 1, true), err)
    _, err, code = H.graft("run", RECIPE, dir .. "/model.ckpt", dir .. "/x.pt", "fmap=4x4x8")
    assert.are.equal(2, code)
    assert.truthy(err:find("no Dense kernel has 128 rows (fmap=4x4x8)", 1, true), err)
    _, err, code = H.graft("run", RECIPE, dir .. "/model.ckpt", dir .. "/x.pt", "fmp=4x4x16")
    assert.are.equal(2, code)
    assert.truthy(err:find('unknown argument "fmp" (accepted: fmap, template)', 1, true), err)
  end)
end)
