-- A PyTorch state dict (Conv2d, BatchNorm2d, Linear layers) into a Keras 2
-- weights file that `model.load_weights(path)` reads: torch names become
-- Keras layer/weight names, conv weights OIHW -> HWIO, linear weights
-- [out, in] -> [in, out], BatchNorm's weight/bias/running stats become
-- gamma/beta/moving_mean/moving_variance; num_batches_tracked is dropped.
-- The input is anything graft.open reads holding the state dict's names
-- (a .pt/.bin torch.save wrote, safetensors, npz, ...).
--
--   graft run examples/torch_to_keras.lua IN OUT.h5 [LAYER=NAME ...]
--
-- Keras layers are named after the torch module ("features.0" ->
-- "features_0") unless LAYER=NAME pairs rename them (e.g. features.0=conv2d).
-- Layers are written in the state dict's order, as Keras's load_weights
-- pairs them with the model's layers by position.

local graft = require "graft"

local src, dst = ...
assert(src and dst, "usage: graft run examples/torch_to_keras.lua IN OUT.h5 [module=layer ...]")
local rename = {}
for i = 3, select("#", ...) do
  local a = select(i, ...)
  local k, v = a:match("^([^=]+)=(.+)$")
  if k then rename[k] = v end
end

local sd = graft.open(src)

-- The module of each parameter, and what kind of layer it is.
local kinds = {}
for _, name in ipairs(graft.names(sd)) do
  local mod, p = name:match("^(.*)%.([^.]+)$")
  if p == "running_mean" then kinds[mod] = "bn"
  elseif p == "weight" and kinds[mod] == nil then
    kinds[mod] = sd[name].ndim == 4 and "conv" or sd[name].ndim == 2 and "dense" or "bn"
  end
end

local function layer(mod) return rename[mod] or (mod:gsub("%.", "_")) end

local BN = { weight = "gamma", bias = "beta", running_mean = "moving_mean",
             running_var = "moving_variance" }

local out, order = {}, {}
local function put(name, t)
  out[name] = t
  order[#order + 1] = name
end

-- Keras orders a layer's weights trainable first: kernel, bias; BatchNorm
-- gamma, beta, moving_mean, moving_variance.
local done = {}
for _, name in ipairs(graft.names(sd)) do
  local mod = name:match("^(.*)%.[^.]+$")
  if mod and not done[mod] then
    done[mod] = true
    local k, l = kinds[mod], layer(mod)
    if k == "conv" then
      put(l .. "/kernel", sd[mod .. ".weight"]:permute(3, 4, 2, 1))
      if sd[mod .. ".bias"] then put(l .. "/bias", sd[mod .. ".bias"]) end
    elseif k == "dense" then
      put(l .. "/kernel", sd[mod .. ".weight"]:t())
      if sd[mod .. ".bias"] then put(l .. "/bias", sd[mod .. ".bias"]) end
    elseif k == "bn" then
      for _, p in ipairs({ "weight", "bias", "running_mean", "running_var" }) do
        put(l .. "/" .. BN[p], sd[mod .. "." .. p])
      end
    end
  end
end

graft.save(dst, out, { format = "keras", order = order })
print(("wrote %s: %d weights in %d layers"):format(dst, #order, (function()
  local n = 0
  for _ in pairs(done) do n = n + 1 end
  return n
end)()))
