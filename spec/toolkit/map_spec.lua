-- The Lua layer's vocabulary: graft.map rules, graft.check, graft.names and
-- graft.meta. graft.save's policy is in save_policy_spec.lua, graft.json in
-- json_spec.lua.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

local iota, keras_like = H.iota, H.keras_like

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

-- numpy's float32 result of `expr` over the named float32 arrays (each
-- given as name=v1,v2,...;shape=d1,d2), as a graft tensor of `shape`.
local function np_eval(expr, shape, arrays)
  local args = {}
  for name, a in pairs(arrays) do
    args[#args + 1] = name .. "=" .. table.concat(a[1], ",") .. ";" .. table.concat(a[2], ",")
  end
  table.sort(args)
  local hex = H.py([[
import sys, numpy as np
env = {"np": np}
for a in sys.argv[2:]:
    name, rest = a.split("=")
    vals, shape = rest.split(";")
    env[name] = np.array([float(x) for x in vals.split(",")], dtype="<f8").reshape([int(d) for d in shape.split(",")])
r = eval(sys.argv[1], env).astype("<f4")
sys.stdout.write(np.ascontiguousarray(r).tobytes().hex())
]], expr, table.unpack(args))
  return graft.tensor(H.unhex(hex), "float32", shape)
end

local function values(t)
  return H.flat(t:totable())
end

describe("graft.map rules: matchers, several outputs, several inputs, dry runs", function()
  after_each(H.cleanup)

  it("a function matcher's captures fill %1.. (and %0 is the name)", function()
    local out = graft.map(keras_like(), {
      { function(name) return name:match("^conv(%d)/(%a+)$") end, "features.%1.%2" },
      { function(name) return name == "dense/kernel" end, "%0.orig" },
      { function() return false end, "never" },
      { ".", graft.drop },
    })
    assert.are.same({ "dense/kernel.orig", "features.1.bias", "features.1.kernel",
      "features.2.bias", "features.2.kernel" }, sorted(graft.names(out)))
    local err = H.raises(function()
      graft.map(keras_like(), { { function() return true end, "%1" } })
    end)
    assert.truthy(err:find("invalid capture index %1", 1, true), err)
    err = H.raises(function()
      graft.map(keras_like(), { { function() error("boom") end, "x" } })
    end)
    assert.truthy(err:find("^graft: map: conv1/bias: rule 1: matcher: .*boom$"), err)
  end)

  it("several outputs: a zero second bias, a fused qkv split into three", function()
    local src = { ["rnn.bias"] = graft.tensor({ 1, 2, 3, 4 }), ["attn.qkv.weight"] = iota({ 6, 2 }) }
    local out = graft.map(src, {
      { "^(.*)bias$", { "%1bias_ih", "%1bias_hh" }, function(t) return t, graft.zeros(t.shape, t.dtype) end },
      { "^(.*)qkv%.weight$", { "%1q.weight", "%1k.weight", "%1v.weight" },
        function(t) return table.unpack(t:chunk(3, 1)) end },
    })
    assert.are.same({ "attn.k.weight", "attn.q.weight", "attn.v.weight", "rnn.bias_hh", "rnn.bias_ih" },
      sorted(graft.names(out)))
    assert.are.same({ 1, 2, 3, 4 }, values(out["rnn.bias_ih"]))
    assert.are.same({ 0, 0, 0, 0 }, values(out["rnn.bias_hh"]))
    assert.are.same({ 0, 1, 2, 3 }, values(out["attn.q.weight"]))
    assert.are.same({ 4, 5, 6, 7 }, values(out["attn.k.weight"]))
    assert.are.same({ 8, 9, 10, 11 }, values(out["attn.v.weight"]))
    -- without a transform each output is the input; too few results is an error
    out = graft.map(src, { { "^.*bias$", { "a", "b" } }, { ".", graft.drop } })
    assert.are.equal(src["rnn.bias"], out.a)
    assert.are.equal(src["rnn.bias"], out.b)
    local err = H.raises(function()
      graft.map(src, { { "bias$", { "a", "b" }, function(t) return t end }, { ".", graft.drop } })
    end)
    assert.truthy(err:find('transform of "rnn.bias" returned 1 value for 2 outputs', 1, true), err)
  end)

  it("several inputs: q,k,v merged, two biases summed (numpy's values)", function()
    local src = {
      ["l0.q.weight"] = iota({ 2, 3 }), ["l0.k.weight"] = iota({ 2, 3 }) + 10,
      ["l0.v.weight"] = iota({ 2, 3 }) + 20,
      ["l0.bias_ih"] = graft.tensor({ 0.5, 1.5 }), ["l0.bias_hh"] = graft.tensor({ 2.25, -1 }),
    }
    local out = graft.map(src, {
      { "^(.*)%.q%.weight$", "%1.qkv.weight", function(q, k, v) return graft.cat({ q, k, v }) end,
        from = { "%1.q.weight", "%1.k.weight", "%1.v.weight" } },
      { "^(.*)%.bias_ih$", "%1.bias", function(a, b) return a + b end,
        from = { "%1.bias_ih", "%1.bias_hh" } },
    })
    assert.are.same({ "l0.bias", "l0.qkv.weight" }, sorted(graft.names(out)))
    assert.are.same({ 6, 3 }, out["l0.qkv.weight"].shape)
    assert.are.same({ 0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 20, 21, 22, 23, 24, 25 },
      values(out["l0.qkv.weight"]))
    local want = np_eval("a + b", { 2 }, { a = { { 0.5, 1.5 }, { 2 } }, b = { { 2.25, -1 }, { 2 } } })
    assert.is_true(out["l0.bias"]:equal(want))
  end)

  it("folds BatchNorm into the preceding conv, whatever the source order (numpy's values)", function()
    local w = {}
    for i = 1, 4 * 2 * 3 * 3 do w[i] = (i - 36) / 10 end
    local gamma, beta, mean, var = { 0.5, 1, 1.5, 2 }, { 0.1, -0.2, 0.3, 0 }, { 1, -1, 0.5, 0 },
      { 1, 2, 3, 4 }
    local cb = { 0.25, 0.5, -0.75, 1 }
    -- bn.* before conv.*: the conv rule claims its inputs before any other rule runs
    local src = {
      ["bn.weight"] = graft.tensor(gamma), ["bn.bias"] = graft.tensor(beta),
      ["bn.running_mean"] = graft.tensor(mean), ["bn.running_var"] = graft.tensor(var),
      ["bn.num_batches_tracked"] = graft.tensor({ 3 }, "int64"),
      ["conv.weight"] = graft.tensor(w):reshape({ 4, 2, 3, 3 }),
      ["conv.bias"] = graft.tensor(cb),
    }
    local eps = 1e-5
    local function fold(cw, cbias, g, b, m, v)
      local scale = g / (v + eps):sqrt()
      return cw * scale:unsqueeze(2):unsqueeze(3):unsqueeze(4), (cbias - m) * scale + b
    end
    local rules = {
      { "^(.*)conv%.weight$", { "%1conv.weight", "%1conv.bias" }, fold, name = "fold_bn",
        from = { "%1conv.weight", "%1conv.bias", "%1bn.weight", "%1bn.bias", "%1bn.running_mean",
                 "%1bn.running_var" } },
      { "num_batches_tracked$", graft.drop },
    }
    local out = graft.map(src, rules)
    assert.are.same({ "conv.bias", "conv.weight" }, sorted(graft.names(out)))
    local arrays = { w = { w, { 4, 2, 3, 3 } }, cb = { cb, { 4 } }, g = { gamma, { 4 } },
      b = { beta, { 4 } }, m = { mean, { 4 } }, v = { var, { 4 } } }
    local want_w = np_eval("w * (g / np.sqrt(v + 1e-5))[:, None, None, None]", { 4, 2, 3, 3 }, arrays)
    local want_b = np_eval("(cb - m) * (g / np.sqrt(v + 1e-5)) + b", { 4 }, arrays)
    assert.is_true(out["conv.weight"]:max_abs_diff(want_w) <= 1e-6)
    assert.is_true(out["conv.bias"]:max_abs_diff(want_b) <= 1e-6)
    -- the plan names the inputs, the outputs and the transform
    local plan = graft.map(src, rules, { dry_run = true })
    assert.are.same({ "conv.weight", "conv.bias", "bn.weight", "bn.bias", "bn.running_mean",
      "bn.running_var" }, plan[2].from)
    assert.are.same({ "conv.weight", "conv.bias" }, plan[2].to)
    assert.are.equal("fold_bn", plan[2].transform)
  end)

  it("bad multi-input rules: a missing input, a rule not taking its own name, an input claimed twice", function()
    local src = { ["a.x"] = graft.tensor({ 1 }), ["a.y"] = graft.tensor({ 2 }) }
    local err = H.raises(function()
      graft.map(src, { { "^a%.x$", "z", graft.cat, from = { "a.x", "a.w" } }, { ".", graft.keep } })
    end)
    assert.truthy(err:find('a.x: rule 1: input "a.w" (from[2]) is not in the model', 1, true), err)
    err = H.raises(function()
      graft.map(src, { { "^a%.x$", "z", graft.cat, from = { "a.y" } }, { ".", graft.keep } })
    end)
    assert.truthy(err:find("from must include the name it matched", 1, true), err)
    err = H.raises(function()
      graft.map(src, { { "^a%.(.)$", "z%1", graft.cat, from = { "a.x", "a.y" } } })
    end)
    assert.truthy(err:find('"a.x" is an input of two rules', 1, true), err)
    err = H.raises(function()
      graft.map(src, { { "^a%.x$", "z", from = { "a.x", "a.y" } } })
    end)
    assert.truthy(err:find("rule 1 takes 2 inputs and needs a transform", 1, true), err)
  end)

  it("every unmatched name in ONE error", function()
    local err = H.raises(function() graft.map(loaded(), { { "^conv", graft.keep } }) end)
    assert.truthy(err:find('^graft: map: no rule matches "dense/kernel", "dense/bias", "optimizer/step" %(3 names%)'),
      err)
  end)

  it("unknown options are errors with the closest accepted key", function()
    local err = H.raises(function() graft.map(loaded(), { { ".", graft.keep } }, { dry_runn = true }) end)
    assert.truthy(err:find('map: option "dry_runn" is not accepted; did you mean "dry_run"?', 1, true), err)
    err = H.raises(function() graft.map(loaded(), { { ".", graft.keep } }, { keep = true }) end)
    assert.truthy(err:find("(accepted: dry_run, keep_unmatched, order)", 1, true), err)
  end)

  it("dry_run returns the plan and reads no data: a corrupt checkpoint maps only for real", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/ck", keras_like(), { format = "tf" })
    -- flip every byte of the data shard: each tensor's crc32c now fails on first read
    local data = dir .. "/ck.data-00000-of-00001"
    local bytes = H.read(data)
    H.write(data, (bytes:gsub(".", function(c) return string.char(255 - c:byte()) end)))
    local m = graft.open(dir .. "/ck")
    -- transforms run in a dry run on phantoms only (a shape and a dtype,
    -- no bytes): every input they get is one
    local calls, phantoms = 0, 0
    local function seen(t)
      calls = calls + 1
      if core.is_phantom(t) then phantoms = phantoms + 1 end
    end
    local rules = {
      { "^conv(%d)/kernel$", "c%1.weight", "hwio_to_oihw" },
      { "^conv(%d)/bias$", { "c%1.b_ih", "c%1.b_hh" }, function(t) seen(t); return t, t end },
      { "^dense/kernel$", "fc.weight", function(t) seen(t); return t:t():contiguous() end },
      { "^dense/bias$", graft.keep },
      { "^optimizer/", graft.drop },
    }
    local plan = graft.map(m, rules, { dry_run = true })
    assert.are.equal(3, calls)
    assert.are.equal(3, phantoms)
    assert.are.equal(#graft.names(m), #plan)
    local by = {}
    for _, s in ipairs(plan) do by[s.from[1]] = s end
    assert.are.same({ "c1.weight" }, by["conv1/kernel"].to)
    assert.are.same({ { 3, 3, 2, 4 } }, by["conv1/kernel"].shapes)
    assert.are.same({ "float32" }, by["conv1/kernel"].dtypes)
    assert.are.equal("hwio_to_oihw", by["conv1/kernel"].transform)
    assert.are.same({ "c2.b_ih", "c2.b_hh" }, by["conv2/bias"].to)
    assert.truthy(by["dense/kernel"].transform:find("^function .*map_spec%.lua:%d+$"), by["dense/kernel"].transform)
    assert.are.same({}, by["optimizer/step"].to)
    assert.is_nil(by["dense/bias"].transform)
    -- each output's shape and dtype, from the transform run on phantoms
    assert.are.same({ { 4, 2, 3, 3 } }, by["conv1/kernel"].to_shapes)
    assert.are.same({ "float32" }, by["conv1/kernel"].to_dtypes)
    assert.are.same({ { 5 }, { 5 } }, by["conv2/bias"].to_shapes)
    assert.are.same({ { 3, 6 } }, by["dense/kernel"].to_shapes)
    assert.are.same({ { 3 } }, by["dense/bias"].to_shapes)
    local text = tostring(plan)
    assert.truthy(text:find("conv1/kernel float32 {3,3,2,4} -> c1.weight float32 {4,2,3,3}  [hwio_to_oihw]", 1,
      true), text)
    assert.truthy(text:find("conv2/bias float32 {5} -> c2.b_ih float32 {5}, c2.b_hh float32 {5}  [function", 1,
      true), text)
    assert.truthy(text:find("optimizer/step int64 {1} -> (dropped)", 1, true), text)
    -- mapping for real reads the data, and the corrupt bytes are found
    local err = H.raises(function() graft.map(m, rules) end)
    assert.truthy(err:find("crc", 1, true), err)
  end)

  it("dry_run: output shapes through casts, arithmetic, reshape and cat; 'unknown' when values are needed", function()
    local src = {
      ["q.weight"] = H.iota({ 8, 4 }), ["k.weight"] = H.iota({ 4, 4 }), ["v.weight"] = H.iota({ 4, 4 }),
      ["b1"] = H.iota({ 4 }), ["b2"] = H.iota({ 4 }), ["scale"] = H.iota({ 2 }),
    }
    local L = graft.layouts
    local plan = graft.map(src, {
      { "^q%.weight$", "qkv.weight", function(q, k, v) return L.qkv_merge(L.rope_permute(q, 2), k, v) end,
        from = { "q.weight", "k.weight", "v.weight" }, name = "rope + merge" },
      { "^b1$", "bias", function(a, b) return (a + b):cast("float16") end, from = { "b1", "b2" } },
      { "^scale$", "scale", function(t) return graft.tensor(t:totable()) end, name = "via Lua" },
    }, { dry_run = true })
    local by = {}
    for _, s in ipairs(plan) do by[s.to[1]] = s end
    assert.are.same({ { 16, 4 } }, by["qkv.weight"].to_shapes)
    assert.are.same({ "float32" }, by["qkv.weight"].to_dtypes)
    assert.are.same({ { 4 } }, by.bias.to_shapes)
    assert.are.same({ "float16" }, by.bias.to_dtypes)
    assert.is_nil(by.scale.to_shapes)
    assert.are.equal("the transform needs tensor data", by.scale.unknown)
    local text = tostring(plan)
    assert.truthy(text:find("-> qkv.weight float32 {16,4}  [rope + merge]", 1, true), text)
    assert.truthy(text:find("scale float32 {2} -> scale ? (the transform needs tensor data)  [via Lua]", 1, true),
      text)
    -- a transform that fails on shapes says so in the plan
    plan = graft.map({ ["q.weight"] = src["q.weight"] },
      { { "^q%.weight$", "q", function(t) return L.rope_permute(t, 3) end } }, { dry_run = true })
    assert.truthy(plan[1].unknown:find("^the transform failed: .*rope_permute"), plan[1].unknown)
  end)

  it("recipes compose: one returns its rules, another extends them", function()
    local dir = H.tmpdir()
    H.write(dir .. "/base.lua", [[
local graft = require "graft"
return {
  { "^conv(%d+)/kernel$", "features.%1.weight", "hwio_to_oihw" },
  { "^conv(%d+)/bias$", "features.%1.bias" },
  { "^dense/kernel$", "classifier.weight", "t" },
  { "^dense/bias$", "classifier.bias" },
}
]])
    H.write(dir .. "/mine.lua", [[
local graft = require "graft"
local base = dofile(... .. "/base.lua")
return graft.rules.extend({ { "^dense/bias$", "fc.bias" } }, base, { { "^optimizer/", graft.drop } })
]])
    local rules = loadfile(dir .. "/mine.lua")(dir)
    local out = graft.map(keras_like(), rules)
    assert.are.same({ "classifier.weight", "fc.bias", "features.1.bias", "features.1.weight",
      "features.2.bias", "features.2.weight" }, sorted(graft.names(out)))
    assert.are.same({ 4, 2, 3, 3 }, out["features.1.weight"].shape)
    local err = H.raises(function() graft.rules.extend({}, "x") end)
    assert.truthy(err:find("rules.extend: argument 2 is not a rules list", 1, true), err)
  end)
end)
