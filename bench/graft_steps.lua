-- The benchmark steps with graft, printing "name value" lines for bench/run.
-- usage: lua5.4 bench/graft_steps.lua JOB.safetensors STEP [OUT]
--   STEP: layout | cast | open | convert OUT | add OUT
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local best = common.best
local core = graft.core

local path, step, out = arg[1], arg[2], arg[3]


-- Every tensor copied into memory first (not timed), as ref.py does.
local function load_all()
  local m = graft.open(path)
  local t = {}
  for _, n in ipairs(graft.names(m)) do t[#t + 1] = m[n]:clone() end
  return t
end

if step == "layout" then
  local ts = load_all()
  print("graft", best(function()
    for _, t in ipairs(ts) do
      -- <close> frees the result at once, as `del r` does in ref.py
      local r <close> = t.ndim == 4 and t:permute(4, 3, 1, 2):contiguous() or t:t():contiguous()
    end
  end))
elseif step == "cast" then
  local ts = load_all()
  print("graft", best(function()
    for _, t in ipairs(ts) do
      local r <close> = t:half():contiguous()
    end
  end))
elseif step == "open" then
  local n = 50
  local t0 = core.now()
  for _ = 1, n do
    local m = graft.open(path)
    local names = graft.names(m)
    for _, k in ipairs(names) do local _ = m[k].shape end
  end
  print("graft", (core.now() - t0) / n)
elseif step == "convert" then
  local t0 = core.now()
  local m = graft.open(path)
  local o = {}
  for _, n in ipairs(graft.names(m)) do
    local t = m[n]
    o[n] = (t.ndim == 4 and t:permute(4, 3, 1, 2) or t:t()):half()
  end
  graft.save(out, o)
  print("graft", core.now() - t0)
  print("rss", core.maxrss())
elseif step == "add" then
  -- the fused (a + b):half(): each tensor plus the next one in name order
  -- with the same shape (wrapping), streamed into safetensors
  local t0 = core.now()
  local m = graft.open(path)
  local names = graft.names(m)
  table.sort(names)
  local o = {}
  for i, n in ipairs(names) do
    local a, j = m[n], i % #names + 1
    while table.concat(m[names[j]].shape, ",") ~= table.concat(a.shape, ",") do
      j = j % #names + 1
    end
    o[n] = (a + m[names[j]]):half()
  end
  graft.save(out, o)
  print("graft", core.now() - t0)
  print("rss", core.maxrss())
end
