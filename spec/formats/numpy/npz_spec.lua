-- NumPy .npz: the real archives (stored and deflated members, a Fortran
-- array, a 0-d '<U3' string), archives numpy writes, and archives graft
-- writes (stored like np.savez, deflated like np.savez_compressed), which
-- np.load must read and whose members must be byte-identical to np.save.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local NPZ = "npz/"

local hex = H.hex

local flat = H.flat

local function range(a, b)
  local t = {}
  for i = a, b do t[#t + 1] = i end
  return t
end

-- numpy's own reading of an archive: per member, the name, dtype.str,
-- shape and C-order little-endian bytes (or UTF-8 hex of each string).
local DUMP = [==[
import sys, json, numpy as np
z = np.load(sys.argv[1])
out = []
for k in z.files:
    a = z[k]
    e = {"name": k, "descr": a.dtype.str, "shape": list(a.shape)}
    c = a.reshape(-1)
    if a.dtype.kind == 'U':
        e["strings"] = [s.encode('utf-8').hex() for s in c.tolist()]
    elif a.dtype.kind == 'S':
        e["strings"] = [s.hex() for s in c.tolist()]
    else:
        e["hex"] = c.astype(c.dtype.newbyteorder('<')).tobytes().hex()
    out.append(e)
print(json.dumps(out))
]==]

-- Arrays of every kind, saved by np.savez (argv[2] == "stored") or
-- np.savez_compressed into argv[1].
local GEN = [==[
import sys, numpy as np
rng = np.random.default_rng(99)
arrays = {}
for code in ['b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8',
             'f2', 'f4', 'f8', 'c8', 'c16']:
    dt = np.dtype(code)
    a = (rng.standard_normal((3, 5)) * 50).astype(dt) if dt.kind in 'fc' \
        else rng.integers(0, 100, (3, 5)).astype(dt)
    arrays['le_' + code] = a
    if dt.itemsize > 1:
        arrays['be_' + code] = a.astype(dt.newbyteorder('>'))
arrays['fortran'] = np.asfortranarray(rng.standard_normal((4, 3, 2)).astype('<f4'))
arrays['scalar'] = np.array(2.5)
arrays['empty'] = np.zeros((0, 4), '<i4')
arrays['nd4'] = rng.standard_normal((2, 2, 3, 2))
arrays['words'] = np.array([['ab', 'h\u00e9llo'], ['', '\U0001F389']])
arrays['bytes'] = np.array([b'\xff', b'ok\x00'])
arrays['nested/name'] = np.arange(6, dtype='<u2')
arrays['big'] = rng.standard_normal((300, 500)).astype('<f8')
save = np.savez if sys.argv[2] == 'stored' else np.savez_compressed
save(sys.argv[1], **arrays)
]==]

-- numpy checks an archive graft wrote: argv[1] the archive, argv[2] the
-- expected compression ("stored" or "deflated"), argv[3] a reference .npz
-- whose arrays (in order) each member must equal, as np.save bytes of the
-- C-ordered array (strings at their narrowest width).
local CHECK = [==[
import sys, io, zipfile, numpy as np
path, comp, ref = sys.argv[1:4]
want_type = zipfile.ZIP_STORED if comp == 'stored' else zipfile.ZIP_DEFLATED
r = np.load(ref)
bad = []
zf = zipfile.ZipFile(path)
names = [i.filename for i in zf.infolist()]
if names != [k + '.npy' for k in r.files]:
    bad.append("members %r, expected %r" % (names, r.files))
for info in zf.infolist():
    if info.compress_type != want_type:
        bad.append("%s: compress_type %d" % (info.filename, info.compress_type))
z = np.load(path)
for k in r.files:
    a = r[k]
    if a.dtype.kind in 'SU':
        items = a.reshape(-1).tolist()
        if a.dtype.kind == 'S':
            try:
                items = [x.decode('utf-8') for x in items]
            except UnicodeDecodeError:
                pass
        kind = 'S' if items and isinstance(items[0], bytes) else 'U'
        a = np.array(items, dtype=kind).reshape(a.shape)
    else:
        a = a.astype(a.dtype.newbyteorder('<')).copy(order='C')
    want = io.BytesIO()
    np.save(want, a)
    if zf.read(k + '.npy') != want.getvalue():
        bad.append("%s: member bytes differ" % k)
    b = z[k]
    if b.dtype != a.dtype or b.shape != a.shape or b.tobytes() != a.tobytes():
        bad.append("%s: np.load gives %s %s" % (k, b.dtype, b.shape))
print("\n".join(bad) if bad else "ok")
]==]

-- graft's reading must equal numpy's, member for member.
local function same_as_numpy(path)
  local want = json.decode(H.py(DUMP, path))
  local m = graft.open(path)
  local names = graft.names(m)
  assert.equal(#want, #names, path)
  local arrays = graft.meta(m).arrays
  for i, e in ipairs(want) do
    assert.equal(e.name, names[i])
    local t = m[e.name]
    assert.same(e.shape, t.shape, e.name)
    assert.equal(e.descr, arrays[e.name].descr, e.name)
    if e.strings then
      local got = flat(t:totable())
      assert.equal(#e.strings, #got, e.name)
      for j, s in ipairs(e.strings) do assert.equal(s, hex(got[j]), e.name) end
    else
      assert.equal(e.hex, hex(t:bytes()), e.name)
    end
  end
  return m
end

describe("npz real files", function()
  after_each(H.cleanup)

  it("candle test.npz: x = 0..9, x_plus_one = 1..10 (int64)", function()
    local p = H.real(NPZ .. "candle-tests/test.npz")
    if not p then return end
    local m = graft.open(p)
    assert.same({ "x", "x_plus_one" }, graft.names(m))
    assert.equal("int64", m.x.dtype)
    assert.same(range(0, 9), m.x:totable())
    assert.same(range(1, 10), m.x_plus_one:totable())
    local meta = graft.meta(m)
    assert.equal("npz", meta.format)
    assert.equal("stored", meta.arrays.x.compression)
    assert.equal("x.npy", meta.arrays.x.member)
  end)

  it("hls4ml graph000001.npz: X float32 [4,3] in Fortran order, int64 index arrays", function()
    local p = H.real(NPZ .. "hls4ml-graph000001/graph000001.npz")
    if not p then return end
    local m = same_as_numpy(p)
    assert.same({ "X", "Ri_rows", "Ri_cols", "Ro_rows", "Ro_cols", "y" }, graft.names(m))
    assert.equal("float32", m.X.dtype)
    assert.same({ 4, 3 }, m.X.shape)
    assert.is_true(graft.meta(m).arrays.X.fortran_order)
    assert.is_false(graft.meta(m).arrays.y.fortran_order)
    assert.same({ 1, 0, 0, 1 }, m.y:totable())
    for _, n in ipairs({ "Ri_rows", "Ri_cols", "Ro_rows", "Ro_cols" }) do
      assert.equal("int64", m[n].dtype)
      assert.same({ 4 }, m[n].shape)
    end
  end)

  it("py3-arr-savez(-compressed).npz: x = arange(12) [4,3], foo = 0-d '<U3' 'bar'", function()
    for _, f in ipairs({ "py3-arr-savez.npz", "py3-arr-savez-compressed.npz" }) do
      local p = H.real(NPZ .. "numpy-pr21994-savez/" .. f)
      if not p then return end
      local m = same_as_numpy(p)
      assert.equal("int64", m.x.dtype)
      assert.same({ 4, 3 }, m.x.shape)
      assert.same(range(0, 11), flat(m.x:totable()))
      assert.equal("string", m.foo.dtype)
      assert.equal(0, m.foo.ndim)
      assert.equal("bar", m.foo:totable())
      local meta = graft.meta(m)
      assert.equal("<U3", meta.arrays.foo.descr)
      local comp = f:find("compressed") and "deflated" or "stored"
      assert.equal(comp, meta.arrays.x.compression)
      assert.equal(comp, meta.arrays.foo.compression)
    end
  end)
end)

describe("npz archives written by numpy", function()
  after_each(H.cleanup)

  it("np.savez and np.savez_compressed of every kind read back as numpy reads them", function()
    local dir = H.tmpdir()
    for _, how in ipairs({ "stored", "deflated" }) do
      local p = dir .. "/" .. how .. ".npz"
      H.py(GEN, p, how)
      local m = same_as_numpy(p)
      local meta = graft.meta(m)
      for name in pairs(m) do assert.equal(how, meta.arrays[name].compression) end
      assert.equal("float32", m.fortran.dtype)
      assert.is_true(meta.arrays.fortran.fortran_order)
      assert.equal(">f4", meta.arrays.be_f4.descr)
      assert.same({ 300, 500 }, m.big.shape)
      assert.truthy(m["nested/name"])
    end
  end)

  it("members that are not .npy are skipped and listed in meta.other_members", function()
    local dir = H.tmpdir()
    local p = dir .. "/mixed.npz"
    H.py([[
import sys, zipfile, numpy as np
np.savez(sys.argv[1], a=np.arange(3))
with zipfile.ZipFile(sys.argv[1], 'a') as z:
    z.writestr('README.txt', 'hello')
    z.writestr('sub/', '')
]], p)
    local m = graft.open(p)
    assert.same({ "a" }, graft.names(m))
    assert.same({ 0, 1, 2 }, m.a:totable())
    assert.same({ "README.txt", "sub/" }, graft.meta(m).other_members)
  end)

  it("an empty archive (np.savez with no arrays) has no tensors", function()
    local dir = H.tmpdir()
    H.py("import sys, numpy as np\nnp.savez(sys.argv[1])\n", dir .. "/e.npz")
    local m = graft.open(dir .. "/e.npz")
    assert.same({}, graft.names(m))
  end)
end)

describe("npz archives written by graft", function()
  after_each(H.cleanup)

  it("stored and deflated: numpy's archives rewritten member for member", function()
    local dir = H.tmpdir()
    for _, how in ipairs({ "stored", "deflated" }) do
      local src = dir .. "/src_" .. how .. ".npz"
      H.py(GEN, src, how)
      local m = graft.open(src)
      local out = dir .. "/out_" .. how .. ".npz"
      graft.save(out, m, { compress = how == "deflated" })
      assert.equal("ok\n", H.py(CHECK, out, how, src))
      -- and graft reads its own archive as numpy does
      same_as_numpy(out)
    end
  end)

  it("members follow the given order; permuted and cast views stream in pieces", function()
    local dir = H.tmpdir()
    local src = dir .. "/src.npz"
    H.py([[
import sys, numpy as np
rng = np.random.default_rng(5)
np.savez(sys.argv[1], a=rng.standard_normal((700, 600)).astype('<f4'),
         b=rng.standard_normal((2, 1000, 200)), c=np.arange(10, dtype='>i8'))
]], src)
    local m = graft.open(src)
    local out = dir .. "/out.npz"
    graft.save(out, { a_t = m.a:t(), b_p = m.b:permute(3, 1, 2), c_h = m.c:cast("float16"),
                      b = m.b },
      { order = { "c_h", "b_p", "a_t", "b" }, compress = true })
    assert.equal("ok\n", H.py([[
import sys, zipfile, numpy as np
s = np.load(sys.argv[1]); z = np.load(sys.argv[2])
assert [i.filename for i in zipfile.ZipFile(sys.argv[2]).infolist()] == \
    ['c_h.npy', 'b_p.npy', 'a_t.npy', 'b.npy']
assert np.array_equal(z['a_t'], s['a'].T) and z['a_t'].flags.c_contiguous
assert np.array_equal(z['b_p'], s['b'].transpose(2, 0, 1))
assert np.array_equal(z['b'], s['b'])
assert z['c_h'].dtype == np.float16 and np.array_equal(z['c_h'], s['c'].astype(np.float16))
print("ok")
]], src, out))
  end)

  it("reports progress up to the total of tensor bytes", function()
    local dir = H.tmpdir()
    local t = graft.zeros({ 512, 1024 }, "float32")
    local calls, last, total = 0, 0, 0
    graft.save(dir .. "/p.npz", { a = t, b = t:t() }, {
      progress = function(done, tot)
        calls = calls + 1
        assert.truthy(done >= last)
        last, total = done, tot
      end,
    })
    assert.truthy(calls >= 2)
    assert.equal(2 * 512 * 1024 * 4, total)
    assert.equal(total, last)
  end)

  it("an empty table gives an empty archive numpy opens", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/e.npz", {})
    assert.equal("[]\n", H.py("import sys, numpy as np\nprint(np.load(sys.argv[1]).files)\n",
      dir .. "/e.npz"))
  end)

  it("refuses to overwrite its input and leaves the input intact", function()
    local dir = H.tmpdir()
    local p = dir .. "/a.npz"
    graft.save(p, { x = graft.tensor({ 1, 2, 3 }, "int16") })
    local before = H.read(p)
    local m = graft.open(p)
    local err = H.raises(function() graft.save(p, m) end)
    assert.truthy(err:find("refusing to overwrite", 1, true), err)
    assert.equal(before, H.read(p))
    assert.same({ "a.npz" }, H.ls(dir))
  end)

  it("a failure while writing leaves no target and no temporary file", function()
    local dir = H.tmpdir()
    local p = dir .. "/src.npz"
    graft.save(p, { x = graft.tensor({ 1, 2, 3, 4 }, "int32") })
    -- corrupt the member data: the CRC check fails when it is first read
    local b = H.read(p)
    local at = b:find("\1\0\0\0\2\0\0\0", 1, true)
    H.write(p, b:sub(1, at - 1) .. "\9" .. b:sub(at + 1))
    local m = graft.open(p)
    for _, ext in ipairs({ "npz", "npy" }) do
      local out = dir .. "/out." .. ext
      local err = H.raises(function() graft.save(out, m) end)
      assert.truthy(err:find("CRC-32 mismatch", 1, true), err)
      assert.truthy(err:find('member "x.npy"', 1, true), err)
    end
    -- an existing target survives a failed write unchanged
    H.write(dir .. "/out.npz", "old")
    H.raises(function() graft.save(dir .. "/out.npz", m) end)
    assert.equal("old", H.read(dir .. "/out.npz"))
    local files = H.ls(dir)
    table.sort(files)
    assert.same({ "out.npz", "src.npz" }, files)
  end)

  it("refuses bfloat16, naming the tensor, and writes nothing", function()
    local dir = H.tmpdir()
    local err = H.raises(function()
      graft.save(dir .. "/b.npz", { w = graft.tensor({ 1 }):cast("bfloat16") })
    end)
    assert.truthy(err:find('tensor "w"', 1, true), err)
    assert.truthy(err:find("bfloat16 has no NumPy dtype", 1, true), err)
    assert.same({}, H.ls(dir))
  end)
end)
