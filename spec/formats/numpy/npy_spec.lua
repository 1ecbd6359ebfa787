-- NumPy .npy: the real files, files numpy writes (every dtype, both byte
-- orders, Fortran order, 0-d, zero-size, strings, header versions 1-3,
-- hand-made headers), and files graft writes, which np.load must read and
-- which must be byte-identical to np.save's output for the same array.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local NPY = "npy/"

local hex = H.hex

local unhex = H.unhex

local flat = H.flat

local function only_tensor(m)
  local names = graft.names(m)
  assert.equal(1, #names)
  return names[1], m[names[1]]
end

-- numpy writes one file per case into argv[1] and prints a manifest:
-- name, path, shape, descr, fortran, and the C-order little-endian bytes
-- (hex) or, for strings, the hex of each element (UTF-8 for 'U').
local GEN = [==[
import sys, json, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(1234)
man = []

def record(name, a, path):
    c = np.ascontiguousarray(a)
    e = {"name": name, "path": path, "shape": list(a.shape),
         "descr": a.dtype.str,
         "fortran": bool(a.flags.f_contiguous and not a.flags.c_contiguous)}
    if a.dtype.kind == 'U':
        e["strings"] = [s.encode('utf-8').hex() for s in c.reshape(-1).tolist()]
    elif a.dtype.kind == 'S':
        e["strings"] = [s.hex() for s in c.reshape(-1).tolist()]
    else:
        e["hex"] = c.astype(c.dtype.newbyteorder('<')).tobytes().hex()
    man.append(e)

def save(name, a, version=None):
    p = "%s/%s.npy" % (d, name)
    with open(p, "wb") as f:
        np.lib.format.write_array(f, a, version=version)
    record(name, a, p)

def rand(dt, shape):
    dt = np.dtype(dt)
    if dt.kind == 'b':
        return rng.integers(0, 2, shape).astype(dt)
    if dt.kind in 'iu':
        i = np.iinfo(dt)
        return rng.integers(i.min, i.max, shape, dtype=dt.newbyteorder('=')).astype(dt)
    if dt.kind == 'f':
        return (rng.standard_normal(shape) * 100).astype(dt)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dt)

for code in ['b1', 'i1', 'u1', 'i2', 'u2', 'i4', 'u4', 'i8', 'u8',
             'f2', 'f4', 'f8', 'c8', 'c16']:
    orders = ['<', '>'] if np.dtype(code).itemsize > 1 else ['|']
    for bo in orders:
        save("%s_%s" % (code, {'<': 'le', '>': 'be', '|': 'na'}[bo]),
             rand(bo + code, (3, 4)))
save("fortran_f4", np.asfortranarray(rand('<f4', (3, 4, 5))))
save("fortran_be_i2", np.asfortranarray(rand('>i2', (2, 3))))
save("fortran_c16", np.asfortranarray(rand('<c16', (4, 2))))
save("scalar_f8", np.array(3.5))
save("scalar_be_i4", np.array(-7, '>i4'))
save("empty_f4", np.zeros((0,), '<f4'))
save("empty_3d_i8", np.zeros((2, 0, 3), '<i8'))
save("nd4_f4", rand('<f4', (2, 3, 4, 5)))
save("nd5_u1", rand('|u1', (2, 1, 3, 1, 2)))
save("unicode", np.array(['ab', 'h\u00e9llo', '', '\u65e5\u672c\u8a9e \U0001F389'], '<U6'))
save("unicode_be", np.array([['x', 'yz'], ['', 'w']], '>U2'))
save("unicode_fortran", np.asfortranarray(np.array([['a', 'bb', 'c'], ['dd', 'e', '']])))
save("unicode_scalar", np.array('bar'))
save("unicode_empty", np.zeros((0, 2), '<U3'))
save("bytes", np.array([b'ab\x00c', b'\xff\xfe', b'', b'xyz\x00\x00'], 'S5'))
save("bytes_ascii", np.array([[b'abc', b'd']], 'S3'))
save("v2_f4", rand('<f4', (2, 3)), version=(2, 0))
save("v3_i2", rand('<i2', (5,)), version=(3, 0))

def raw(name, header, payload, a):
    p = "%s/%s.npy" % (d, name)
    hb = header.encode('latin1')
    with open(p, 'wb') as f:
        f.write(b'\x93NUMPY\x01\x00' + len(hb).to_bytes(2, 'little') + hb + payload)
    record(name, a, p)

a = rand('<f8', (3,))
h = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
while (10 + len(h) + 1) % 8 != 3:
    h += " "
raw("unaligned_f8", h + "\n", a.tobytes(), a)
b = rand('<i2', (2, 3))
raw("reordered_keys", '{"shape": (2L, 3L), "fortran_order": False, "descr": "<i2"}\n',
    b.tobytes(), b)
c = rand('>c8', (2,))
raw("unaligned_be_c8", "{'descr': '>c8', 'fortran_order': False, 'shape': (2,)}\n",
    c.tobytes(), c)
raw("trailing_bytes", "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }   \n",
    a.tobytes() + b"junk after the data", a)
print(json.dumps(man))
]==]

-- numpy reads what graft wrote: argv[1] is a manifest of lines
-- path TAB numpy-dtype TAB shape(JSON) TAB hex TAB op, where hex is the
-- source array (C order) and op says what graft did to it before saving.
local CHECK = [[
import sys, io, json, numpy as np
bad = []
for line in open(sys.argv[1]):
    path, dt, shape, hx, op = line.rstrip('\n').split('\t')
    a = np.frombuffer(bytes.fromhex(hx), dtype=np.dtype(dt)).reshape(tuple(json.loads(shape)))
    for step in op.split('+'):
        if step.startswith('perm:'):
            a = a.transpose([int(x) for x in step[5:].split(',')])
        elif step.startswith('astype:'):
            a = a.astype(step[7:])
    a = a.copy(order='C')  # np.ascontiguousarray would make 0-d arrays 1-d
    want = io.BytesIO()
    np.save(want, a)
    got = open(path, 'rb').read()
    if got != want.getvalue():
        bad.append("%s: bytes differ:\n %r\n %r" % (path, got[:200], want.getvalue()[:200]))
    b = np.load(path)
    if b.dtype != a.dtype or b.shape != a.shape or b.tobytes() != a.tobytes():
        bad.append("%s: np.load gives %s %s" % (path, b.dtype, b.shape))
print("\n".join(bad) if bad else "ok")
]]

-- numpy compares graft's rewrite of string arrays with np.save of the same
-- values at the narrowest width (what graft writes: '<U' when every element
-- is UTF-8, else '|S').
local CHECK_STR = [[
import sys, io, numpy as np
bad = []
for line in open(sys.argv[1]):
    src, out = line.rstrip('\n').split('\t')
    a = np.load(src)
    items = a.reshape(-1).tolist()
    if a.dtype.kind == 'S':
        try:
            items = [x.decode('utf-8') for x in items]
        except UnicodeDecodeError:
            pass
    kind = 'S' if items and isinstance(items[0], bytes) else 'U'
    want_a = np.array(items, dtype=kind).reshape(a.shape)
    want = io.BytesIO()
    np.save(want, want_a)
    got = open(out, 'rb').read()
    if got != want.getvalue():
        bad.append("%s: bytes differ:\n %r\n %r" % (out, got[:200], want.getvalue()[:200]))
    b = np.load(out)
    if b.tolist() != want_a.tolist() or b.dtype != want_a.dtype:
        bad.append("%s: np.load gives %r" % (out, b))
print("\n".join(bad) if bad else "ok")
]]

local NP_DTYPE = {
  bool = "|b1", int8 = "|i1", uint8 = "|u1", int16 = "<i2", uint16 = "<u2",
  int32 = "<i4", uint32 = "<u4", int64 = "<i8", uint64 = "<u8",
  float16 = "<f2", float32 = "<f4", float64 = "<f8", complex64 = "<c8",
  complex128 = "<c16",
}
local ITEMSIZE = {
  bool = 1, int8 = 1, uint8 = 1, int16 = 2, uint16 = 2, int32 = 4,
  uint32 = 4, int64 = 8, uint64 = 8, float16 = 2, float32 = 4, float64 = 8,
  complex64 = 8, complex128 = 16,
}
local GRAFT_DTYPE = {
  b1 = "bool", i1 = "int8", u1 = "uint8", i2 = "int16", u2 = "uint16",
  i4 = "int32", u4 = "uint32", i8 = "int64", u8 = "uint64", f2 = "float16",
  f4 = "float32", f8 = "float64", c8 = "complex64", c16 = "complex128",
}

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- Deterministic bytes; bool gets 0/1, floats stay finite.
local function data_for(dtype, n, seed)
  local out, x = {}, seed
  local function nxt()
    x = (x * 1103515245 + 12345) % 2147483648
    return x
  end
  for i = 1, n do
    if dtype == "bool" then
      out[i] = string.char(nxt() >> 16 & 1)
    elseif dtype:find("^float") or dtype:find("^complex") then
      local k = dtype == "complex128" and 2 or dtype == "complex64" and 2 or 1
      local fmt = ({ float16 = nil, float32 = "<f", float64 = "<d",
                     complex64 = "<f", complex128 = "<d" })[dtype]
      for _ = 1, k do
        local v = (nxt() % 200000 - 100000) / 1000
        out[#out + 1] = fmt and string.pack(fmt, v)
          or string.pack("<I2", (nxt() >> 8) % 0x7800) -- finite halves
      end
    else
      for _ = 1, ITEMSIZE[dtype] do out[#out + 1] = string.char(nxt() >> 16 & 255) end
    end
  end
  return table.concat(out)
end

local function shape_json(shape)
  local t = {}
  for i, d in ipairs(shape) do t[i] = tostring(d) end
  return "[" .. table.concat(t, ",") .. "]"
end

describe("npy real files", function()
  after_each(H.cleanup)

  it("candle test.npy: int64 [10] = 0..9, named after the file", function()
    local p = H.real(NPY .. "candle-tests/test.npy")
    if not p then return end
    local m = graft.open(p)
    local name, t = only_tensor(m)
    assert.equal("test", name)
    assert.equal("int64", t.dtype)
    assert.same({ 10 }, t.shape)
    assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, t:totable())
    local meta = graft.meta(m)
    assert.equal("npy", meta.format)
    assert.equal("1.0", meta.version)
    assert.equal("<i8", meta.descr)
    assert.is_false(meta.fortran_order)
  end)

  it("python3.npy and win64python2.npy (a '(2L,)' shape): float64 [2] = 1, 1", function()
    for _, f in ipairs({ "python3", "win64python2" }) do
      local p = H.real(NPY .. "numpy-testdata/" .. f .. ".npy")
      if not p then return end
      local m = graft.open(p)
      local name, t = only_tensor(m)
      assert.equal(f, name)
      assert.equal("float64", t.dtype)
      assert.same({ 2 }, t.shape)
      assert.same({ 1.0, 1.0 }, t:totable())
      assert.equal("<f8", graft.meta(m).descr)
    end
  end)

  it("py3-objarr.npy (an object array, a pickle) is refused", function()
    local p = H.real(NPY .. "numpy-testdata/py3-objarr.npy")
    if not p then return end
    local err = H.raises(function() graft.open(p) end)
    assert.truthy(err:find(p, 1, true), err)
    assert.truthy(err:find("object arrays ('|O8')", 1, true), err)
  end)

  it("tch-rs linear layer files match numpy's reading", function()
    local shapes = { ws = { 4, 257 }, bs = { 4 }, ["in"] = { 2, 257 }, out = { 2, 4 } }
    local paths = {}
    for f in pairs(shapes) do
      paths[#paths + 1] = H.real(NPY .. "tch-rs-linear/" .. f .. ".npy")
      if not paths[#paths] then return end
    end
    local out = H.py([[
import sys, numpy as np
for p in sys.argv[1:]:
    print(np.load(p).astype('<f4').tobytes().hex())
]], table.unpack(paths))
    local i = 0
    for line in out:gmatch("[^\n]+") do
      i = i + 1
      local m = graft.open(paths[i])
      local name, t = only_tensor(m)
      assert.same(shapes[name], t.shape)
      assert.equal("float32", t.dtype)
      assert.equal(line, hex(t:bytes()))
    end
    assert.equal(4, i)
  end)
end)

describe("npy files written by numpy", function()
  local dir, cases
  setup(function()
    dir = H.tmpdir()
    cases = json.decode(H.py(GEN, dir))
  end)
  teardown(H.cleanup)

  it("every case reads back with numpy's values, shape, order and descr", function()
    assert.truthy(#cases > 30)
    for _, e in ipairs(cases) do
      local m = graft.open(e.path)
      local name, t = only_tensor(m)
      assert.equal(e.name, name)
      assert.same(e.shape, t.shape)
      local meta = graft.meta(m)
      assert.equal(e.descr, meta.descr, e.name)
      assert.equal(e.fortran, meta.fortran_order, e.name)
      if e.strings then
        assert.equal("string", t.dtype)
        local got = flat(t:totable())
        assert.equal(#e.strings, #got, e.name)
        for i, s in ipairs(e.strings) do assert.equal(s, hex(got[i]), e.name) end
      else
        assert.equal(GRAFT_DTYPE[e.descr:sub(2)], t.dtype, e.name)
        assert.equal(e.hex, hex(t:bytes()), e.name)
      end
    end
  end)

  it("header versions 2.0 and 3.0 are read", function()
    for _, e in ipairs(cases) do
      if e.name == "v2_f4" then assert.equal("2.0", graft.meta(graft.open(e.path)).version) end
      if e.name == "v3_i2" then assert.equal("3.0", graft.meta(graft.open(e.path)).version) end
    end
  end)

  it("Fortran-order data: reversing the dims gives the bytes in file order", function()
    for _, e in ipairs(cases) do
      if e.name == "fortran_f4" then
        local t = graft.open(e.path).fortran_f4
        assert.same({ 3, 4, 5 }, t.shape)
        -- the transpose of a Fortran array is C-contiguous: bytes in file order
        local raw = H.read(e.path)
        local body = raw:sub(-4 * 60)
        assert.equal(hex(body), hex(t:permute(3, 2, 1):bytes()))
      end
    end
  end)

  it("a 0-d unicode array is a 0-d string tensor", function()
    for _, e in ipairs(cases) do
      if e.name == "unicode_scalar" then
        local t = graft.open(e.path).unicode_scalar
        assert.equal("string", t.dtype)
        assert.equal(0, t.ndim)
        assert.equal("bar", t:totable())
      end
    end
  end)

  it("graft writes the string arrays back as np.save would", function()
    local out = H.tmpdir()
    local lines = {}
    for _, e in ipairs(cases) do
      if e.strings then
        local m = graft.open(e.path)
        local p = out .. "/" .. e.name .. ".npy"
        graft.save(p, m)
        lines[#lines + 1] = e.path .. "\t" .. p
      end
    end
    H.write(out .. "/manifest", table.concat(lines, "\n") .. "\n")
    assert.equal("ok\n", H.py(CHECK_STR, out .. "/manifest"))
  end)

  it("graft rewrites every numeric case (big-endian and Fortran included) as C-order little-endian", function()
    local out = H.tmpdir()
    local lines = {}
    for _, e in ipairs(cases) do
      if e.hex then
        local m = graft.open(e.path)
        local p = out .. "/" .. e.name .. ".npy"
        graft.save(p, m)
        local dt = NP_DTYPE[GRAFT_DTYPE[e.descr:sub(2)]]
        lines[#lines + 1] = table.concat({ p, dt, shape_json(e.shape), e.hex, "none" }, "\t")
      end
    end
    H.write(out .. "/manifest", table.concat(lines, "\n") .. "\n")
    assert.equal("ok\n", H.py(CHECK, out .. "/manifest"))
  end)
end)

describe("npy files written by graft", function()
  after_each(H.cleanup)

  local SHAPES = { {}, { 0 }, { 5 }, { 2, 3 }, { 2, 3, 4 }, { 1000, 2 }, { 3, 0, 2 },
                   { 1, 1, 1, 1, 2 } }

  it("every dtype and shape is byte-identical to np.save and np.load reads it", function()
    local dir = H.tmpdir()
    local lines, k = {}, 0
    for dtype, npdt in pairs(NP_DTYPE) do
      for _, shape in ipairs(SHAPES) do
        k = k + 1
        local bytes = data_for(dtype, numel(shape), k)
        local t = graft.tensor(bytes, dtype, shape)
        local p = string.format("%s/%s_%d.npy", dir, dtype, k)
        graft.save(p, { x = t })
        lines[#lines + 1] = table.concat({ p, npdt, shape_json(shape), hex(bytes), "none" }, "\t")
      end
    end
    H.write(dir .. "/manifest", table.concat(lines, "\n") .. "\n")
    assert.equal("ok\n", H.py(CHECK, dir .. "/manifest"))
  end)

  it("permuted and lazily cast views are written as their values", function()
    local dir = H.tmpdir()
    local lines = {}
    local function case(name, dtype, shape, op, f)
      local bytes = data_for(dtype, numel(shape), #lines + 7)
      local p = dir .. "/" .. name .. ".npy"
      graft.save(p, { x = f(graft.tensor(bytes, dtype, shape)) })
      lines[#lines + 1] = table.concat({ p, NP_DTYPE[dtype], shape_json(shape), hex(bytes), op }, "\t")
    end
    case("perm", "float32", { 3, 4, 5 }, "perm:2,0,1", function(t) return t:permute(3, 1, 2) end)
    case("t", "int16", { 7, 3 }, "perm:1,0", function(t) return t:t() end)
    case("half", "float32", { 4, 6 }, "astype:float16", function(t) return t:cast("float16") end)
    case("wide", "int16", { 2, 5 }, "astype:float64", function(t) return t:cast("float64") end)
    case("both", "float64", { 3, 2, 4 }, "perm:2,1,0+astype:float32",
      function(t) return t:permute(3, 2, 1):cast("float32") end)
    case("big_t", "float32", { 700, 600 }, "perm:1,0", function(t) return t:t() end)
    H.write(dir .. "/manifest", table.concat(lines, "\n") .. "\n")
    assert.equal("ok\n", H.py(CHECK, dir .. "/manifest"))
  end)

  it("refuses bfloat16 and float8 (no numpy dtype) and leaves nothing behind", function()
    local dir = H.tmpdir()
    for _, dt in ipairs({ "bfloat16", "float8_e4m3fn", "float8_e5m2" }) do
      local t = graft.tensor({ 1, 2, 3 }, "float32"):cast(dt)
      local err = H.raises(function() graft.save(dir .. "/x.npy", { x = t }) end)
      assert.truthy(err:find(dt .. " has no NumPy dtype", 1, true), err)
      assert.truthy(err:find("x.npy", 1, true), err)
    end
    assert.same({}, H.ls(dir))
  end)

  it("a .npy holds exactly one tensor", function()
    local dir = H.tmpdir()
    local t = graft.tensor({ 1, 2 })
    local err = H.raises(function() graft.save(dir .. "/x.npy", { a = t, b = t }) end)
    assert.truthy(err:find("exactly one tensor", 1, true), err)
    err = H.raises(function() graft.save(dir .. "/x.npy", {}) end)
    assert.truthy(err:find("exactly one tensor", 1, true), err)
    assert.same({}, H.ls(dir))
  end)

  it("overwrites an existing target atomically and refuses to overwrite its input", function()
    local dir = H.tmpdir()
    local p = dir .. "/a.npy"
    graft.save(p, { a = graft.tensor({ 1, 2, 3 }, "int32") })
    graft.save(p, { a = graft.tensor({ 4, 5 }, "int64") })
    local m = graft.open(p)
    assert.same({ 4, 5 }, m.a:totable())
    local err = H.raises(function() graft.save(p, m) end)
    assert.truthy(err:find("refusing to overwrite", 1, true), err)
    assert.same({ 4, 5 }, graft.open(p).a:totable())
    assert.same({ "a.npy" }, H.ls(dir))
  end)

  it("round-trips a file through graft unchanged when numpy wrote it C-ordered", function()
    local dir = H.tmpdir()
    H.py([[
import sys, numpy as np
np.save(sys.argv[1], np.arange(24, dtype='<f4').reshape(2, 3, 4))
]], dir .. "/src.npy")
    graft.save(dir .. "/dst.npy", graft.open(dir .. "/src.npy"))
    assert.equal(hex(H.read(dir .. "/src.npy")), hex(H.read(dir .. "/dst.npy")))
  end)

  it("names: the file's base name without .npy", function()
    local dir = H.tmpdir()
    graft.save(dir .. "/fc1.weight.npy", { w = graft.tensor({ 1 }) })
    assert.same({ "fc1.weight" }, graft.names(graft.open(dir .. "/fc1.weight.npy")))
    os.rename(dir .. "/fc1.weight.npy", dir .. "/.npy")
    assert.same({ "array" }, graft.names(graft.open(dir .. "/.npy")))
    os.rename(dir .. "/.npy", dir .. "/noext")
    assert.same({ "noext" }, graft.names(graft.open(dir .. "/noext")))
    assert.equal(unhex("93"), H.read(dir .. "/noext"):sub(1, 1))
  end)
end)
