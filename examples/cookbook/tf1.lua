-- What the TF1 cookbook recipes share (tf1_cnn_to_torch.lua,
-- tf1_lstm_to_torch.lua, tf1_bert_to_torch.lua): their k=v arguments, the
-- rules that drop a TF1 training checkpoint's optimizer state, and the
-- ending every recipe has (R.run, R.main: map, check against a template,
-- then save).
-- Loaded by the recipes with dofile from their own directory:
--   local tf1 = dofile(tf1_dir .. "tf1.lua")

local graft = require "graft"

local M = {}

-- A tf.compat.v1.train.Saver checkpoint of a training run holds, beside
-- the model's variables: the step counter `global_step`; the optimizer's
-- slots, one variable per trained variable named <var>/<slot>
-- (AdamOptimizer: Adam, Adam_1 and the accumulators beta1_power,
-- beta2_power at the top level; MomentumOptimizer: Momentum;
-- RMSPropOptimizer: RMSProp, RMSProp_1; AdagradOptimizer: Adagrad;
-- google-research BERT's AdamWeightDecayOptimizer: adam_m, adam_v);
-- ExponentialMovingAverage shadows <var>/ExponentialMovingAverage. None of
-- it is a weight of the model.
local SLOTS = { Adam = true, Adam_1 = true, Momentum = true, RMSProp = true, RMSProp_1 = true,
                Adagrad = true, adam_m = true, adam_v = true, ExponentialMovingAverage = true }

local function training_state(name)
  local last = name:match("([^/]+)$")
  if name ~= last and SLOTS[last] then return true end
  if last == "global_step" then return true end
  -- beta1_power, beta2_power (beta1_power_1 ... when two Adam optimizers)
  return last:match("^beta[12]_power[_%d]*$") ~= nil
end

M.drop_training = {
  { training_state, graft.drop, name = "TF1 training state (global_step, optimizer slots)" },
}

-- k=v arguments after SRC and DST -> a table; `accepted` maps each key to
-- its description (for the usage text); any other key is an error.
function M.args(recipe, list, accepted)
  local o = {}
  for _, a in ipairs(list) do
    local k, v = tostring(a):match("^([%w_]+)=(.*)$")
    if not k then error(string.format("graft: %s: argument %q is not KEY=VALUE", recipe, a), 0) end
    if not accepted[k] then
      local keys = {}
      for key in pairs(accepted) do keys[#keys + 1] = key end
      table.sort(keys)
      error(string.format("graft: %s: unknown argument %q (accepted: %s)", recipe, k,
        table.concat(keys, ", ")), 0)
    end
    o[k] = v
  end
  return o
end

-- Is this chunk (source of debug.getinfo) the recipe `graft run` runs, as
-- opposed to one another recipe loads with dofile to extend?
function M.is_main(source)
  return type(_G.arg) == "table" and _G.arg[0] ~= nil and source == "@" .. tostring(_G.arg[0])
end

-- The ending: with a template (any file graft opens holding the target's
-- names and shapes, e.g. the torch model's state_dict saved by
-- torch.save), graft.check it strictly (missing, unexpected, misspelt
-- names, shapes, dtypes) and refuse to write on any problem; then save in
-- the rules' order.
function M.finish(recipe, out, dst, template)
  if template then
    local ok, report = graft.check(out, template, { strict = true })
    if not ok then
      io.stderr:write(report.summary, "\n")
      error(string.format("graft: %s: %s does not fit the template %s (%d problem%s); nothing written",
        recipe, dst, template, report.count, report.count == 1 and "" or "s"), 0)
    end
  end
  local n = #graft.names(out)
  print(string.format("%s: %d tensor%s%s -> %s", recipe, n, n == 1 and "" or "s",
    template and (", checked against " .. template) or "", dst))
  graft.save(dst, out)
end

-- The ending of a recipe module R whose R.rules(opts, ckpt) gives its
-- rules: defines R.run(src, dst, opts [, overrides]) (open src, let
-- spec.vet(ckpt, opts, src) refuse it, map with the overrides tried before
-- R's rules, finish) and R.main(src, dst, k=v ...) (parse the arguments
-- spec.accepted allows, run). `source` is the recipe's chunk source and
-- `...` its arguments: when it is the chunk `graft run` runs, run R.main.
-- spec = {recipe = name, accepted = {key = description}, usage = text,
-- vet = function or nil}. Returns R.
function M.recipe(R, spec, source, ...)
  function R.run(src, dst, opts, overrides)
    if not (src and dst) then error(spec.usage, 0) end
    local ckpt = graft.open(src)
    if spec.vet then spec.vet(ckpt, opts, src) end
    local rules = R.rules(opts, ckpt)
    if overrides then rules = graft.rules.extend(overrides, rules) end
    M.finish(spec.recipe, graft.map(ckpt, rules), dst, opts.template)
  end
  function R.main(src, dst, ...)
    R.run(src, dst, M.args(spec.recipe, { ... }, spec.accepted))
  end
  if M.is_main(source) then R.main(...) end
  return R
end

return M
