-- The Lua layer's vocabulary: graft.map rules, graft.check, graft.names,
-- graft.meta, graft.save's policy (order, dtype, format from extension) and
-- graft.json (Python-compatible output).
local graft = require "graft"
local json = require "graft.json"
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

describe("graft.save policy", function()
  after_each(H.cleanup)

  local NPZ_ORDER = [[
import sys, numpy as np
z = np.load(sys.argv[1])
print(" ".join("%s:%s" % (k, z[k].dtype) for k in z.files))
]]

  it("opts.order puts names first in that order, the rest after", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/a.npz", keras_like(), { order = { "optimizer/step", "dense/bias" } })
    assert.are.equal("optimizer/step:int64 dense/bias:float32 conv1/bias:float32 "
      .. "conv1/kernel:float32 conv2/bias:float32 conv2/kernel:float32 dense/kernel:float32\n",
      H.py(NPZ_ORDER, dir .. "/a.npz"))
    local err = H.raises(function()
      graft.save(dir .. "/b.npz", keras_like(), { order = { "nope" } })
    end)
    assert.truthy(err:find('"nope"', 1, true), err)
    assert.are.same({ "a.npz" }, H.ls(dir))
  end)

  it("opts.dtype casts floating-point tensors only", function()
    local dir = H.tmpdir()
    local t = {
      f32 = graft.tensor({ 0.1, 70000 }), f64 = graft.tensor({ 1 / 3 }, "float64"),
      bf = graft.tensor({ 2.5 }, "bfloat16"), i = graft.tensor({ 3 }, "int32"),
      u = graft.tensor({ 200 }, "uint8"), b = graft.tensor({ true }, "bool"),
    }
    graft.save(dir .. "/h.npz", t, { dtype = "float16", order = { "f32", "f64", "bf", "i", "u", "b" } })
    assert.are.equal("f32:float16 f64:float16 bf:float16 i:int32 u:uint8 b:bool\n",
      H.py(NPZ_ORDER, dir .. "/h.npz"))
    local m = graft.open(dir .. "/h.npz")
    assert.are.same({ 0.0999755859375, math.huge }, m.f32:totable())
    assert.are.same({ 0.333251953125 }, m.f64:totable())
    assert.are.same({ 3 }, m.i:totable())
    local err = H.raises(function()
      graft.save(dir .. "/x.npz", t, { dtype = "float17" })
    end)
    assert.truthy(err:find("^graft: " .. dir:gsub("%p", "%%%0") .. "/x.npz: opts.dtype: unknown dtype 'float17'"), err)
  end)

  it("a value that is not a tensor is an error naming its key", function()
    local dir = H.tmpdir()
    local t = keras_like()
    t["layer.scale"] = 0.5
    local err = H.raises(function() graft.save(dir .. "/x.safetensors", t) end)
    assert.are.equal('graft: save: "layer.scale" is not a tensor (it is a number)', err)
    err = H.raises(function() graft.save(dir .. "/x.safetensors", { graft.zeros({ 1 }) }) end)
    assert.truthy(err:find("names must be strings", 1, true), err)
    assert.are.same({}, H.ls(dir))
  end)

  it("the format comes from the extension or opts.format", function()
    local dir = H.tmpdir()
    local t = { w = graft.tensor({ { 1, 2 }, { 3, 4 } }) }
    graft.save(dir .. "/a.safetensors", t)
    graft.save(dir .. "/b.NPZ", t)
    graft.save(dir .. "/w.npy", t)
    graft.save(dir .. "/c.bin", t, { format = "npz" })
    graft.save(dir .. "/d.npz", t, { compress = true })
    assert.are.equal("safetensors", graft.detect(dir .. "/a.safetensors"))
    assert.are.equal("npz", graft.detect(dir .. "/b.NPZ"))
    assert.are.equal("npy", graft.detect(dir .. "/w.npy"))
    assert.are.equal("npz", graft.detect(dir .. "/c.bin"))
    assert.are.equal("deflated\n", H.py([[
import sys, zipfile
print("deflated" if zipfile.ZipFile(sys.argv[1]).infolist()[0].compress_type == 8 else "stored")
]], dir .. "/d.npz"))
    for _, f in ipairs({ "a.safetensors", "b.NPZ", "w.npy", "c.bin", "d.npz" }) do
      assert.is_true(graft.open(dir .. "/" .. f).w:equal(t.w), f)
    end
    local err = H.raises(function() graft.save(dir .. "/e.pkl9", t) end)
    assert.are.equal("graft: " .. dir .. "/e.pkl9: cannot tell the format from the extension; "
      .. "pass opts.format", err)
    err = H.raises(function() graft.save(dir .. "/noext", t) end)
    assert.truthy(err:find("/noext: cannot tell the format", 1, true), err)
  end)
end)

describe("graft.json", function()
  it("encode_pretty is Python's json.dumps(indent=2, sort_keys=True)", function()
    local v = {
      name = "h\u{e9}llo w\u{f6}rld \u{2713} \u{1F600}",
      list = { 1, 2.5, -3, 1e-7, 1e21, 0.1, 123456789012, -0.0, 1e16, 2 ^ 63 },
      nested = {
        deep = { ["\u{43a}\u{43b}\u{44e}\u{447}"] = "\u{437}\u{43d}\u{430}\u{447}",
                 empty_obj = {}, empty_arr = setmetatable({}, json.array_mt),
                 t = true, f = false, arr = { { 1, { 2 } }, {} } },
        ["tab\tnew\nline"] = "q\"uote\\back/slash\1\127\u{80}",
      },
      Zed = 1, B = 2, ["\u{e9}"] = 3,
    }
    local py = [==[
import sys, json
v = {
  "name": "h\u00e9llo w\u00f6rld \u2713 \U0001F600",
  "list": [1, 2.5, -3, 1e-7, 1e21, 0.1, 123456789012, -0.0, 1e16, 2.0 ** 63],
  "nested": {
    "deep": {"\u043a\u043b\u044e\u0447": "\u0437\u043d\u0430\u0447",
             "empty_obj": {}, "empty_arr": [], "t": True, "f": False,
             "arr": [[1, [2]], {}]},
    "tab\tnew\nline": "q\"uote\\back/slash\x01\x7f\x80",
  },
  "Zed": 1, "B": 2, "\u00e9": 3,
}
if sys.argv[1] == "pretty":
    sys.stdout.write(json.dumps(v, indent=2, sort_keys=True) + "\n")
else:
    sys.stdout.write(json.dumps(v, sort_keys=True, separators=(",", ":")) + "\n")
]==]
    assert.are.equal(H.py(py, "pretty"), json.encode_pretty(v) .. "\n")
    assert.are.equal(H.py(py, "compact"), json.encode(v) .. "\n")
    local back = json.decode(json.encode(v))
    assert.are.equal(v.name, back.name)
    assert.are.equal(v.nested["tab\tnew\nline"], back.nested["tab\tnew\nline"])
    H.cleanup()
  end)

  it("refuses NaN and infinities", function()
    local err = H.raises(function() json.encode({ x = 0 / 0 }) end)
    assert.truthy(err:find("^graft: cannot encode"), err)
    err = H.raises(function() json.encode({ math.huge }) end)
    assert.truthy(err:find("^graft: cannot encode inf"), err)
  end)
end)
