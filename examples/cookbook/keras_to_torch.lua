-- A Keras model's weights -> a PyTorch state dict (.pt, or any format
-- graft writes), for a torch module built like the Keras model:
--
--   graft run examples/cookbook/keras_to_torch.lua IN OUT.pt [LAYER=MODULE ...]
--       [fmap=HxWxC] [gru=reset_before]
--
-- IN: a tf-keras/Keras 2 .h5 (model.save or save_weights), a Keras 3
-- .weights.h5 or .keras. Each Keras layer becomes the torch module of the
-- same name (a Keras 3 file's layers by their `name`, not the class-based
-- object names conv2d_1, dense...) unless LAYER=MODULE renames it
-- ("conv2d=features.0"):
--   Conv1D/2D/3D  kernel (k.., in, out) -> weight (out, in, k..)
--   Dense         kernel (in, out) -> weight (out, in); the first Dense
--                 after a Flatten of feature maps also has its input rows
--                 reordered from Keras's (h, w, c) to torch's (c, h, w).
--                 The map {h, w, c} comes from fmap=, else from the model
--                 config of a full-model .h5 / .keras (its shapes are run
--                 from the input); without either the recipe stops.
--   BatchNormalization gamma, beta, moving_mean, moving_variance ->
--                 weight, bias, running_mean, running_var, and torch's
--                 num_batches_tracked buffer (0). Keras's epsilon is 1e-3:
--                 build BatchNorm2d(..., eps=1e-3).
--   LSTM          -> nn.LSTM parameters (gates i,f,c,o = torch's i,f,g,o;
--                 bias -> bias_ih, bias_hh = 0)
--   GRU           reset_after=True (the default) -> nn.GRU parameters
--                 (gates z,r,h -> r,z,n; the bias's two rows -> bias_ih,
--                 bias_hh). reset_after=False has no nn.GRU equivalent
--                 (the reset gate applies before the recurrent matmul):
--                 refused unless gru=reset_before, which writes nn.GRU-named
--                 parameters for a module computing Keras's variant
--                 (docs/cookbook/keras_rnn_torch.md has one).
--   Bidirectional -> the _reverse parameters of the same torch layer.
-- Recurrent layers mapped to the same module are stacked: the first is
-- layer 0 (weight_ih_l0), the next layer 1, ... (LSTM=rnn LSTM_1=rnn).
-- `graft run --dry-run` prints the plan without writing.

local graft = require "graft"
local L = graft.layouts

local src, dst = ...
assert(src and dst, "usage: graft run examples/cookbook/keras_to_torch.lua IN OUT.pt [layer=module ...] "
  .. "[fmap=HxWxC] [gru=reset_before]")
local rename, fmap_arg, gru_mode = {}, nil, "reset_after"
for i = 3, select("#", ...) do
  local a = select(i, ...)
  local k, v = a:match("^([^=]+)=(.*)$")
  if not k then error("graft: keras_to_torch: argument " .. a .. " is not KEY=VALUE", 0) end
  if k == "fmap" then
    fmap_arg = {}
    for n in v:gmatch("%d+") do fmap_arg[#fmap_arg + 1] = math.tointeger(tonumber(n)) end
  elseif k == "gru" then
    if v ~= "reset_before" then error("graft: keras_to_torch: gru=" .. v .. ": only gru=reset_before", 0) end
    gru_mode = v
  else
    rename[k] = v
  end
end

local keras = graft.open(src)
local names = graft.names(keras)

-- Keras 3 files name a layer's object by its class (conv2d, dense_1) and
-- keep the layer's own name in the object's `name` attribute: use that.
local layer_of = {}
for _, o in ipairs(graft.meta(keras).objects or {}) do
  local seg = o.path:match("^layers/([^/]+)$")
  if seg and o.name and o.name ~= "" then layer_of[seg] = o.name end
end

-- The Flatten feature maps, by the Dense layer that follows each.
local fmaps = {}
if not fmap_arg then
  local ok, cfg = pcall(graft.keras.config, src)
  if ok then fmaps = L.keras_flatten_fmaps(cfg) end
end

-- Objects (name before the last "/") in file order, each with its
-- variables in order; the layer is the first segment.
local objects, by = {}, {}
for _, n in ipairs(names) do
  local obj = n:match("^(.*)/[^/]+$")
  if not obj then error("graft: " .. src .. ": " .. n .. ": not a Keras <layer>/<variable> name", 0) end
  if not by[obj] then
    local seg = obj:match("^[^/]+")
    by[obj] = { path = obj, seg = seg, layer = layer_of[seg] or seg, vars = {} }
    objects[#objects + 1] = by[obj]
  end
  table.insert(by[obj].vars, n)
end

local function var(o, i) return keras[o.vars[i]] end
local function last(n) return n:match("([^/]+)$") end

-- What kind of layer an object is, from its variables.
local function kind(o)
  local v1, v2 = var(o, 1), var(o, 2)
  local tail = last(o.vars[1])
  if tail == "gamma" or tail == "moving_mean" or last(o.vars[#o.vars]) == "moving_variance" then return "bn" end
  if v2 and v1.ndim == 2 and v2.ndim == 2 and v2.shape[2] == v1.shape[2] then
    local g = v2.shape[2] // v2.shape[1]
    if g * v2.shape[1] == v2.shape[2] and (g == 4 or g == 3) then return g == 4 and "lstm" or "gru" end
  end
  if v1.ndim >= 3 and v1.ndim <= 5 then return "conv" end
  if v1.ndim == 2 then return "dense" end
  error("graft: " .. src .. ": " .. o.path .. ": a layer this recipe does not convert", 0)
end

local rules, order = {}, {}
local function rule(o, targets, transform, label)
  for _, t in ipairs(targets) do order[#order + 1] = t end
  local first = o.vars[1]
  local nvars = #o.vars
  -- map passes the `from` tensors, then the matched name: keep the tensors.
  local function f(...)
    local args = table.pack(...)
    return transform(table.unpack(args, 1, nvars))
  end
  rules[#rules + 1] = { function(n) return n == first end, targets, f, from = o.vars, name = label }
end

local rnn_index = {} -- module -> next stacked layer number
local rnn_layer_of = {} -- Keras layer -> its torch layer number
local last_conv_channels = nil
local dense_seen = false

for _, o in ipairs(objects) do
  local k = kind(o)
  local m = rename[o.layer] or rename[o.seg] or o.layer
  if k == "conv" then
    last_conv_channels = var(o, 1).shape[var(o, 1).ndim]
    rule(o, { m .. ".weight", o.vars[2] and m .. ".bias" or nil }, function(w, b)
      return L.conv_tf_to_torch(w), b
    end, "conv_tf_to_torch")
  elseif k == "dense" then
    local fmap = fmaps[o.layer]
    if not fmap and fmap_arg and not dense_seen then fmap = fmap_arg end
    if not fmap and not dense_seen and last_conv_channels
        and var(o, 1).shape[1] ~= last_conv_channels then
      error("graft: " .. src .. ": " .. o.vars[1] .. ": this Dense follows a Flatten of conv feature maps; "
        .. "give their shape as fmap=HxWxC (channels last, e.g. fmap=5x5x16) or use a full-model file", 0)
    end
    dense_seen = true
    if fmap then
      rule(o, { m .. ".weight", o.vars[2] and m .. ".bias" or nil }, function(w, b)
        return L.flatten_dense_tf_to_torch(w, fmap), b
      end, "flatten_dense_tf_to_torch {" .. table.concat(fmap, ",") .. "}")
    else
      rule(o, { m .. ".weight", o.vars[2] and m .. ".bias" or nil }, function(w, b)
        return L.dense_tf_to_torch(w), b
      end, "dense_tf_to_torch")
    end
  elseif k == "bn" then
    rule(o, { m .. ".weight", m .. ".bias", m .. ".running_mean", m .. ".running_var",
              m .. ".num_batches_tracked" }, function(g, b, mean, var_)
      return g, b, mean, var_, graft.zeros({}, "int64")
    end, "batchnorm keras -> torch")
  else
    -- A recurrent cell: <layer>/<cell> or, wrapped by Bidirectional,
    -- <layer>/forward_<x>/<cell> (Keras 3: forward_layer/cell).
    local reverse = o.path:find("/backward_") ~= nil
    local n = rnn_layer_of[o.layer]
    if n == nil then
      n = rnn_index[m] or 0
      rnn_index[m] = n + 1
      rnn_layer_of[o.layer] = n
    end
    local t = L.torch_rnn_names(n, reverse, m .. ".")
    local f, label = L.lstm_keras_to_torch, "lstm_keras_to_torch"
    if k == "gru" then
      local b = var(o, 3)
      if b and b.ndim == 1 then
        if gru_mode ~= "reset_before" then
          error("graft: " .. src .. ": " .. o.vars[3] .. ": a GRU with reset_after=False: torch's nn.GRU "
            .. "applies the reset gate after the recurrent matmul and cannot compute it; pass "
            .. "gru=reset_before to write nn.GRU-named weights for a module that does "
            .. "(docs/cookbook/keras_rnn_torch.md)", 0)
        end
        f, label = L.gru_reset_before_keras_to_torch, "gru_reset_before_keras_to_torch"
      else
        f, label = L.gru_keras_to_torch, "gru_keras_to_torch"
      end
    end
    rule(o, { t.weight_ih, t.weight_hh, t.bias_ih, t.bias_hh }, function(kernel, rec, bias)
      local p = f(kernel, rec, bias)
      return p.weight_ih, p.weight_hh, p.bias_ih, p.bias_hh
    end, label)
  end
end

local torch_weights = graft.map(keras, rules)
graft.save(dst, torch_weights, { order = order })
print(("%s: %d tensors from %d Keras weights"):format(dst, #order, #names))
return rules
