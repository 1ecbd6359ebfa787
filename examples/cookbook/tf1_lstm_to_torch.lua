-- Cookbook: a TF1 LSTM checkpoint (tf.compat.v1.nn.rnn_cell.LSTMCell or
-- BasicLSTMCell, alone or stacked in a MultiRNNCell, run by dynamic_rnn;
-- Dense and conv layers around it) -> a torch state dict for nn.LSTM
-- (batch_first or not: the weights are the same) and nn.Linear.
-- docs/cookbook/tf1_lstm_to_torch.md explains each rule.
--
--   graft run examples/cookbook/tf1_lstm_to_torch.lua CKPT OUT.pt [forget_bias=1.0] [template=T.pt]
--
-- forget_bias: the cells' constructor argument (default 1.0 in both; it
-- is not in the checkpoint). TF computes the forget gate as
-- sigmoid(f + forget_bias); torch has no such term, so it is added to the
-- forget block of bias_ih. Scopes become module paths:
-- rnn/multi_rnn_cell/cell_1/lstm_cell/kernel -> rnn.weight_ih_l1 ...,
-- rnn/lstm_cell/kernel -> rnn.weight_ih_l0 ...; other kernels and biases
-- as examples/cookbook/tf1_cnn_to_torch.lua maps them (this recipe
-- extends its rules); optimizer state and global_step are dropped.
-- Peephole (use_peepholes) and projection (num_proj) cells have no nn.LSTM
-- equivalent: their extra variables are left unmatched, which graft.map
-- reports by name.
--
-- As a module (dofile): {rules = function(opts, ckpt), run = function(src,
-- dst, opts [, overrides])}.

local graft = require "graft"
local L = graft.layouts

local source = debug.getinfo(1, "S").source
local here = source:match("^@(.*[/\\])") or "./"
local tf1 = dofile(here .. "tf1.lua")
local cnn = dofile(here .. "tf1_cnn_to_torch.lua")

local R = {}
local RECIPE = "tf1_lstm_to_torch"
local ACCEPTED = { forget_bias = "the cells' forget_bias (default 1.0)",
                   template = "the target's state_dict file to check against" }
local USAGE = "usage: graft run examples/cookbook/tf1_lstm_to_torch.lua CKPT OUT.pt [forget_bias=1.0] [template=T.pt]"

local function forget_bias(opts)
  if opts.forget_bias == nil then return 1.0 end
  local fb = tonumber(opts.forget_bias)
  if not fb then error(string.format("graft: %s: forget_bias=%s is not a number", RECIPE, opts.forget_bias), 0) end
  return fb
end

-- One rule per cell form: the kernel matcher's captures are
-- (scope, layer, cell name, torch module path); `from` pairs the kernel with
-- its bias; four torch parameters come out.
local function cell_rule(matcher, from_dir, fb)
  return { matcher, { "%4.weight_ih_l%2", "%4.weight_hh_l%2", "%4.bias_ih_l%2", "%4.bias_hh_l%2" },
    function(kernel, bias)
      -- i,j,f,o -> torch i,f,g,o; (in+units, 4u) split at `in` into
      -- weight_ih / weight_hh, transposed; forget_bias folded; bias_hh 0.
      local p = L.lstm_tf1_to_torch(kernel, bias, fb)
      return p.weight_ih, p.weight_hh, p.bias_ih, p.bias_hh
    end,
    from = { from_dir .. "/kernel", from_dir .. "/bias" },
    name = string.format("lstm_tf1_to_torch forget_bias %s", fb) }
end

local function module_path(scope) return (scope:gsub("/", ".")) end

function R.rules(opts, ckpt)
  local fb = forget_bias(opts)
  return graft.rules.extend({
    -- MultiRNNCell: <scope>/multi_rnn_cell/cell_<k>/<cell>/kernel is layer k.
    cell_rule(function(name)
      local scope, k, cell = name:match("^(.-)/multi_rnn_cell/cell_(%d+)/([%w_]*lstm_cell)/kernel$")
      if scope then return scope, k, cell, module_path(scope) end
    end, "%1/multi_rnn_cell/cell_%2/%3", fb),
    -- One cell: <scope>/lstm_cell/kernel (basic_lstm_cell for BasicLSTMCell).
    cell_rule(function(name)
      local scope, cell = name:match("^(.-)/([%w_]*lstm_cell)/kernel$")
      if scope then return scope, "0", cell, module_path(scope) end
    end, "%1/%3", fb),
  }, cnn.rules({}, ckpt))
end

return tf1.recipe(R, { recipe = RECIPE, accepted = ACCEPTED, usage = USAGE }, source, ...)
