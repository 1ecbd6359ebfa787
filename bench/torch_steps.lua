-- graft's side of bench/torch.sh, printing "name value" lines.
-- usage: lua5.4 bench/torch_steps.lua JOB.pt STEP [OUT]
--   open           open + list names and shapes (mean of 20), peak RSS
--   convert OUT    open, permute (conv HWIO -> OIHW, dense transpose) and
--                  half as lazy views, graft.save OUT; time and peak RSS
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local core = graft.core

local path, step, out = arg[1], arg[2], arg[3]

if step == "open" then
  local n = 20
  local t0 = core.now()
  for _ = 1, n do
    local m = graft.open(path)
    for _, k in ipairs(graft.names(m)) do local _ = m[k].shape end
  end
  print("graft", (core.now() - t0) / n)
  print("rss", core.maxrss())
elseif step == "convert" then
  local t0 = core.now()
  local m = graft.open(path)
  local o, order = {}, {}
  for _, n in ipairs(graft.names(m)) do
    local t = m[n]
    o[n] = (t.ndim == 4 and t:permute(4, 3, 1, 2) or t:t()):half()
    order[#order + 1] = n
  end
  graft.save(out, o, { order = order })
  print("graft", core.now() - t0)
  print("rss", core.maxrss())
end
