-- Cookbook (e): a TF1 LSTM checkpoint (MultiRNNCell of LSTMCell and
-- BasicLSTMCell, forget_bias=1.0, run by dynamic_rnn; a Dense on top; one
-- Momentum step) -> nn.LSTM + nn.Linear through the one documented
-- command; proven by torch's forward pass against TF's (oracle
-- environment). spec/fixtures/cookbook/tf1_lstm_to_torch.py makes the
-- checkpoint and checks graft's outputs.
local H = require "helper"
local C = require "cookbook.cookbook"

local RECIPE = "examples/cookbook/tf1_lstm_to_torch.lua"
local GEN = "tf1_lstm_to_torch"

describe("cookbook tf1_lstm_to_torch", function()
  local dir
  setup(function()
    dir = C.make(GEN)
  end)
  teardown(H.cleanup)

  it("gives nn.LSTM the TF cells' outputs; without the forget_bias fold or the gate reorder it does not", function()
    local ckpt, tpl = dir .. "/model.ckpt", "template=" .. dir .. "/template.pt"
    local out = C.graft_ok("run", RECIPE, ckpt, dir .. "/lstm.pt", tpl)
    assert.truthy(out:find("10 tensors, checked against", 1, true), out)

    -- Broken 1: forget_bias not folded (what forgetting TF's default does).
    C.graft_ok("run", RECIPE, ckpt, dir .. "/nofold.pt", "forget_bias=0", tpl)
    -- Broken 2: the recipe extended with an override that keeps TF's gate
    -- order i,j,f,o (torch's is i,f,g,o); shapes unchanged.
    local broken = dir .. "/gates.lua"
    H.write(broken, string.format([[
local graft = require "graft"
local base = dofile(%q)
local src, dst = ...
local function keep_order(k, b)
  local w = k:t()
  local nin = k.shape[1] - k.shape[2] // 4
  return w:narrow(2, 1, nin), w:narrow(2, nin + 1, k.shape[2] // 4), b + 0, graft.zeros(b.shape)
end
base.run(src, dst, { template = %q }, {
  { "^(.-)/multi_rnn_cell/cell_(%%d+)/([%%w_]*lstm_cell)/kernel$",
    { "%%1.weight_ih_l%%2", "%%1.weight_hh_l%%2", "%%1.bias_ih_l%%2", "%%1.bias_hh_l%%2" }, keep_order,
    from = { "%%1/multi_rnn_cell/cell_%%2/%%3/kernel", "%%1/multi_rnn_cell/cell_%%2/%%3/bias" } },
})
]], H.ROOT .. "/" .. RECIPE, dir .. "/template.pt"))
    -- graft.check cannot see either: same names and shapes
    C.graft_ok("run", broken, ckpt, dir .. "/gates.pt")

    C.assert_outputs(GEN, dir, "lstm.pt", { "nofold.pt", "gates.pt" })
  end)

  it("plans each cell as one step from kernel and bias, and drops the optimizer state", function()
    local out = C.graft_ok("run", RECIPE, "--dry-run", dir .. "/model.ckpt", dir .. "/x.pt")
    assert.truthy(out:find("rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel float32 {16,32} + "
      .. "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/bias float32 {32} -> rnn.weight_ih_l1 float32 {32,8}, rnn.weight_hh_l1 float32 {32,8}, "
      .. "rnn.bias_ih_l1 float32 {32}, rnn.bias_hh_l1 float32 {32}  [lstm_tf1_to_torch forget_bias 1.0]", 1, true), out)
    assert.truthy(out:find("dense/kernel float32 {8,3} -> dense.weight float32 {3,8}  [dense_tf_to_torch]", 1, true), out)
    for _, n in ipairs({ "global_step", "dense/kernel/Momentum", "rnn/multi_rnn_cell/cell_0/lstm_cell/bias/Momentum" }) do
      assert.truthy(out:find("\n" .. n:gsub("%p", "%%%0") .. " [^\n]*%(dropped%)"), n .. "\n" .. out)
    end
    local _, err2, code2 = H.graft("run", RECIPE, dir .. "/model.ckpt", dir .. "/x.pt", "forget_bias=one")
    assert.are.equal(2, code2)
    assert.truthy(err2:find("forget_bias=one is not a number", 1, true), err2)
  end)
end)
