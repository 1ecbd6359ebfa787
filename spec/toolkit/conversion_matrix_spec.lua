-- The conversion matrix (issue 11 item 4): one small model's weights (a
-- conv -> dense net, float32) saved by each real framework in its own names
-- and layout (spec/fixtures/gen_matrix.py, in the oracle environment), then
-- `graft convert` into every format graft writes, with the layout recipe
-- the pair needs (spec/fixtures/matrix/*.lua). The target's own framework
-- loads each result: values bit-equal to the source's (after the declared
-- HWIO/OIHW and dense transposes, applied by numpy on both sides), and
-- where the target is a model (Keras 2, Keras 3, and torch for the torch-
-- layout targets) its predictions equal the source framework's within 1e-5
-- relative. Two oracle processes in all: generate, then check every cell.
local H = require "helper"

local ROOT = H.ROOT
local ENV = H.GRAFT_ENV
local GRAFT = H.GRAFT_CMD
local GEN = ROOT .. "/spec/fixtures/gen_matrix.py"
local RECIPES = ROOT .. "/spec/fixtures/matrix/"

-- layout: the names and layout the file holds ("torch": conv.weight OIHW,
-- fc.weight [out, in]; "keras": conv2d/kernel HWIO, dense/kernel [in, out];
-- "tf2": a TF2 object-based checkpoint of the Keras model).
local SOURCES = {
  { id = "pt", file = "src/model.pt", layout = "torch" },
  { id = "safetensors", file = "src/model.safetensors", layout = "torch" },
  { id = "tf", file = "src/tf/ckpt", layout = "tf2" },
  { id = "keras2", file = "src/keras2.h5", layout = "keras" },
  { id = "keras3", file = "src/keras3.weights.h5", layout = "keras" },
  { id = "npz", file = "src/model.npz", layout = "torch" },
}
local TARGETS = {
  { id = "pt", file = "model.pt", layout = "torch" },
  { id = "safetensors", file = "model.safetensors", layout = "torch" },
  { id = "tf", file = "model.ckpt", layout = "keras", format = "tf" },
  { id = "keras2", file = "model.h5", layout = "keras" },
  { id = "keras3", file = "model.weights.h5", layout = "keras" },
  { id = "npz", file = "model.npz", layout = "torch" },
  { id = "hdf5", file = "model.hdf5", layout = "keras" },
}
-- The recipe each (source layout, target layout) pair needs; none when
-- the names and layout already agree.
local RECIPE = {
  torch = { keras = "torch_to_keras.lua" },
  keras = { torch = "keras_to_torch.lua" },
  tf2 = { torch = "tf2_to_torch.lua", keras = "tf2_to_keras.lua" },
}

-- `graft convert SRC OUT [--map R] [--format F]`; nil on success, else
-- stderr and the exit code.
local function convert(dir, s, t)
  local out = dir .. "/out/" .. s.id .. "-" .. t.id
  os.execute("mkdir -p " .. H.q(out))
  local args = { H.q(dir .. "/" .. s.file), H.q(out .. "/" .. t.file) }
  local recipe = RECIPE[s.layout][t.layout]
  if recipe then args[#args + 1] = "--map " .. H.q(RECIPES .. recipe) end
  if t.format then args[#args + 1] = "--format " .. t.format end
  local cmd = string.format("%s %s convert %s </dev/null >%s/stdout 2>%s/stderr",
    ENV, GRAFT, table.concat(args, " "), H.q(out), H.q(out))
  local ok, _, code = os.execute(cmd)
  if ok then return nil, out .. "/" .. t.file end
  return "graft convert exit " .. tostring(code) .. ": " .. H.read(out .. "/stderr")
end

-- Every cell's outcome: "ok" or why it failed. Computed once, on first
-- use; if generating or checking fails, every cell fails with that error.
local cells, broken
local function compute()
  cells = {}
  local dir = H.tmpdir()
  H.oracle(H.read(GEN), "gen", dir)
  local todo = {}
  for _, s in ipairs(SOURCES) do
    for _, t in ipairs(TARGETS) do
      local err, path = convert(dir, s, t)
      if err then cells[s.id .. ">" .. t.id] = err
      else todo[#todo + 1] = s.id .. ":" .. t.id .. ":" .. path end
    end
  end
  local out = H.oracle(H.read(GEN), "check", dir, table.unpack(todo))
  for s, t, status in out:gmatch("CELL (%S+) (%S+) ([^\n]+)") do
    cells[s .. ">" .. t] = status
  end
end

local function results()
  if not cells and not broken then
    local ok, err = pcall(compute)
    if not ok then broken = tostring(err) end
  end
  if broken then error(broken, 0) end
  return cells
end

describe("conversion matrix", function()
  teardown(function()
    if cells and not broken then
      -- As TAP comments: source down, target across.
      local head = { string.format("# %-12s", "src \\ dst") }
      for _, t in ipairs(TARGETS) do head[#head + 1] = string.format("%-12s", t.id) end
      print(table.concat(head))
      for _, s in ipairs(SOURCES) do
        local row = { string.format("# %-12s", s.id) }
        for _, t in ipairs(TARGETS) do
          local r = cells[s.id .. ">" .. t.id]
          row[#row + 1] = string.format("%-12s", r == "ok" and "pass" or "FAIL")
        end
        print(table.concat(row))
      end
    end
    H.cleanup()
  end)

  for _, s in ipairs(SOURCES) do
    for _, t in ipairs(TARGETS) do
      local recipe = RECIPE[s.layout][t.layout]
      it(string.format("%s -> %s%s: the target's framework reads the source's values", s.id, t.id,
        recipe and " (--map " .. recipe .. ")" or ""), function()
        local r = results()[s.id .. ">" .. t.id]
        assert.are.equal("ok", r or "no result from the checker")
      end)
    end
  end
end)
