-- A big TF checkpoint index (issue 13 item 4): opening an index of N
-- entries and listing its names, timed and with its peak RSS per entry.
-- usage: lua5.4 bench/tf_index_steps.lua STEP ARGS...
--   build N DIR   DIR/ckpt: N float32 [1] entries "v0000001/kernel" ...
--                 (spec/tf_helper.lua), one 4-byte data shard
--   open DIR      open DIR/ckpt and list its names (graft.names, the
--                 dtype of each 1000th), printing "entries N", "open s",
--                 "open_cpu s", "list s", "list_cpu s" (wall and CPU time)
--                 and "rss_per_entry bytes" (peak RSS growth / N)
package.path = "bench/?.lua;spec/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local core = graft.core

local step = arg[1]

if step == "build" then
  local T = require "tf_helper"
  local n, dir = tonumber(arg[2]), arg[3]
  local data = string.pack("<f", 1.5)
  local e = {}
  for i = 1, n do e[string.format("v%07d/kernel", i)] = T.plain(T.DT.float, { 1 }, data, 0) end
  T.write(dir, e, { data })
elseif step == "open" then
  collectgarbage()
  local r0, t0, c0 = core.maxrss(), core.now(), os.clock()
  local m = graft.open(arg[2] .. "/ckpt")
  local t1, c1 = core.now(), os.clock()
  local names = graft.names(m)
  for i = 1, #names, 1000 do local _ = m[names[i]].dtype end
  local t2, c2 = core.now(), os.clock()
  print("entries", #names)
  print("open", t1 - t0)
  print("open_cpu", c1 - c0)
  print("list", t2 - t1)
  print("list_cpu", c2 - c1)
  print("rss_per_entry", (core.maxrss() - r0) / #names)
end
