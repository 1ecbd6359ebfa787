-- Keras .h5 benchmark steps with graft, printing "name value" lines for
-- bench/keras.sh.
-- usage: lua5.4 bench/keras_steps.lua make JOB.safetensors OUT.h5
--        lua5.4 bench/keras_steps.lua open|read|load FILE.h5
--        lua5.4 bench/keras_steps.lua convert FILE.h5 OUT.safetensors
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local best = common.best
local core = graft.core

local step, path, out = arg[1], arg[2], arg[3]


if step == "make" then
  -- The 1 GiB job as a Keras 2 weights file: "layer000.conv/kernel" is
  -- layer "layer000_conv", weight "kernel".
  local m = graft.open(path)
  local t, order = {}, {}
  for _, n in ipairs(graft.names(m)) do
    local k = n:gsub("%.", "_")
    t[k] = m[n]
    order[#order + 1] = k
  end
  graft.save(out, t, { format = "keras", order = order })
elseif step == "open" then
  print("graft", best(function()
    local m = graft.open(path)
    local names = graft.names(m)
    for _, n in ipairs(names) do local _ = m[n].shape end
  end, 20))
elseif step == "read" then
  -- Every tensor materialised in memory, as h5py's dataset[()] does.
  local m = graft.open(path)
  print("graft", best(function()
    for _, n in ipairs(graft.names(m)) do
      local r <close> = m[n]:clone()
    end
  end, 3))
elseif step == "load" then
  -- What Keras's load_weights does, with graft: open the file and hold
  -- every weight in memory (best of 3).
  print("graft", best(function()
    local m = graft.open(path)
    local held = {}
    for _, n in ipairs(graft.names(m)) do held[#held + 1] = m[n]:clone() end
  end, 3))
elseif step == "convert" then
  os.remove(out)
  local t0 = core.now()
  local m = graft.open(path)
  local o = graft.map(m, {
    { "/kernel$", graft.keep, function(t) return t.ndim == 4 and t:permute(4, 3, 1, 2) or t:t() end },
  }, { keep_unmatched = true })
  graft.save(out, o)
  print("graft", core.now() - t0)
  print("rss", core.maxrss())
end
