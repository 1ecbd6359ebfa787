-- Generic HDF5: files h5py writes (every dtype, byte orders, scalar and
-- empty datasets, contiguous / chunked / gzip / compact layouts, string
-- datasets and attributes, nested and creation-ordered groups, a user
-- block, a deepdish-style dict of arrays), read by graft and compared with
-- what h5py wrote; and files graft writes, read back by h5py.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local GEN = H.read("spec/fixtures/gen_hdf5.py")
local DUMP = H.read("spec/fixtures/h5_structure.py")

local dir, expect
local function gen()
  if not dir then
    dir = H.tmpdir()
    H.py(GEN, dir)
    expect = json.decode(H.read(dir .. "/values.json"))
  end
  return dir
end

local function names_of(m)
  return table.concat(graft.names(m), ",")
end

describe("HDF5", function()
describe("generic HDF5 (h5py-written)", function()
  local m
  setup(function() m = graft.open(gen() .. "/generic.h5") end)

  it("is detected from its signature and keeps HDF5 paths as names", function()
    assert.equal("hdf5", graft.detect(dir .. "/generic.h5"))
    assert.equal("hdf5", graft.meta(m).format)
    assert.truthy(m["types/f4"])
    assert.truthy(m["a/b/c/deep"])
  end)

  it("walks groups in h5py's order: names, or creation order when tracked", function()
    local order = {}
    for _, n in ipairs(graft.names(m)) do
      if n:find("^ordered/") then order[#order + 1] = n end
    end
    assert.same({ "ordered/zeta", "ordered/alpha", "ordered/mid" }, order)
    local py = H.py([[
import sys, h5py
f = h5py.File(sys.argv[1], "r")
out = []
f.visititems(lambda n, o: out.append(n) if isinstance(o, h5py.Dataset) else None)
print(",".join(out))
]], dir .. "/generic.h5")
    -- visititems is name-ordered everywhere; compare outside "ordered/"
    local want = {}
    for n in py:gsub("%s+$", ""):gmatch("[^,]+") do
      if not n:find("^ordered/") then want[#want + 1] = n end
    end
    local got = {}
    for _, n in ipairs(graft.names(m)) do
      if not n:find("^ordered/") then got[#got + 1] = n end
    end
    assert.same(want, got)
  end)

  it("gives every numeric dataset's dtype, shape and bytes as h5py wrote them", function()
    local count = 0
    for name, e in pairs(expect) do
      if e.hex then
        local t = m[name]
        assert.truthy(t, name)
        assert.equal(e.dtype, t.dtype, name)
        assert.same(e.shape, t.shape, name)
        assert.equal(e.hex, H.hex(t:contiguous():bytes()), name)
        count = count + 1
      end
    end
    assert.is_true(count >= 30)
  end)

  it("reads chunked, gzip-compressed and compact datasets on first use", function()
    local c = m["layouts/contiguous"]
    for _, n in ipairs({ "layouts/chunked", "layouts/gzip" }) do
      assert.is_true(m[n]:equal(c), n)
    end
    assert.is_true(m["layouts/shuffle_gzip"]:allclose(c:cast("float64")))
    assert.same({ { 0, 1, 2 }, { 3, 4, 5 } }, m["layouts/compact"]:totable())
  end)

  it("reads variable- and fixed-length string datasets", function()
    assert.equal("string", m["strings/vlen"].dtype)
    assert.same(expect["strings/vlen"].strings, m["strings/vlen"]:totable())
    assert.same({ "ab", "c", "defg" }, m["strings/fixed"]:totable())
    assert.equal("just one", m["strings/scalar"]:totable())
  end)

  it("puts attributes in graft.meta with their HDF5 string types", function()
    local meta = graft.meta(m)
    local root = meta.attrs["/"]
    assert.equal("generic", root.title)
    assert.equal("vlen-utf8", meta.attr_types["/"].title)
    assert.equal("fixed", root.bytes_title)
    assert.equal("S5", meta.attr_types["/"].bytes_title)
    assert.same({ 0, 1, 2 }, root.ints)
    assert.equal(3.25, root.pi)
    assert.same({ "a", "bcd" }, root.names)
    assert.equal("vlen-ascii", meta.attr_types["/"].names)
    assert.equal(true, root.flag)
    assert.same({}, root.empty)
    assert.equal(0.5, meta.attrs["types/f4"].scale)
    assert.equal("none", meta.attrs["strings/vlen"].unit)
    assert.truthy(meta.groups[1])
  end)

  it("opens a file with a user block", function()
    local u = graft.open(dir .. "/userblock.h5")
    assert.same({ 0, 1, 2, 3, 4 }, u.x:totable())
    assert.equal(1024, graft.meta(u).userblock)
  end)
end)

describe("deepdish-style dicts of arrays", function()
  it("reads '/'-joined names from groups", function()
    local m = graft.open(gen() .. "/deepdish.h5")
    assert.equal("conv1/bias,conv1/weight,fc/weight,step", names_of(m))
    assert.equal(7, m.step:totable())
  end)

  it("writes a dict of arrays h5py reads back with the same values", function()
    local out = H.tmpdir() .. "/dd.hdf5"
    local t = {
      ["conv1/weight"] = graft.tensor({ { 1, 2 }, { 3, 4 } }, "float32"),
      ["conv1/bias"] = graft.tensor({ 0.5, -0.5 }, "float64"),
      ["fc/w"] = graft.tensor({ { 1, 2, 3 } }, "float16"):t(),
      step = graft.tensor(7, "int64"),
      mask = graft.tensor({ true, false }, "bool"),
      z = graft.tensor(string.pack("<ffff", 1, 0, 2, 0), "complex64", { 2 }),
    }
    graft.save(out, t)
    local got = H.py([[
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
def show(n, o):
    if isinstance(o, h5py.Dataset):
        v = o[()]
        print(n, o.dtype.str, o.shape, np.asarray(v).reshape(-1).tolist())
f.visititems(show)
]], out)
    assert.equal(table.concat({
      "conv1/bias <f8 (2,) [0.5, -0.5]",
      "conv1/weight <f4 (2, 2) [1.0, 2.0, 3.0, 4.0]",
      "fc/w <f2 (3, 1) [1.0, 2.0, 3.0]",
      "mask |b1 (2,) [True, False]",
      "step <i8 () [7]",
      "z <c8 (2,) [(1+0j), (2+0j)]",
    }, "\n") .. "\n", got)
    local back = graft.open(out)
    assert.is_true(back["fc/w"]:equal(t["fc/w"]))
  end)

  it("writes string tensors as variable-length UTF-8 datasets", function()
    local src = graft.open(gen() .. "/generic.h5")
    local out = H.tmpdir() .. "/s.h5"
    graft.save(out, { words = src["strings/vlen"], one = src["strings/scalar"] },
      { format = "hdf5" })
    local got = H.py([==[
import sys, h5py
f = h5py.File(sys.argv[1], "r")
print(h5py.check_string_dtype(f["words"].dtype), [x.decode() for x in f["words"][()]], f["one"][()].decode())
]==], out)
    assert.truthy(got:find("string_info(encoding='utf-8', length=None)", 1, true), got)
    assert.truthy(got:find("'h\u{e9}llo', '', '" .. string.rep("x", 40) .. "'", 1, true), got)
    assert.truthy(got:find("just one", 1, true))
  end)

  it("rewrites a generic HDF5 file with the structure h5py sees unchanged", function()
    -- What graft changes on purpose: data is written little-endian, string
    -- datasets as vlen UTF-8, and groups without creation-order tracking.
    local function norm(dump)
      local out = {}
      for l in dump:gmatch("[^\n]+") do
        if not l:find("^D ordered/") and not l:find("^D strings/fixed") then
          out[#out + 1] = (l:gsub("^(D %S+ )>", "%1<"))
        end
      end
      return table.concat(out, "\n")
    end
    local src = gen() .. "/generic.h5"
    local out = H.tmpdir() .. "/copy.h5"
    graft.save(out, graft.open(src), { format = "hdf5" })
    assert.equal(norm(H.py(DUMP, src)), norm(H.py(DUMP, out)))
    local real = H.real("keras_h5/genomic-gaps-full-model-keras2.2.4tf/best_single.hdf5")
    local out2 = H.tmpdir() .. "/real.h5"
    graft.save(out2, graft.open(real, { format = "hdf5" }), { format = "hdf5" })
    assert.equal(H.py(DUMP, real), H.py(DUMP, out2))
  end)
end)

describe("graft-written HDF5 data", function()
  it("is contiguous and mapped back without a copy", function()
    local out = H.tmpdir() .. "/big.h5"
    local w = graft.tensor(string.rep("\1\2\3\4", 4096), "float32", { 64, 64 })
    graft.save(out, { ["layer/w"] = w }, { format = "hdf5" })
    local info = H.py([[
import sys, h5py
d = h5py.File(sys.argv[1], "r")["layer/w"]
print(d.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS, d.compression, d.id.get_offset() % 64)
]], out)
    assert.equal("True None 0\n", info)
    assert.is_true(graft.open(out)["layer/w"]:equal(w))
  end)
end)

teardown(H.cleanup)
end)
