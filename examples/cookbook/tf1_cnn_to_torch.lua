-- Cookbook: a TF1 conv net checkpoint (tf.compat.v1.train.Saver; conv
-- kernels (kh, kw, in, out), Dense kernels (in, out), NHWC feature maps
-- flattened in h, w, c order) -> a torch state dict for the same net
-- written as nn.Module(Conv2d, ReLU, ..., Flatten, Linear, ...) on NCHW
-- inputs. docs/cookbook/tf1_cnn_to_torch.md explains each rule.
--
--   graft run examples/cookbook/tf1_cnn_to_torch.lua CKPT OUT.pt fmap=HxWxC [template=T.pt]
--
-- CKPT: the checkpoint prefix (model.ckpt-1000), its .index, or its
-- directory. fmap (required): the shape of the feature map that the
-- Flatten receives, in TF's NHWC view (e.g. 4x4x16); the Dense layer whose
-- kernel has h*w*c rows is the one after the Flatten. fmap=none for a net
-- without a Flatten: required so that a forgotten fmap cannot pass for
-- one (the wrong reorder keeps every shape). template: the target model's
-- state_dict (torch.save(model.state_dict(), "t.pt")) to check the result
-- against before anything is written. TF scopes become torch module paths
-- (conv1/kernel -> conv1.weight, block/fc/bias -> block.fc.bias); the
-- optimizer's slots and global_step are dropped.
--
-- As a module (dofile) it returns {rules = function(opts, ckpt), run =
-- function(src, dst, opts [, overrides])}: overrides are rules tried
-- before the recipe's own (graft.rules.extend(overrides, rules)).

local graft = require "graft"
local L = graft.layouts

local source = debug.getinfo(1, "S").source
local here = source:match("^@(.*[/\\])") or "./"
local tf1 = dofile(here .. "tf1.lua")

local R = {}
local RECIPE = "tf1_cnn_to_torch"
local ACCEPTED = { fmap = "HxWxC: the feature map the Flatten receives (NHWC), or none",
                   template = "the target's state_dict file to check against" }
local USAGE = "usage: graft run examples/cookbook/tf1_cnn_to_torch.lua CKPT OUT.pt fmap=HxWxC [template=T.pt]"

local function parse_fmap(s)
  local dims = {}
  for d in tostring(s):gmatch("[^x,]+") do dims[#dims + 1] = math.tointeger(tonumber(d)) end
  if #dims < 2 then
    error(string.format("graft: %s: fmap=%s: want the feature map as HxWxC (LxC, DxHxWxC)", RECIPE, s), 0)
  end
  for _, d in ipairs(dims) do
    if not d or d < 1 then error(string.format("graft: %s: fmap=%s: sizes must be positive integers", RECIPE, s), 0) end
  end
  return dims
end

local function product(dims)
  local n = 1
  for _, d in ipairs(dims) do n = n * d end
  return n
end

-- TF scope path -> torch module path.
local function module_path(scope) return (scope:gsub("/", ".")) end

-- The rules for the checkpoint `ckpt` (its shapes tell convs from Dense
-- layers) whose Flatten sees the map opts.fmap ("HxWxC").
function R.rules(opts, ckpt)
  local fmap = opts.fmap and opts.fmap ~= "none" and parse_fmap(opts.fmap)
  local rows = fmap and product(fmap)
  -- A matcher for <scope>/kernel whose shape passes `fits`; the capture is
  -- the torch module path of the scope.
  local function kernel(fits)
    return function(name)
      local scope = name:match("^(.*)/kernel$")
      if scope and fits(ckpt[name].shape) then return module_path(scope) end
    end
  end
  return graft.rules.extend(tf1.drop_training, {
    -- The Dense after the Flatten: its kernel's rows run over (h, w, c) in
    -- TF's NHWC flatten, the torch Linear's columns over (c, h, w). The
    -- shapes agree either way: only this reorder makes the outputs equal.
    { kernel(function(s) return #s == 2 and s[1] == rows end), "%1.weight",
      function(t) return L.flatten_dense_tf_to_torch(t, fmap) end,
      name = "flatten_dense_tf_to_torch fmap " .. tostring(opts.fmap) },
    -- Conv kernels (kh, kw, in, out) -> torch (out, in, kh, kw): numpy's
    -- transpose(3, 2, 0, 1) (1-D and 3-D convs alike).
    { kernel(function(s) return #s >= 3 and #s <= 5 end), "%1.weight", "conv_tf_to_torch" },
    -- Other Dense kernels (in, out) -> Linear weight (out, in).
    { kernel(function(s) return #s == 2 end), "%1.weight", "dense_tf_to_torch" },
    { function(name)
        local scope = name:match("^(.*)/bias$")
        return scope and module_path(scope)
      end, "%1.bias" },
  })
end

-- Refuse a checkpoint the fmap argument does not fit.
local function vet(ckpt, opts, src)
  if opts.fmap == nil then
    error(string.format("graft: %s: fmap= is required: the feature map the Flatten receives as HxWxC "
      .. "(NHWC), or fmap=none for a net without a Flatten", RECIPE), 0)
  elseif opts.fmap ~= "none" then
    -- A fmap that fits no Dense kernel is a mistake, not a net without Flatten.
    local rows, found = product(parse_fmap(opts.fmap)), false
    for _, name in ipairs(graft.names(ckpt)) do
      local t = ckpt[name]
      if name:match("/kernel$") and #t.shape == 2 and t.shape[1] == rows then found = true end
    end
    if not found then
      error(string.format("graft: %s: %s: no Dense kernel has %d rows (fmap=%s)", RECIPE, src, rows, opts.fmap), 0)
    end
  end
end

return tf1.recipe(R, { recipe = RECIPE, accepted = ACCEPTED, usage = USAGE, vet = vet }, source, ...)
