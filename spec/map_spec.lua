-- The Lua layer's vocabulary: graft.map rules, graft.check, graft.names and
-- graft.meta. graft.save's policy is in save_policy_spec.lua, graft.json in
-- json_spec.lua.
local graft = require "graft"
local H = require "helper"

-- A 4-d tensor with distinct values 0 .. n-1 (float32).
local function iota(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local parts = {}
  for i = 1, n do parts[i] = string.pack("<f", i - 1) end
  return graft.tensor(table.concat(parts), "float32", shape)
end

local function keras_like()
  return {
    ["conv1/kernel"] = iota({ 3, 3, 2, 4 }),
    ["conv1/bias"] = graft.zeros({ 4 }),
    ["conv2/kernel"] = iota({ 1, 1, 4, 5 }),
    ["conv2/bias"] = graft.zeros({ 5 }),
    ["dense/kernel"] = iota({ 6, 3 }),
    ["dense/bias"] = graft.tensor({ 1, 2, 3 }),
    ["optimizer/step"] = graft.tensor({ 10 }, "int64"),
  }
end

-- The same table written to and read back from an npz, so that it has a
-- file order (the order given here).
local KERAS_ORDER = { "dense/kernel", "dense/bias", "conv2/kernel", "conv2/bias",
                      "conv1/kernel", "conv1/bias", "optimizer/step" }
local function loaded()
  local dir = H.tmpdir()
  graft.save(dir .. "/k.npz", keras_like(), { order = KERAS_ORDER })
  return graft.open(dir .. "/k.npz")
end

-- numpy's transpose of iota(shape) by axes (0-based), as raw bytes.
local function np_transpose(shape, axes)
  local out = H.py([[
import sys, numpy as np
shape = [int(x) for x in sys.argv[1].split(",")]
axes = [int(x) for x in sys.argv[2].split(",")]
a = np.arange(int(np.prod(shape)), dtype="<f4").reshape(shape)
sys.stdout.write(np.ascontiguousarray(a.transpose(axes)).tobytes().hex())
]], table.concat(shape, ","), table.concat(axes, ","))
  return (out:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function sorted(t)
  table.sort(t)
  return t
end

describe("graft.map", function()
  after_each(H.cleanup)

  it("renames with gsub captures, first matching rule wins, order kept", function()
    local m = loaded()
    local out = graft.map(m, {
      { "^conv(%d+)/kernel$", "features.%1.weight" },
      { "^conv(%d+)/(%a+)$", "features.%1.%2" },
      { "^dense/(.*)$", "classifier.%1" },
      { "^dense/bias$", "never" },
      { "^optimizer/", graft.drop },
    })
    assert.are.same({ "classifier.kernel", "classifier.bias", "features.2.weight",
      "features.2.bias", "features.1.weight", "features.1.bias" }, graft.names(out))
    assert.are.equal(m["conv1/kernel"], out["features.1.weight"]) -- no transform: same tensor
    assert.is_nil(out.never)
    assert.is_nil(out["optimizer/step"])
  end)

  it("function targets get (name, tensor); graft.keep keeps the name", function()
    local m = loaded()
    local seen = {}
    local out = graft.map(m, {
      { "kernel$", function(name, t)
          seen[#seen + 1] = name .. ":" .. t.ndim
          return (name:gsub("/kernel$", ".w"))
        end },
      { "^optimizer", graft.drop },
      { ".", graft.keep },
    })
    assert.are.same({ "dense/kernel:2", "conv2/kernel:4", "conv1/kernel:4" }, seen)
    assert.are.same({ "dense.w", "dense/bias", "conv2.w", "conv2/bias", "conv1.w",
      "conv1/bias" }, graft.names(out))
  end)

  it("layout names from graft.layouts match numpy's transposes", function()
    local m = keras_like()
    local cases = {
      { "hwio_to_oihw", { 3, 3, 2, 4 }, { 3, 2, 0, 1 }, { 4, 2, 3, 3 } },
      { "oihw_to_hwio", { 3, 3, 2, 4 }, { 2, 3, 1, 0 }, { 2, 4, 3, 3 } },
      { "hwoi_to_oihw", { 3, 3, 2, 4 }, { 2, 3, 0, 1 }, { 2, 4, 3, 3 } },
    }
    for _, c in ipairs(cases) do
      local out = graft.map({ k = m["conv1/kernel"] }, { { "^k$", "w", c[1] } })
      assert.are.same(c[4], out.w.shape, c[1])
      assert.are.equal(np_transpose(c[2], c[3]), out.w:bytes(), c[1])
    end
    for _, name in ipairs({ "t", "dense_tf_to_torch", "dense_torch_to_tf" }) do
      local out = graft.map({ k = m["dense/kernel"] }, { { "^k$", "w", name } })
      assert.are.same({ 3, 6 }, out.w.shape)
      assert.are.equal(np_transpose({ 6, 3 }, { 1, 0 }), out.w:bytes(), name)
    end
    -- hwio -> oihw -> hwio is the identity
    local k = m["conv2/kernel"]
    assert.is_true(graft.layouts.oihw_to_hwio(graft.layouts.hwio_to_oihw(k)):equal(k))
  end)

  it("function transforms get (tensor, name) and must return a tensor", function()
    local got
    local out = graft.map(keras_like(), {
      { "^dense/kernel$", "fc.weight", function(t, name) got = name return t:t():half() end },
      { ".", graft.drop },
    })
    assert.are.equal("dense/kernel", got)
    assert.are.equal("float16", out["fc.weight"].dtype)
    assert.are.same({ 3, 6 }, out["fc.weight"].shape)
    local err = H.raises(function()
      graft.map(keras_like(), { { "bias", graft.keep, function() return 42 end }, { ".", graft.drop } })
    end)
    assert.truthy(err:find("^graft: map: transform of \"conv%d/bias\" returned number"), err)
    err = H.raises(function()
      graft.map(keras_like(), { { "dense/kernel", graft.keep, function(t) return t:permute(1, 2, 3) end },
        { ".", graft.drop } })
    end)
    assert.truthy(err:find("^graft: map: dense/kernel: permute needs 2 dimensions"), err)
    err = H.raises(function()
      graft.map(keras_like(), { { ".", graft.keep, "nchw_to_nhwc" } })
    end)
    assert.truthy(err:find('unknown layout "nchw_to_nhwc"', 1, true), err)
  end)

  it("an unmatched name is an error naming it, unless keep_unmatched", function()
    local rules = { { "^conv", graft.keep }, { "^dense", graft.drop } }
    local err = H.raises(function() graft.map(loaded(), rules) end)
    assert.truthy(err:find('^graft: map: no rule matches "optimizer/step"'), err)
    local out = graft.map(loaded(), rules, { keep_unmatched = true })
    assert.are.same({ "conv2/kernel", "conv2/bias", "conv1/kernel", "conv1/bias",
      "optimizer/step" }, graft.names(out))
  end)

  it("order = \"rules\" orders the result by rule, source order within a rule", function()
    local rules = {
      { "^conv(%d+)/kernel$", "c%1.k" },
      { "^conv(%d+)/bias$", "c%1.b" },
      { "^optimizer/", graft.drop },
    }
    local out = graft.map(loaded(), rules, { order = "rules", keep_unmatched = true })
    assert.are.same({ "c2.k", "c1.k", "c2.b", "c1.b", "dense/kernel", "dense/bias" }, graft.names(out))
    local err = H.raises(function() graft.map(loaded(), rules, { order = "names" }) end)
    assert.truthy(err:find('^graft: map: opts.order must be "rules"'), err)
  end)

  it("two names mapping to one target is an error naming both", function()
    local err = H.raises(function()
      graft.map(loaded(), { { "^(%a+)%d*/(%a+)$", "%1.%2" }, { ".", graft.drop } })
    end)
    assert.truthy(err:find('"conv2/kernel" and "conv1/kernel" both map to "conv.kernel"', 1, true), err)
    err = H.raises(function()
      graft.map(loaded(), { { ".", function() return "same" end } })
    end)
    assert.truthy(err:find('both map to "same"', 1, true), err)
  end)

  it("bad rules give errors naming the rule and the tensor", function()
    local err = H.raises(function() graft.map(loaded(), { { "[", graft.keep } }) end)
    assert.truthy(err:find('^graft: map: rule 1: bad pattern "%["'), err)
    err = H.raises(function() graft.map(loaded(), { { ".", "%2" } }) end)
    assert.truthy(err:find("^graft: map: dense/kernel: rule \"%.\": "), err)
    err = H.raises(function() graft.map(loaded(), { { ".", function() end } }) end)
    assert.truthy(err:find("^graft: map: dense/kernel: rule \"%.\" gave no name"), err)
    err = H.raises(function() graft.map(loaded(), { { ".", 7 } }) end)
    assert.truthy(err:find("target must be", 1, true), err)
    err = H.raises(function() graft.map(loaded(), "rules") end)
    assert.truthy(err:find("^graft: map: rules must be"), err)
  end)
end)

describe("graft.check", function()
  after_each(H.cleanup)

  local template = {
    ["fc.weight"] = { shape = { 3, 6 }, dtype = "float32" },
    ["fc.bias"] = { shape = { 3 }, dtype = "float32" },
    ["conv.weight"] = { shape = { 4, 2, 3, 3 } },
    ["bn.running_mean"] = { shape = { 4 }, dtype = "float32" },
  }

  it("reports missing, unexpected, shape and dtype problems", function()
    local m = keras_like()
    local out = {
      ["fc.weight"] = m["dense/kernel"],            -- shape {6,3}: not transposed
      ["fc.bias"] = m["dense/bias"]:double(),       -- dtype
      ["conv.weight"] = m["conv1/kernel"]:permute(4, 3, 1, 2):half(), -- dtype not asked
      ["extra"] = m["optimizer/step"],
    }
    local ok, report = graft.check(out, template)
    assert.is_false(ok)
    assert.are.same({ "bn.running_mean" }, report.missing)
    assert.are.same({ "extra" }, report.unexpected)
    assert.are.same({ "fc.weight: {6,3} vs template {3,6}" }, report.shape)
    assert.are.same({ "fc.bias: float64 vs template float32" }, report.dtype)
  end)

  it("unexpected names fail only when strict; a model table is a template", function()
    local m = keras_like()
    local out = {
      ["fc.weight"] = m["dense/kernel"]:t(), ["fc.bias"] = m["dense/bias"],
      ["conv.weight"] = m["conv1/kernel"]:permute(4, 3, 1, 2),
      ["bn.running_mean"] = graft.zeros({ 4 }), ["num_batches"] = graft.zeros({}, "int64"),
    }
    local ok, report = graft.check(out, template)
    assert.is_true(ok)
    assert.are.same({ "num_batches" }, report.unexpected)
    ok = graft.check(out, template, { strict = true })
    assert.is_false(ok)
    local model = graft.map(out, { { "^num", graft.drop }, { ".", graft.keep } })
    ok, report = graft.check(out, model)
    assert.is_true(ok)
    ok, report = graft.check(model, out, { strict = true })
    assert.is_false(ok)
    assert.are.same({ "num_batches" }, report.missing)
    local err = H.raises(function() graft.check(out, { x = 3 }) end)
    assert.truthy(err:find('template entry "x"', 1, true), err)
  end)
end)

describe("graft.names and graft.meta", function()
  after_each(H.cleanup)

  it("file order for loaded tables, added names after in sorted order", function()
    local m = loaded()
    assert.are.same(KERAS_ORDER, graft.names(m))
    m["zeta"] = graft.zeros({ 1 })
    m["alpha"] = graft.zeros({ 1 })
    m["conv1/bias"] = nil
    m["dense/bias"] = graft.zeros({ 3 }) -- replaced: keeps its place
    assert.are.same({ "dense/kernel", "dense/bias", "conv2/kernel", "conv2/bias",
      "conv1/kernel", "optimizer/step", "alpha", "zeta" }, graft.names(m))
  end)

  it("sorted names and an empty meta for hand-built tables", function()
    local t = keras_like()
    assert.are.same(sorted({ "conv1/kernel", "conv1/bias", "conv2/kernel", "conv2/bias",
      "dense/kernel", "dense/bias", "optimizer/step" }), graft.names(t))
    assert.are.same({}, graft.meta(t))
    assert.are.same({}, graft.names({}))
    local err = H.raises(function() graft.names("model.npz") end)
    assert.truthy(err:find("^graft: names: expected a table"), err)
  end)

  it("meta of a loaded file says its format", function()
    local m = loaded()
    assert.are.equal("npz", graft.meta(m).format)
  end)
end)
