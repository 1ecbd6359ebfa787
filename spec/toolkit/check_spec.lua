-- graft.check and `graft check`: every problem in one pass, with the hints
-- that say what went wrong (the permute a missing transpose needs, the
-- name a typo meant), and what check cannot see (same-shape reorders); and
-- `graft run RECIPE --dry-run`. Tensors are built here or written to npz
-- in a temp dir; the CLI is run as a user runs it (lua5.4 bin/graft).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local ROOT = H.ROOT
local ENV = H.GRAFT_ENV
local GRAFT = H.GRAFT_CMD

local run = H.graft

-- distinct float32 values 0 .. n-1 in `shape`
local function iota(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local parts = {}
  for i = 1, n do parts[i] = string.pack("<f", i - 1) end
  return graft.tensor(table.concat(parts), "float32", shape)
end

-- A TF-style conv net (HWIO kernels, in,out dense) and the torch template.
local function tf_net()
  return {
    ["conv1/kernel"] = iota({ 3, 3, 3, 8 }), ["conv1/bias"] = iota({ 8 }),
    ["fc/kernel"] = iota({ 32, 10 }), ["fc/bias"] = iota({ 10 }),
  }
end
local TEMPLATE = {
  ["conv1.weight"] = { shape = { 8, 3, 3, 3 }, dtype = "float32" },
  ["conv1.bias"] = { shape = { 8 }, dtype = "float32" },
  ["fc.weight"] = { shape = { 10, 32 }, dtype = "float32" },
  ["fc.bias"] = { shape = { 10 }, dtype = "float32" },
}
local RULES = {
  { "^conv1/kernel$", "conv1.weight", "hwio_to_oihw" },
  { "^(%w+)/bias$", "%1.bias" },
  { "^fc/kernel$", "fc.weight", "t" },
}

local function kinds(report)
  local t = {}
  for _, p in ipairs(report.problems) do t[#t + 1] = p.kind .. ":" .. p.name end
  return t
end

describe("graft.check", function()
  after_each(H.cleanup)

  it("a correct transplant is ok", function()
    local ok, report = graft.check(graft.map(tf_net(), RULES), TEMPLATE)
    assert.is_true(ok, report.summary)
    assert.are.equal(0, report.count)
    assert.are.equal("ok: 4 tensors match the template", tostring(report))
  end)

  it("a missing transpose is named with the permute that fixes it", function()
    local broken = { RULES[2], { "^conv1/kernel$", "conv1.weight" }, { "^fc/kernel$", "fc.weight" } }
    local out = graft.map(tf_net(), broken)
    local ok, report = graft.check(out, TEMPLATE)
    assert.is_false(ok)
    assert.are.same({ "shape:conv1.weight", "shape:fc.weight" }, kinds(report))
    local conv, fc = report.problems[1], report.problems[2]
    assert.are.same({ 4, 3, 1, 2 }, conv.permute)
    assert.are.same({ 2, 1 }, fc.permute)
    assert.truthy(report.summary:find("shape: conv1.weight: {3,3,3,8}, template {8,3,3,3}: "
      .. "permute(4, 3, 1, 2) gives the template's shape (sizes repeat: one of 6 permutations that do)",
      1, true), report.summary)
    assert.truthy(report.summary:find("shape: fc.weight: {32,10}, template {10,32}: "
      .. "permute(2, 1) gives the template's shape", 1, true), report.summary)
    -- the hint is right: applying it gives the template's shape and the layout's values
    local fixed = out["conv1.weight"]:permute(table.unpack(conv.permute))
    assert.are.same({ 8, 3, 3, 3 }, fixed.shape)
    assert.is_true(fixed:equal(graft.layouts.hwio_to_oihw(tf_net()["conv1/kernel"])))
    -- the old one-line lists stay
    assert.are.same({ "conv1.weight: {3,3,3,8} vs template {8,3,3,3}",
      "fc.weight: {32,10} vs template {10,32}" }, report.shape)
  end)

  it("a permutation without repeated sizes is exact; a reshape is said to be one", function()
    local p, n = require("graft.check").permutation({ 2, 3, 4, 5 }, { 5, 4, 2, 3 })
    assert.are.same({ 4, 3, 1, 2 }, p)
    assert.are.equal(1, n)
    p = require("graft.check").permutation({ 2, 3, 4 }, { 4, 2, 3 })
    assert.are.same({ 3, 1, 2 }, p)
    assert.is_nil(require("graft.check").permutation({ 2, 3 }, { 3, 3 }))
    local ok, report = graft.check({ w = iota({ 3, 3, 4, 2 }) }, { w = { 8, 1, 3, 3 } })
    assert.is_false(ok)
    assert.are.equal("same number of elements: a reshape?", report.problems[1].hint)
  end)

  it("a typo is paired with the name it meant; other problems come in the same pass", function()
    local out = graft.map(tf_net(), RULES)
    out["conv1.weigth"], out["conv1.weight"] = out["conv1.weight"], nil
    out["fc.bias"] = out["fc.bias"]:double()
    out["optimizer.step"] = graft.tensor({ 1 }, "int64")
    out["fc.weight"] = nil
    local ok, report = graft.check(out, TEMPLATE, { strict = true })
    assert.is_false(ok)
    assert.are.same({ { name = "conv1.weigth", closest = "conv1.weight", distance = 2 } }, report.misspelt)
    assert.are.same({ "misspelt:conv1.weigth", "missing:fc.weight", "unexpected:optimizer.step",
      "dtype:fc.bias" }, kinds(report))
    assert.are.equal(table.concat({
      "4 problems",
      "misspelt: conv1.weigth -> conv1.weight?",
      "missing: fc.weight",
      "unexpected: optimizer.step",
      "dtype: fc.bias: float64, template float32" }, "\n"), report.summary)
    -- not strict: the unexpected name is listed, not a problem
    ok, report = graft.check(out, TEMPLATE)
    assert.are.equal(3, report.count)
    assert.truthy(report.summary:find("unexpected: optimizer.step (allowed: not strict)", 1, true))
  end)

  it("a swapped gate order has the right shape: check cannot see it, outputs can", function()
    -- Keras LSTM kernel gates i,f,c,o; torch wants i,f,g(=c),o: a recipe that
    -- forgot the reorder and one that swapped f and c give the same shape.
    local hidden = 2
    local k = iota({ 4 * hidden, 3 })
    local gates = k:chunk(4, 1)
    local swapped = graft.cat({ gates[1], gates[3], gates[2], gates[4] })
    local ok, report = graft.check({ ["lstm.weight_ih_l0"] = swapped },
      { ["lstm.weight_ih_l0"] = { 8, 3 } })
    assert.is_true(ok, report.summary)
    assert.is_false(swapped:equal(k)) -- yet the weights differ: only a forward pass shows it
  end)

  it("templates: a file path, a table of shapes, a model table; the model may be a path", function()
    local dir = H.tmpdir()
    local good = graft.map(tf_net(), RULES)
    graft.save(dir .. "/template.npz", good)
    local ok, report = graft.check(good, dir .. "/template.npz")
    assert.is_true(ok, report.summary)
    ok = graft.check(good, { ["conv1.weight"] = { 8, 3, 3, 3 }, ["conv1.bias"] = { 8 },
      ["fc.weight"] = { 10, 32 }, ["fc.bias"] = { 10 } }, { strict = true })
    assert.is_true(ok)
    ok = graft.check(dir .. "/template.npz", good, { strict = true })
    assert.is_true(ok)
    -- the unmapped source: "/" for "." is one edit (paired), kernel/weight too far
    ok, report = graft.check(tf_net(), dir .. "/template.npz")
    assert.are.equal(table.concat({
      "4 problems",
      "misspelt: conv1/bias -> conv1.bias?",
      "misspelt: fc/bias -> fc.bias?",
      "missing: conv1.weight",
      "missing: fc.weight",
      "unexpected: conv1/kernel (allowed: not strict)",
      "unexpected: fc/kernel (allowed: not strict)" }, "\n"), report.summary)
  end)

  it("bad input: unknown options, bad template entries", function()
    local err = H.raises(function() graft.check({}, {}, { strikt = true }) end)
    assert.truthy(err:find('check: option "strikt" is not accepted; did you mean "strict"?', 1, true), err)
    err = H.raises(function() graft.check({}, { x = "big" }) end)
    assert.truthy(err:find('template entry "x"', 1, true), err)
  end)
end)

describe("graft check and graft run --dry-run", function()
  after_each(H.cleanup)

  local function files(dir)
    graft.save(dir .. "/tf.npz", tf_net())
    graft.save(dir .. "/template.npz", graft.map(tf_net(), RULES))
    H.write(dir .. "/good.lua", [[
local graft = require "graft"
return {
  { "^conv1/kernel$", "conv1.weight", "hwio_to_oihw" },
  { "^(%w+)/bias$", "%1.bias" },
  { "^fc/kernel$", "fc.weight", "t" },
}
]])
    H.write(dir .. "/broken.lua", [[
return {
  { "^conv1/kernel$", "conv1.weight" },
  { "^conv1/bias$", "conv1.bias" },
  { "^fc/kernel$", "fc.weigth", "t" },
  { "^fc/bias$", "fc.bias" },
}
]])
  end

  it("exit 0 when clean, 1 with problems (text and --json), 2 on bad input", function()
    local dir = H.tmpdir()
    files(dir)
    local out, err, code = run("check", dir .. "/tf.npz", dir .. "/template.npz", "--map", dir .. "/good.lua")
    assert.are.equal(0, code, err)
    assert.are.equal("ok: 4 tensors match the template\n", out)
    out, err, code = run("check", dir .. "/tf.npz", dir .. "/template.npz", "--map", dir .. "/broken.lua")
    assert.are.equal(1, code, err)
    assert.truthy(out:find("misspelt: fc.weigth -> fc.weight?", 1, true), out)
    assert.truthy(out:find("permute(4, 3, 1, 2) gives the template's shape", 1, true), out)
    out, err, code = run("check", dir .. "/tf.npz", dir .. "/template.npz", "--map", dir .. "/broken.lua",
      "--json")
    assert.are.equal(1, code, err)
    local r = json.decode(out)
    assert.is_false(r.ok)
    assert.are.equal(2, r.count)
    assert.are.same({ kind = "misspelt", name = "fc.weigth", closest = "fc.weight", distance = 2 }, r.problems[1])
    assert.are.same({ kind = "shape", name = "conv1.weight", got = { 3, 3, 3, 8 }, want = { 8, 3, 3, 3 },
      permute = { 4, 3, 1, 2 },
      hint = "permute(4, 3, 1, 2) gives the template's shape (sizes repeat: one of 6 permutations that do)" },
      r.problems[2])
    -- unexpected names are problems for the command (strict)
    _, _, code = run("check", dir .. "/tf.npz", dir .. "/template.npz")
    assert.are.equal(1, code)
    -- a Lua template returning shapes
    H.write(dir .. "/shapes.lua", 'return { ["conv1.weight"] = { 8, 3, 3, 3 }, ["conv1.bias"] = { 8 },'
      .. ' ["fc.weight"] = { 10, 32 }, ["fc.bias"] = { 10 } }')
    _, err, code = run("check", dir .. "/tf.npz", dir .. "/shapes.lua", "--map", dir .. "/good.lua")
    assert.are.equal(0, code, err)
    _, err, code = run("check", dir .. "/tf.npz")
    assert.are.equal(2, code)
    assert.truthy(err:find("graft: check needs FILE TEMPLATE", 1, true), err)
    _, err, code = run("check", dir .. "/tf.npz", dir .. "/nope.npz")
    assert.are.equal(2, code)
    assert.truthy(err:find("nope.npz", 1, true), err)
    _, err, code = run("check", dir .. "/tf.npz", dir .. "/template.npz", "--mapp", "x")
    assert.are.equal(2, code)
    assert.truthy(err:find("unknown option --mapp", 1, true), err)
  end)

  it("run --dry-run prints each map's plan and writes nothing", function()
    local dir = H.tmpdir()
    files(dir)
    H.write(dir .. "/recipe.lua", [[
local graft = require "graft"
local src, dst = ...
local m = graft.open(src)
local out = graft.map(m, dofile((src:gsub("tf%.npz$", "good.lua"))))
graft.save(dst, out)
]])
    local out, err, code = run("run", dir .. "/recipe.lua", dir .. "/tf.npz", dir .. "/out.safetensors",
      "--dry-run")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("plan (4 steps):", 1, true), out)
    -- each step: the sources' and the outputs' dtypes and shapes
    assert.truthy(out:find("conv1/kernel float32 {3,3,3,8} -> conv1.weight float32 {8,3,3,3}  [hwio_to_oihw]", 1,
      true), out)
    assert.truthy(out:find("fc/kernel float32 {32,10} -> fc.weight float32 {10,32}  [t]", 1, true), out)
    assert.truthy(out:find("would write " .. dir .. "/out.safetensors: 4 tensors (dry run: nothing written)\n"
      .. "  conv1.bias float32 {8}\n", 1, true), out)
    assert.truthy(out:find("\n  conv1.weight float32 {8,3,3,3}\n", 1, true), out)
    assert.truthy(out:find("\n  fc.weight float32 {10,32}\n", 1, true), out)
    assert.is_false(H.exists(dir .. "/out.safetensors"))
    -- without --dry-run the recipe writes
    _, err, code = run("run", dir .. "/recipe.lua", dir .. "/tf.npz", dir .. "/out.safetensors")
    assert.are.equal(0, code, err)
    assert.is_true(H.exists(dir .. "/out.safetensors"))
  end)
end)
