-- What every bench/*_steps.lua shares: graft from this checkout (not an
-- installed rock), and best-of-N timing.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local graft = require "graft"

local common = { graft = graft, core = graft.core }

-- The fastest of `reps` runs of fn (default 5), collecting garbage between.
function common.best(fn, reps)
  local b = math.huge
  for _ = 1, reps or 5 do
    local t0 = graft.core.now()
    fn()
    local dt = graft.core.now() - t0
    if dt < b then b = dt end
    collectgarbage()
  end
  return b
end

return common
