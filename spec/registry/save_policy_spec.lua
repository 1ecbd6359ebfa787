-- graft.save's policy for every format: opts.order, opts.dtype (floating
-- point only), tables that are not name -> tensor, the format from the
-- extension or opts.format. (Moved from map_spec.lua.)
local graft = require "graft"
local H = require "helper"

local iota, keras_like = H.iota, H.keras_like

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
