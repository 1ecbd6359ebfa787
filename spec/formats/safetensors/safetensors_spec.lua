-- safetensors: the real framework-written files, round trips, and byte
-- identity with an independent reference implementation (spec/fixtures/
-- st_ref.py, which follows the Rust crate's reader and writer rule for rule
-- and reproduces the reference-written fixtures byte for byte).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local REF = "spec/fixtures/st_ref.py"
local ST = "safetensors/"

-- graft dtype -> safetensors dtype string
local ST_DTYPE = {
  bool = "BOOL", uint8 = "U8", int8 = "I8", float8_e5m2 = "F8_E5M2",
  float8_e4m3fn = "F8_E4M3", int16 = "I16", uint16 = "U16", float16 = "F16",
  bfloat16 = "BF16", int32 = "I32", uint32 = "U32", float32 = "F32",
  complex64 = "C64", float64 = "F64", int64 = "I64", uint64 = "U64",
}
local ITEMSIZE = {
  bool = 1, uint8 = 1, int8 = 1, float8_e5m2 = 1, float8_e4m3fn = 1,
  int16 = 2, uint16 = 2, float16 = 2, bfloat16 = 2, int32 = 4, uint32 = 4,
  float32 = 4, complex64 = 8, float64 = 8, int64 = 8, uint64 = 8,
}

local function ref(...)
  return H.py(H.read(REF), ...)
end

local function ref_dump(path)
  return json.decode(ref("dump", path))
end

local hex = H.hex

local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- JSON for `st_ref.py write`: list of {name, dtype, shape, bytes}.
local function spec_json(list, metadata)
  local parts = {}
  for _, t in ipairs(list) do
    local dims = {}
    for i, d in ipairs(t.shape) do dims[i] = tostring(d) end
    parts[#parts + 1] = string.format('%s:{"dtype":"%s","shape":[%s],"hex":"%s"}',
      jstr(t.name), ST_DTYPE[t.dtype], table.concat(dims, ","), hex(t.bytes))
  end
  local md = "null"
  if metadata then
    local kv = {}
    for k, v in pairs(metadata) do kv[#kv + 1] = jstr(k) .. ":" .. jstr(v) end
    md = "{" .. table.concat(kv, ",") .. "}"
  end
  return '{"metadata":' .. md .. ',"tensors":{' .. table.concat(parts, ",") .. "}}"
end

-- Deterministic pseudo-random bytes.
local function bytes_of(n, seed)
  local out, x = {}, seed * 2654435761 % 4294967296
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    out[i] = string.char((x >> 16) & 255)
  end
  return table.concat(out)
end

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- Tensors of `list` as a graft table.
local function graft_tensors(list)
  local m = {}
  for _, t in ipairs(list) do m[t.name] = graft.tensor(t.bytes, t.dtype, t.shape) end
  return m
end

-- What st_ref says about a file must be what graft says about it.
local function assert_same_as_ref(path)
  local d = ref_dump(path)
  local m = graft.open(path)
  local names = graft.names(m)
  assert.are.equal(#d.tensors, #names)
  for i, t in ipairs(d.tensors) do
    assert.are.equal(t.name, names[i])
    local g = m[t.name]
    assert.are.equal(t.dtype, ST_DTYPE[g.dtype])
    assert.are.same(t.shape, g.shape)
    assert.are.equal(t.hex, hex(g:bytes()))
  end
  local md = graft.meta(m).__metadata__
  if d.metadata == nil then
    assert.is_nil(md)
  else
    assert.are.same(d.metadata, md)
  end
  return m
end

local function listing(dir)
  local t = H.ls(dir)
  table.sort(t)
  return t
end

describe("safetensors real files", function()
  after_each(H.cleanup)

  local pr84 = {
    B = { "uint8", { 253, 254, 255, 0, 1, 2 } },
    H = { "uint16", { 65533, 65534, 65535, 0, 1, 2 } },
    I = { "uint32", { 4294967293, 4294967294, 4294967295, 0, 1, 2 } },
    b = { "int8", { -3, -2, -1, 0, 1, 2 } },
    h = { "int16", { -3, -2, -1, 0, 1, 2 } },
    i = { "int32", { -3, -2, -1, 0, 1, 2 } },
    e = { "float16", { -3, -2, -1, 0, 1, 2 } },
    f = { "float32", { -3, -2, -1, 0, 1, 2 } },
    d = { "float64", { -3, -2, -1, 0, 1, 2 } },
  }

  for code, want in pairs(pr84) do
    it("reads hf-safetensors-pr84 " .. code .. ".safetensors (unpadded header, misaligned data)", function()
      local p = H.real(ST .. "hf-safetensors-pr84-samples/" .. code .. ".safetensors")
      if not p then return end
      local m = graft.open(p)
      assert.are.same({ code }, graft.names(m))
      local t = m[code]
      assert.are.equal(want[1], t.dtype)
      assert.are.same({ 6 }, t.shape)
      assert.are.same(want[2], t:totable())
      assert.are.same({ test = "a" }, graft.meta(m).__metadata__)
      assert.are.equal("safetensors", graft.meta(m).format)
      -- a misaligned tensor still works as an operand
      assert.are.same({ 2, 1, 0 }, t:narrow(1, 4, 3):flip(1):cast("float64"):totable())
      assert_same_as_ref(p)
    end)
  end

  it("reads hf-safetensors-pr84 overall.safetensors: all 9 in offset order", function()
    local p = H.real(ST .. "hf-safetensors-pr84-samples/overall.safetensors")
    if not p then return end
    local m = graft.open(p)
    assert.are.same({ "B", "H", "I", "b", "d", "e", "f", "h", "i" }, graft.names(m))
    for code, want in pairs(pr84) do
      assert.are.equal(want[1], m[code].dtype)
      assert.are.same(want[2], m[code]:totable())
    end
    assert.are.same({ test = "a" }, graft.meta(m).__metadata__)
    assert_same_as_ref(p)
  end)

  it("reads iree empty.safetensors: no tensors, no metadata", function()
    local p = H.real(ST .. "iree-safetensors-testdata/empty.safetensors")
    if not p then return end
    local m = graft.open(p)
    assert.are.same({}, graft.names(m))
    assert.is_nil(next(m))
    assert.is_nil(graft.meta(m).__metadata__)
  end)

  it("reads iree single.safetensors and multiple.safetensors", function()
    local p = H.real(ST .. "iree-safetensors-testdata/single.safetensors")
    if not p then return end
    local m = graft.open(p)
    assert.are.same({ "tensor0" }, graft.names(m))
    assert.are.equal("float32", m.tensor0.dtype)
    assert.are.same({ { 0, 0 }, { 0, 0 } }, m.tensor0:totable())
    m = graft.open(H.real(ST .. "iree-safetensors-testdata/multiple.safetensors"))
    assert.are.same({ "tensor0", "tensor1", "tensor2" }, graft.names(m))
    assert.are.same({ 2, 2 }, m.tensor0.shape)
    assert.are.same({ 1, 2 }, m.tensor1.shape)
    assert.are.same({ 4, 3 }, m.tensor2.shape)
    for _, n in ipairs(graft.names(m)) do
      assert.are.equal("float32", m[n].dtype)
      assert.are.equal(string.rep("\0", m[n].numel * 4), m[n]:bytes())
    end
    assert.is_nil(graft.meta(m).__metadata__)
  end)

  it("reads candle jfk-codes.safetensors (I64 [1,2,828])", function()
    local p = H.real(ST .. "candle-jfk-codes-i64/jfk-codes.safetensors")
    if not p then return end
    local m = assert_same_as_ref(p)
    local t = m.codes
    assert.are.equal("int64", t.dtype)
    assert.are.same({ 1, 2, 828 }, t.shape)
    local v = t:totable()
    assert.are.same({ 865, 62, 408, 408, 475, 1022 }, { table.unpack(v[1][1], 1, 6) })
    assert.are.same({ 200, 518, 518, 518 }, { table.unpack(v[1][2], 1, 4) })
    assert.are.equal(889, v[1][2][828])
    local sum, lo, hi = 0, math.huge, -math.huge
    for _, row in ipairs(v[1]) do
      for _, x in ipairs(row) do
        sum = sum + x
        lo, hi = math.min(lo, x), math.max(hi, x)
      end
    end
    assert.are.same({ 960640, 0, 1023 }, { sum, lo, hi })
  end)

  it("writes every real file back byte-identical to the reference writer", function()
    if not H.have_real() then return H.real(ST) end
    local dir = H.tmpdir()
    for _, rel in ipairs({
      "candle-jfk-codes-i64/jfk-codes.safetensors",
      "iree-safetensors-testdata/empty.safetensors",
      "iree-safetensors-testdata/single.safetensors",
      "iree-safetensors-testdata/multiple.safetensors",
      "hf-safetensors-pr84-samples/B.safetensors",
      "hf-safetensors-pr84-samples/H.safetensors",
      "hf-safetensors-pr84-samples/d.safetensors",
      "hf-safetensors-pr84-samples/e.safetensors",
      "hf-safetensors-pr84-samples/overall.safetensors",
    }) do
      local p = H.real(ST .. rel)
      local m = graft.open(p)
      local out, want = dir .. "/graft.safetensors", dir .. "/ref.safetensors"
      graft.save(out, m, { metadata = graft.meta(m).__metadata__ })
      ref("resave", p, want)
      assert.are.equal(hex(H.read(want)), hex(H.read(out)), rel)
      -- files the reference writer made come out byte for byte the same
      if not rel:find("pr84") then
        assert.are.equal(H.read(p), H.read(out), rel)
      end
      assert.are.equal("ok\n", ref("check", out))
      local back = graft.open(out)
      for _, n in ipairs(graft.names(m)) do assert.is_true(back[n]:equal(m[n])) end
    end
  end)
end)

describe("safetensors round trips", function()
  after_each(H.cleanup)

  local all_dtypes = {
    "bool", "uint8", "int8", "float8_e5m2", "float8_e4m3fn", "int16", "uint16",
    "float16", "bfloat16", "int32", "uint32", "float32", "complex64",
    "float64", "int64", "uint64",
  }

  local function list_for(shapes)
    local list = {}
    for i, dt in ipairs(all_dtypes) do
      for j, shape in ipairs(shapes) do
        local n = numel(shape) * ITEMSIZE[dt]
        local b = bytes_of(n, i * 31 + j)
        if dt == "bool" then b = b:gsub(".", function(c) return string.char(c:byte() & 1) end) end
        list[#list + 1] = { name = dt .. "." .. j, dtype = dt, shape = shape, bytes = b }
      end
    end
    return list
  end

  it("writes every dtype byte-identical to the reference and reads it back", function()
    local dir = H.tmpdir()
    local list = list_for({ { 3, 5 }, {}, { 0 }, { 2, 0, 3 }, { 7 } })
    local out, want = dir .. "/g.safetensors", dir .. "/r.safetensors"
    graft.save(out, graft_tensors(list))
    ref("write", want, spec_json(list))
    assert.are.equal(hex(H.read(want)), hex(H.read(out)))
    local d = ref_dump(out)
    local by = {}
    for _, t in ipairs(list) do by[t.name] = t end
    for _, t in ipairs(d.tensors) do
      assert.are.equal(ST_DTYPE[by[t.name].dtype], t.dtype)
      assert.are.same(by[t.name].shape, t.shape)
      assert.are.equal(hex(by[t.name].bytes), t.hex)
    end
    local m = graft.open(out)
    for _, t in ipairs(list) do
      assert.are.equal(t.dtype, m[t.name].dtype)
      assert.are.same(t.shape, m[t.name].shape)
      assert.are.equal(t.bytes, m[t.name]:bytes())
    end
  end)

  it("reads numpy-written files exactly (values generated by numpy)", function()
    local dir = H.tmpdir()
    local p = dir .. "/np.safetensors"
    ref("write", p, [[{"metadata":{"format":"np"},"tensors":{
      "w":{"dtype":"F32","shape":[4,3],"random":1},
      "d":{"dtype":"F64","shape":[5],"random":2},
      "h":{"dtype":"F16","shape":[2,2,2],"random":3},
      "c":{"dtype":"C64","shape":[3],"random":4},
      "i":{"dtype":"I64","shape":[6],"random":5},
      "u":{"dtype":"U64","shape":[6],"random":6},
      "q":{"dtype":"I8","shape":[9],"random":7},
      "k":{"dtype":"BOOL","shape":[5],"random":8},
      "s":{"dtype":"F32","shape":[],"values":2.5},
      "z":{"dtype":"I32","shape":[0,4],"values":[]},
      "v":{"dtype":"U16","shape":[3],"values":[1,65535,7]}}}]])
    local m = assert_same_as_ref(p)
    assert.are.same({ format = "np" }, graft.meta(m).__metadata__)
    assert.are.same({}, m.s.shape)
    assert.are.equal(2.5, m.s:totable())
    assert.are.same({ 0, 4 }, m.z.shape)
    assert.are.equal(0, m.z.numel)
    assert.are.same({ 1, 65535, 7 }, m.v:totable())
    -- offsets follow the reference order: alignment descending, then name
    assert.are.same({ "u", "i", "d", "c", "s", "w", "z", "h", "v", "q", "k" },
      graft.names(m))
  end)

  it("orders tensors as the reference writer: dtype descending, then name", function()
    local dir = H.tmpdir()
    local list = {
      { name = "b", dtype = "float32", shape = { 1 }, bytes = "\0\0\128\63" },
      { name = "a", dtype = "uint8", shape = { 1 }, bytes = "\1" },
      { name = "A", dtype = "float32", shape = { 1 }, bytes = "\0\0\0\64" },
      { name = "c", dtype = "bfloat16", shape = { 2 }, bytes = "\128\63\0\64" },
      { name = "d", dtype = "float16", shape = { 1 }, bytes = "\0\60" },
      { name = "e", dtype = "uint64", shape = { 1 }, bytes = string.rep("\255", 8) },
      { name = "f", dtype = "float8_e4m3fn", shape = { 1 }, bytes = "\56" },
      { name = "g", dtype = "float8_e5m2", shape = { 1 }, bytes = "\60" },
      { name = "h", dtype = "bool", shape = { 1 }, bytes = "\1" },
      { name = "\xc3\xa9", dtype = "float32", shape = { 1 }, bytes = "\0\0\0\0" },
      { name = "Z", dtype = "float32", shape = { 1 }, bytes = "\0\0\0\0" },
    }
    local out, want = dir .. "/g.safetensors", dir .. "/r.safetensors"
    graft.save(out, graft_tensors(list))
    ref("write", want, spec_json(list))
    assert.are.equal(H.read(want), H.read(out))
    local m = graft.open(out)
    assert.are.same({ "e", "A", "Z", "b", "\xc3\xa9", "c", "d", "f", "g", "a", "h" },
      graft.names(m))
  end)

  it("writes metadata first, keys sorted, escaped as serde_json does", function()
    local dir = H.tmpdir()
    local md = { format = "pt", ["quote\"back\\slash"] = "tab\tnl\ncr\rff\fbs\bone\1del\127",
                 ["\xc3\xa9t\xc3\xa9"] = "\xe2\x82\xac/", empty = "" }
    local list = {
      { name = "we\"ird\\na\nme\1", dtype = "float32", shape = { 2 }, bytes = "\0\0\128\63\0\0\0\64" },
      { name = "x/y.z", dtype = "int64", shape = {}, bytes = "\42\0\0\0\0\0\0\0" },
    }
    local out, want = dir .. "/g.safetensors", dir .. "/r.safetensors"
    graft.save(out, graft_tensors(list), { metadata = md })
    ref("write", want, spec_json(list, md))
    assert.are.equal(H.read(want), H.read(out))
    local raw = H.read(out)
    local n = string.unpack("<I8", raw)
    assert.are.equal(0, n % 8)
    local header = raw:sub(9, 8 + n)
    local want = '{"__metadata__":{"empty":"","format":"pt","quote\\"back\\\\slash":'
      .. '"tab\\tnl\\ncr\\rff\\fbs\\bone\\u0001del\127","\xc3\xa9t\xc3\xa9":"\xe2\x82\xac/"},'
    assert.are.equal(want, header:sub(1, #want))
    assert.truthy(header:find('"we\\"ird\\\\na\\nme\\u0001":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}', 1, true))
    assert.truthy(header:find('"x/y.z":{"dtype":"I64","shape":[],"data_offsets":[0,8]}', 1, true))
    local m = graft.open(out)
    assert.are.same(md, graft.meta(m).__metadata__)
    assert.are.same({ 1, 2 }, m["we\"ird\\na\nme\1"]:totable())
    assert.are.equal(42, m["x/y.z"]:totable())
  end)

  it("writes an empty metadata table as an empty __metadata__, none as none", function()
    local dir = H.tmpdir()
    local t = { x = graft.tensor({ 1, 2 }, "float32") }
    graft.save(dir .. "/a.safetensors", t, { metadata = {} })
    graft.save(dir .. "/b.safetensors", t)
    local list = { { name = "x", dtype = "float32", shape = { 2 }, bytes = t.x:bytes() } }
    ref("write", dir .. "/ra.safetensors", spec_json(list, {}))
    ref("write", dir .. "/rb.safetensors", spec_json(list))
    assert.are.equal(H.read(dir .. "/ra.safetensors"), H.read(dir .. "/a.safetensors"))
    assert.are.equal(H.read(dir .. "/rb.safetensors"), H.read(dir .. "/b.safetensors"))
    assert.truthy(H.read(dir .. "/a.safetensors"):find('{"__metadata__":{},"x":', 9, true))
  end)

  it("materialises views and lazy casts while writing", function()
    local dir = H.tmpdir()
    local w = graft.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32")
    graft.save(dir .. "/v.safetensors", {
      t = w:t(), h = w:cast("float16"), n = w:narrow(2, 2, 2), f = w:flip(1),
      b = w:t():cast("bfloat16"), i = w:cast("int64"),
    })
    local m = graft.open(dir .. "/v.safetensors")
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, m.t:totable())
    assert.are.equal("float16", m.h.dtype)
    assert.are.same(w:cast("float16"):bytes(), m.h:bytes())
    assert.are.same({ { 2, 3 }, { 5, 6 } }, m.n:totable())
    assert.are.same({ { 4, 5, 6 }, { 1, 2, 3 } }, m.f:totable())
    assert.are.equal("bfloat16", m.b.dtype)
    assert.are.same({ 3, 2 }, m.b.shape)
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, m.b:float():totable())
    assert.are.equal("int64", m.i.dtype)
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, m.i:totable())
    assert.are.equal("ok\n", ref("check", dir .. "/v.safetensors"))
  end)

  it("round trips a tensor bigger than the 4 MiB write buffer", function()
    local dir = H.tmpdir()
    local n = 1500000 -- 6 MB of float32
    local big = graft.zeros({ n }, "float32")
    local parts = {}
    for i = 1, 16 do parts[i] = string.pack("<f", i) end
    local seq = graft.tensor(table.concat(parts), "float32", { 16 })
    local t = graft.cat({ big, seq, big:narrow(1, 1, 1000):cast("float64"):float() }, 1)
    local calls, last = 0, nil
    graft.save(dir .. "/big.safetensors", { big = t, small = seq:flip(1), rev = t:flip(1) }, {
      progress = function(done, total) calls = calls + 1; last = { done, total } end,
    })
    local m = graft.open(dir .. "/big.safetensors")
    assert.is_true(m.big:equal(t))
    assert.are.same({ 1, 2, 3 }, m.big:narrow(1, n + 1, 3):totable())
    assert.is_true(m.rev:equal(t:flip(1)))
    assert.are.same({ 16, 15, 14 }, m.small:narrow(1, 1, 3):totable())
    assert.is_true(calls >= 4)
    local total = (2 * (n + 16 + 1000) + 16) * 4
    assert.are.same({ total, total }, last)
  end)
end)

describe("safetensors safe writing", function()
  after_each(H.cleanup)

  it("leaves no file and no temporary file when a lazy cast fails mid-way", function()
    local dir = H.tmpdir()
    local vals = {}
    for i = 1, 1000 do vals[i] = i end
    vals[900] = 0 / 0
    local bad = graft.tensor(vals, "float32"):cast("int32")
    local good = graft.tensor({ 1, 2 }, "float32")
    local err = H.raises(function()
      graft.save(dir .. "/out.safetensors", { a = good, z = bad })
    end)
    assert.truthy(err:find(dir .. "/out.safetensors", 1, true))
    assert.truthy(err:find("z", 1, true))
    assert.are.same({}, listing(dir))
  end)

  it("keeps an existing target intact when writing over it fails", function()
    local dir = H.tmpdir()
    local p = dir .. "/out.safetensors"
    graft.save(p, { a = graft.tensor({ 1, 2 }, "float32") })
    local before = H.read(p)
    local bad = graft.tensor({ 1, 0 / 0 }, "float64"):cast("int8")
    H.raises(function() graft.save(p, { a = bad }) end)
    assert.are.equal(before, H.read(p))
    assert.are.same({ "out.safetensors" }, listing(dir))
  end)

  it("refuses to overwrite the file it is reading, also through a symlink", function()
    local dir = H.tmpdir()
    local p = dir .. "/m.safetensors"
    graft.save(p, { a = graft.tensor({ 1, 2, 3 }, "float32") })
    local before = H.read(p)
    local m = graft.open(p)
    local err = H.raises(function() graft.save(p, { a = m.a:cast("float16") }) end)
    assert.truthy(err:find(p, 1, true))
    assert.truthy(err:find("refus"))
    os.execute("ln -s m.safetensors " .. H.q(dir .. "/link.safetensors"))
    H.raises(function() graft.save(dir .. "/link.safetensors", m) end)
    assert.are.equal(before, H.read(p))
    assert.are.same({ "link.safetensors", "m.safetensors" }, listing(dir))
    -- another file is fine, and misaligned (lazily copied) sources count too
    graft.save(dir .. "/copy.safetensors", m)
    assert.is_true(graft.open(dir .. "/copy.safetensors").a:equal(m.a))
  end)

  it("refuses to overwrite a misaligned source file it is reading", function()
    local src = H.real(ST .. "hf-safetensors-pr84-samples/f.safetensors")
    if not src then return end
    local dir = H.tmpdir()
    local p = dir .. "/f.safetensors"
    H.write(p, H.read(src))
    local m = graft.open(p)
    H.raises(function() graft.save(p, m) end)
    assert.are.equal(H.read(src), H.read(p))
  end)

  it("refuses what safetensors cannot hold", function()
    local dir = H.tmpdir()
    local p = dir .. "/x.safetensors"
    -- string tensors come from files (numpy unicode arrays)
    H.py("import numpy as np, sys; np.save(sys.argv[1], np.array(['ab', 'c']))", dir .. "/s.npy")
    local strs = graft.open(dir .. "/s.npy")
    os.remove(dir .. "/s.npy")
    local _, s = next(strs)
    assert.are.equal("string", s.dtype)
    local e = H.raises(function() graft.save(p, { s = s }) end)
    assert.truthy(e:find("string"))
    e = H.raises(function()
      graft.save(p, { c = graft.zeros({ 2 }, "complex128") })
    end)
    assert.truthy(e:find("complex128"))
    e = H.raises(function()
      graft.save(p, { __metadata__ = graft.zeros({ 2 }, "float32") })
    end)
    assert.truthy(e:find("__metadata__", 1, true))
    e = H.raises(function()
      graft.save(p, { a = graft.zeros({ 2 }, "float32") }, { metadata = { n = 1 } })
    end)
    assert.truthy(e:find("string"))
    e = H.raises(function()
      graft.save(p, { ["bad\xff"] = graft.zeros({ 2 }, "float32") })
    end)
    assert.truthy(e:find("UTF%-8"))
    assert.are.same({}, listing(dir))
  end)
end)
