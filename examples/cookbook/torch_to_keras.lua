-- A PyTorch state dict -> Keras weights that the Keras model built like
-- the torch module loads with model.load_weights (or, with base=, a
-- full-model .h5 that keras.models.load_model reads):
--
--   graft run examples/cookbook/torch_to_keras.lua IN OUT [MODULE=LAYER ...]
--       [fmap=HxWxC] [base=MODEL.h5] [gru=reset_before]
--
-- IN: anything graft opens holding the state dict's names (a .pt/.bin
-- torch.save wrote, safetensors, npz...). OUT: `.h5` (tf-keras / Keras 2
-- save_weights layout; Keras 3 reads it too) or `.weights.h5` (Keras 3).
-- Modules are taken in the state dict's order, as Keras's .h5 loader pairs
-- weights with the model's layers by position:
--   ConvNd        weight (out, in, k..) -> kernel (k.., in, out)
--   Linear        weight (out, in) -> kernel (in, out); the first Linear
--                 after the convs, when it reads flattened feature maps
--                 (its inputs a multiple of the last conv's channels, not
--                 the channels alone), also has its input columns reordered from torch's
--                 (c, h, w) to Keras's (h, w, c): the map {h, w, c} comes
--                 from fmap=, else base='s model config, else square maps
--                 are assumed (and said) when the column count allows.
--   BatchNormNd   weight, bias, running_mean, running_var -> gamma, beta,
--                 moving_mean, moving_variance (num_batches_tracked dropped)
--   nn.LSTM       -> one Keras LSTM per stacked layer (bias = b_ih + b_hh);
--                 bidirectional -> Bidirectional(LSTM)
--   nn.GRU        -> GRU(reset_after=True) (bias rows b_ih, b_hh); with
--                 gru=reset_before the source is a module computing Keras's
--                 reset_after=False GRU under nn.GRU's names, written as
--                 GRU(reset_after=False) (bias b_ih + b_hh). A real nn.GRU
--                 has no reset_after=False equivalent.
-- .h5 layer names: the module's with "." -> "_" (stacked layer n > 0:
-- "<name>_<n>") unless MODULE=LAYER renames it (rnn.l1=lstm_1 for a
-- stacked layer). .weights.h5 names layers as Keras 3 does, by class
-- (conv2d, conv2d_1, dense, lstm, bidirectional...): renames are refused.

local graft = require "graft"
local L = graft.layouts

local src, dst = ...
assert(src and dst, "usage: graft run examples/cookbook/torch_to_keras.lua IN OUT.h5|OUT.weights.h5 "
  .. "[module=layer ...] [fmap=HxWxC] [base=MODEL.h5] [gru=reset_before]")
local function fail(msg) error("graft: torch_to_keras: " .. msg, 0) end

local rename, fmap_arg, base, gru_mode = {}, nil, nil, "reset_after"
for i = 3, select("#", ...) do
  local a = select(i, ...)
  local k, v = a:match("^([^=]+)=(.*)$")
  if not k then fail("argument " .. a .. " is not KEY=VALUE") end
  if k == "fmap" then
    fmap_arg = {}
    for n in v:gmatch("%d+") do fmap_arg[#fmap_arg + 1] = math.tointeger(tonumber(n)) end
  elseif k == "base" then
    base = v
  elseif k == "gru" then
    if v ~= "reset_before" then fail("gru=" .. v .. ": only gru=reset_before") end
    gru_mode = v
  else
    rename[k] = v
  end
end
local keras3 = dst:match("%.weights%.h5$") ~= nil
if keras3 and next(rename) then
  fail("a .weights.h5 names layers by class as Keras 3 does (conv2d, dense_1, ...): "
    .. "MODULE=LAYER renames apply to .h5 output only")
end
if keras3 and base then fail("base= writes a full-model .h5; a .weights.h5 holds weights only") end

local sd = graft.open(src)
local names = graft.names(sd)

-- Flatten feature maps from the base model's config: {dense layer = {h, w, c}}.
local fmaps = base and L.keras_flatten_fmaps(graft.keras.config(base)) or {}

-- Modules in state-dict order: "features.0.weight" -> "features.0";
-- "rnn.weight_ih_l0_reverse" -> "rnn" (parameter "weight_ih_l0_reverse").
local modules, by = {}, {}
for _, n in ipairs(names) do
  local mod, p = n:match("^(.*)%.([^.]+)$")
  if not mod then mod, p = "", n end
  if not by[mod] then
    by[mod] = { name = mod, params = {} }
    modules[#modules + 1] = by[mod]
  end
  by[mod].params[p] = n
end

local function kind(m)
  local p = m.params
  if p.running_mean then return "bn" end
  if p.weight_ih_l0 then
    local g = sd[p.weight_ih_l0].shape[1] // sd[p.weight_hh_l0].shape[2]
    if g == 4 then return "lstm" elseif g == 3 then return "gru" end
    fail(src .. ": " .. p.weight_ih_l0 .. ": neither an nn.LSTM nor an nn.GRU (" .. g .. " gate blocks)")
  end
  local w = p.weight and sd[p.weight]
  if w and w.ndim >= 3 and w.ndim <= 5 then return "conv" end
  if w and w.ndim == 2 then return "linear" end
  fail(src .. ": module " .. m.name .. ": a module this recipe does not convert")
end

-- Keras 3 object names: the snake-cased class, de-duplicated _1, _2, ...
local used = {}
local function class_name(cls)
  local n = used[cls] or 0
  used[cls] = n + 1
  return n == 0 and cls or (cls .. "_" .. n)
end
local function layer_name(mod, cls, n)
  if keras3 then return class_name(cls) end
  local key = n and n > 0 and (mod .. ".l" .. n) or mod
  local r = rename[key]
  if r then return r end
  local l = mod:gsub("%.", "_")
  return (n and n > 0) and (l .. "_" .. n) or l
end

local rules, order = {}, {}
-- One rule consuming `from` (source names, in order) and making `targets`.
local function rule(from, targets, transform, label)
  for _, t in ipairs(targets) do order[#order + 1] = t end
  local first, nin = from[1], #from
  rules[#rules + 1] = { function(n) return n == first end, targets, function(...)
    return transform(table.unpack(table.pack(...), 1, nin))
  end, from = from, name = label }
end

local last_conv_channels, linear_seen = nil, false
for _, m in ipairs(modules) do
  local k, p = kind(m), m.params
  if k == "conv" then
    local w = sd[p.weight]
    last_conv_channels = w.shape[1]
    local l = layer_name(m.name, "conv" .. (w.ndim - 2) .. "d")
    rule({ p.weight, p.bias }, { l .. "/kernel", p.bias and l .. "/bias" or nil }, function(x, b)
      return L.conv_torch_to_tf(x), b
    end, "conv_torch_to_tf")
  elseif k == "linear" then
    local w = sd[p.weight]
    local l = layer_name(m.name, "dense")
    local fmap = fmaps[l]
    -- A Linear whose inputs are not a multiple of the last conv's channels
    -- does not read its flattened maps (a pooling or other op between).
    if not fmap and not linear_seen and last_conv_channels and w.shape[2] ~= last_conv_channels
        and w.shape[2] % last_conv_channels == 0 then
      fmap = fmap_arg
      if not fmap then
        local hw = w.shape[2] // last_conv_channels
        local side = math.tointeger(math.floor(math.sqrt(hw) + 0.5))
        if side * side ~= hw then
          fail(src .. ": " .. p.weight .. ": this Linear reads flattened conv maps of " .. last_conv_channels
            .. " channels; give their shape as fmap=HxWxC (or base=MODEL.h5)")
        end
        fmap = { side, side, last_conv_channels }
        print(("%s: assuming %dx%d feature maps of %d channels before the Flatten (fmap=%dx%dx%d)"):format(
          p.weight, side, side, last_conv_channels, side, side, last_conv_channels))
      end
    end
    linear_seen = true
    if fmap then
      rule({ p.weight, p.bias }, { l .. "/kernel", p.bias and l .. "/bias" or nil }, function(x, b)
        return L.flatten_dense_torch_to_tf(x, fmap), b
      end, "flatten_dense_torch_to_tf {" .. table.concat(fmap, ",") .. "}")
    else
      rule({ p.weight, p.bias }, { l .. "/kernel", p.bias and l .. "/bias" or nil }, function(x, b)
        return L.dense_torch_to_tf(x), b
      end, "dense_torch_to_tf")
    end
  elseif k == "bn" then
    local l = layer_name(m.name, "batch_normalization")
    rule({ p.weight, p.bias, p.running_mean, p.running_var },
      { l .. "/gamma", l .. "/beta", l .. "/moving_mean", l .. "/moving_variance" },
      function(...) return ... end, "batchnorm torch -> keras")
    if p.num_batches_tracked then
      local nbt = p.num_batches_tracked
      rules[#rules + 1] = { function(n) return n == nbt end, graft.drop }
    end
  else
    -- nn.LSTM / nn.GRU: one Keras layer per stacked layer n.
    local cls = k
    local f, label = L.lstm_torch_to_keras, "lstm_torch_to_keras"
    if k == "gru" and gru_mode == "reset_before" then
      f, label = L.gru_reset_before_torch_to_keras, "gru_reset_before_torch_to_keras"
    elseif k == "gru" then
      f, label = L.gru_torch_to_keras, "gru_torch_to_keras"
    end
    local n = 0
    while p["weight_ih_l" .. n] do
      local bidi = p["weight_ih_l" .. n .. "_reverse"] ~= nil
      local l = layer_name(m.name, bidi and "bidirectional" or cls, n)
      for _, reverse in ipairs(bidi and { false, true } or { false }) do
        local t = L.torch_rnn_names(n, reverse, m.name == "" and "" or m.name .. ".")
        local cell
        if keras3 then
          cell = bidi and (l .. (reverse and "/backward_layer" or "/forward_layer") .. "/cell") or (l .. "/cell")
        else
          cell = bidi and (l .. (reverse and "/backward_" or "/forward_") .. cls .. "/" .. cls .. "_cell")
            or (l .. "/" .. cls .. "_cell")
        end
        local from = { t.weight_ih, t.weight_hh }
        if p[t.bias_ih:match("[^.]+$")] then from[#from + 1] = t.bias_ih end
        if p[t.bias_hh:match("[^.]+$")] then from[#from + 1] = t.bias_hh end
        local has_bias = #from > 2
        rule(from, { cell .. "/kernel", cell .. "/recurrent_kernel", has_bias and cell .. "/bias" or nil },
          function(wi, wh, bi, bh)
            local r = f(wi, wh, bi, bh)
            return r.kernel, r.recurrent_kernel, r.bias
          end, label)
      end
      n = n + 1
    end
  end
end

local keras_weights = graft.map(sd, rules)
local opts = { format = keras3 and "keras3" or "keras", order = order, base = base }
graft.save(dst, keras_weights, opts)
print(("%s: %d Keras weights from %d tensors"):format(dst, #order, #names))
return rules
