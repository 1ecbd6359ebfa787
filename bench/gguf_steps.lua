-- GGUF benchmark steps with graft, printing "name value" lines for
-- bench/gguf.sh.
-- usage: lua5.4 bench/gguf_steps.lua make JOB.safetensors OUT.gguf
--        lua5.4 bench/gguf_steps.lua open|read FILE.gguf
package.path = "bench/?.lua;" .. package.path
local common = require "common"
local graft = common.graft
local best = common.best

local step, path, out = arg[1], arg[2], arg[3]

if step == "make" then
  -- The 1 GiB float32 job quantised to Q8_0 (34 bytes per 32 values) four
  -- times over, under four name prefixes: a ~1.1 GiB Q8_0 GGUF of 964
  -- tensors.
  local m = graft.open(path)
  local t, order = {}, {}
  for _, p in ipairs({ "a", "b", "c", "d" }) do
    for _, n in ipairs(graft.names(m)) do
      local k = p .. "." .. n:gsub("layer", "l")
      t[k] = m[n]
      order[#order + 1] = k
    end
  end
  graft.save(out, t, { quantize = "q8_0", order = order,
    metadata = { ["general.architecture"] = "bench" } })
elseif step == "open" then
  print("graft", best(function()
    local m = graft.open(path)
    for _, n in ipairs(graft.names(m)) do local _ = m[n].shape end
  end, 20))
elseif step == "read" then
  -- Every tensor dequantised to float32 in memory, one at a time, as
  -- gguf-py's quants.dequantize does per tensor.
  local m = graft.open(path)
  print("graft", best(function()
    for _, n in ipairs(graft.names(m)) do
      local r <close> = m[n]:float():clone()
    end
  end, 3))
end
