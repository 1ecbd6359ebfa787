-- graft's side of bench/onnx.sh, printing "name value" lines.
-- usage: lua5.4 bench/onnx_steps.lua JOB.onnx STEP
--   open   open + list names and shapes (mean of 20), peak RSS
--   read   open + every tensor copied into its own buffer (clone; best of 3)
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local core = graft.core

local path, step = arg[1], arg[2]

if step == "open" then
  local n = 20
  local t0 = core.now()
  for _ = 1, n do
    local m = graft.open(path)
    for _, k in ipairs(graft.names(m)) do local _ = m[k].shape end
  end
  print("graft", (core.now() - t0) / n)
  print("rss", core.maxrss())
elseif step == "read" then
  print("graft", common.best(function()
    local m = graft.open(path)
    for _, k in ipairs(graft.names(m)) do
      local r <close> = m[k]:clone()
    end
  end, 3))
  print("rss", core.maxrss())
end
