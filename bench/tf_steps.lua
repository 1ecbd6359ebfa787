-- TensorFlow checkpoint benchmark steps with graft, printing "name value"
-- lines for bench/tf.sh.
-- usage: lua5.4 bench/tf_steps.lua STEP ARGS...
--   write JOB.safetensors PREFIX   the job as a TF checkpoint (graft's writer)
--   open PREFIX                    open + list (names, shapes), mean of 50
--   read PREFIX                    every tensor materialised once (crc32c
--                                  checked on first use), best of 3 fresh opens
--   convert IN OUT                 HWIO->OIHW for 4-D, transpose for 2-D,
--                                  written to OUT (format from its extension)
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local core = graft.core

local step = arg[1]

if step == "write" then
  local t0 = core.now()
  graft.save(arg[3], graft.open(arg[2]), { format = "tf" })
  print("graft", core.now() - t0)
elseif step == "open" then
  local n = 50
  local t0 = core.now()
  for _ = 1, n do
    local m = graft.open(arg[2])
    for _, k in ipairs(graft.names(m)) do local _ = m[k].shape end
  end
  print("graft", (core.now() - t0) / n)
elseif step == "read" then
  local best = math.huge
  for _ = 1, 3 do
    local t0 = core.now()
    local m = graft.open(arg[2])
    for _, k in ipairs(graft.names(m)) do
      local r <close> = m[k]:contiguous()
    end
    best = math.min(best, core.now() - t0)
    m = nil
    collectgarbage()
  end
  print("graft", best)
elseif step == "convert" then
  local t0 = core.now()
  local m = graft.open(arg[2])
  local o = {}
  for _, n in ipairs(graft.names(m)) do
    local t = m[n]
    o[n] = t.ndim == 4 and t:permute(4, 3, 1, 2) or t:t()
  end
  graft.save(arg[3], o)
  print("graft", core.now() - t0)
  print("rss", core.maxrss())
end
