-- Writing PyTorch files (.pt/.pth/.bin): everything graft writes is read by
-- torch 1.13's torch.load(weights_only=True) bit-exactly (floats in a
-- checkpoint need torch >= 2.0 for that: 1.13's restricted unpickler has no
-- BINFLOAT, also for files torch.save writes), tensors that share a storage
-- still share it, the archive is laid out as torch.save lays it out, and
-- data.pkl is byte-identical to torch.save's for the same object.
-- The reference side is spec/fixtures/torch_write_ref.py.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local REF = "spec/fixtures/torch_write_ref.py"

local function ref(...)
  return json.decode(H.py(H.read(REF), ...))
end

local function load(path, weights_only)
  return ref("load", path, weights_only == false and "0" or "1")
end

local function dict_items(node)
  local out, order = {}, {}
  for _, kv in ipairs(node.items) do
    local k = kv[1].str or kv[1].int
    out[k] = kv[2]
    order[#order + 1] = k
  end
  return out, order
end

-- Pseudo-random bytes (a fixed LCG), so float tensors hold every bit
-- pattern, NaNs and infinities included.
local function bytes(n, seed)
  local t, x = {}, seed
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char((x >> 16) & 0xff)
  end
  return table.concat(t)
end

local DTYPES = { "float64", "float32", "float16", "bfloat16", "int64", "int32",
  "int16", "int8", "uint8", "bool", "complex64", "complex128" }
local SIZE = { float64 = 8, float32 = 4, float16 = 2, bfloat16 = 2, int64 = 8,
  int32 = 4, int16 = 2, int8 = 1, uint8 = 1, bool = 1, complex64 = 8,
  complex128 = 16 }

local function make(dtype, shape, seed)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local b = bytes(n * SIZE[dtype], seed)
  if dtype == "bool" then b = b:gsub(".", function(c) return string.char(c:byte() & 1) end) end
  return graft.tensor(b, dtype, shape)
end

local function same_tensor(t, node, what)
  assert.are.equal("Tensor", node.tensor, what)
  assert.are.equal(t.dtype, node.dtype, what)
  assert.are.same(t.shape, node.shape, what)
  assert.are.equal(H.hex(t:bytes()), node.hex, what)
end

local function zip_of(path)
  return ref("zip", path)
end

describe("torch writer", function()
  after_each(H.cleanup)

  it("writes every dtype torch 1.13 has, bit-exactly, as an OrderedDict", function()
    local dir = H.tmpdir()
    local m, order = {}, {}
    for i, dt in ipairs(DTYPES) do
      m[dt] = make(dt, { 3, 5 }, i)
      order[#order + 1] = dt
    end
    graft.save(dir .. "/all.pt", m, { order = order })
    local got = load(dir .. "/all.pt")
    assert.are.equal("OrderedDict", got.dict)
    local items, names = dict_items(got)
    assert.are.same(order, names)
    for _, dt in ipairs(DTYPES) do
      same_tensor(m[dt], items[dt], dt)
      assert.are.same({ 5, 1 }, items[dt].stride)
      assert.is_false(items[dt].requires_grad)
    end
  end)

  it("writes 0-d, empty and high-rank tensors", function()
    local dir = H.tmpdir()
    local m = {
      scalar = graft.tensor(2.5),
      iscalar = graft.tensor(7, "int64"),
      empty = graft.zeros({ 0, 4 }),
      empty2 = graft.zeros({ 3, 0 }, "int32"),
      empty1 = graft.zeros({ 0 }, "float16"),
      nd6 = make("float32", { 2, 1, 3, 1, 2, 2 }, 7),
    }
    graft.save(dir .. "/shapes.pth", m)
    local items = dict_items(load(dir .. "/shapes.pth"))
    for name, t in pairs(m) do same_tensor(t, items[name], name) end
    assert.are.same({}, items.scalar.shape)
    assert.are.same({}, items.scalar.stride)
    assert.are.same({ 4, 1 }, items.empty.stride)
    assert.are.same({ 1, 1 }, items.empty2.stride)
  end)

  it("materialises non-contiguous views, lazy casts and byte-swapped sources", function()
    local dir = H.tmpdir()
    H.py([[
import sys, numpy as np
np.save(sys.argv[1], (np.arange(24, dtype='>f4') * 1.5).reshape(2, 3, 4))
]], dir .. "/be.npy")
    local be = graft.open(dir .. "/be.npy")
    local base = make("float32", { 4, 5, 6 }, 3)
    local m = {
      permuted = base:permute(3, 1, 2),
      flipped = base:flip(2),
      narrowed = base:narrow(3, 2, 3),
      selected = base:select(1, 2),
      half = base:half(),
      bf16_t = base:permute(2, 3, 1):bfloat16(),
      ints = make("int32", { 3, 4 }, 9):t():cast("int64"),
      big_endian = be[graft.names(be)[1]],
      big_endian_t = be[graft.names(be)[1]]:permute(3, 2, 1),
    }
    graft.save(dir .. "/views.pt", m)
    local items = dict_items(load(dir .. "/views.pt"))
    for name, t in pairs(m) do same_tensor(t, items[name], name) end
    assert.are.equal(H.hex(string.pack("<f", 1.5)), items.big_endian.hex:sub(9, 16))
    -- Plain views of `base` share its storage (so do the two views of the
    -- npy array, whose storage graft byte-swaps as it loads it); a flip
    -- (torch has no negative strides) and lazy casts are materialised into
    -- records of their own.
    assert.are.equal(items.permuted.storage, items.narrowed.storage)
    assert.are.equal(items.permuted.storage, items.selected.storage)
    assert.are.same({ 1, 30, 6 }, items.permuted.stride)
    local storages = { [items.permuted.storage] = true }
    assert.are.equal(items.big_endian.storage, items.big_endian_t.storage)
    for _, name in ipairs({ "flipped", "half", "bf16_t", "ints", "big_endian" }) do
      local node = items[name]
      assert.is_nil(storages[node.storage], name)
      storages[node.storage] = true
      assert.are.equal(0, node.offset, name)
    end
  end)

  it("keeps tied weights, transposed and narrowed views of one storage shared", function()
    local dir = H.tmpdir()
    local a = graft.tensor({ { 0, 1, 2, 3 }, { 4, 5, 6, 7 }, { 8, 9, 10, 11 } })
    local m = {
      w = a, wt = a:t(), n = a:narrow(1, 2, 2), tied = a,
      b = graft.tensor({ 1, 1, 1 }), i = graft.tensor({ 1, 2 }, "int64"),
      s = graft.tensor(5.0),
    }
    local order = { "w", "wt", "n", "b", "i", "s", "tied" }
    graft.save(dir .. "/shared.pt", m, { order = order })
    local items = dict_items(load(dir .. "/shared.pt"))
    for name, t in pairs(m) do same_tensor(t, items[name], name) end
    assert.are.equal(items.w.storage, items.wt.storage)
    assert.are.equal(items.w.storage, items.n.storage)
    assert.are.equal(items.w.storage, items.tied.storage)
    assert.are_not.equal(items.w.storage, items.b.storage)
    assert.are.same({ 1, 4 }, items.wt.stride)
    assert.are.equal(4, items.n.offset)
    assert.are.equal(12, items.w.storage_numel)
    -- One record for the shared storage: data/0..3 for w, b, i, s.
    local names = {}
    for _, mm in ipairs(zip_of(dir .. "/shared.pt").members) do names[#names + 1] = mm.name end
    assert.are.same({ "shared/data.pkl", "shared/byteorder", "shared/data/0",
      "shared/data/1", "shared/data/2", "shared/data/3", "shared/version" }, names)
    -- data.pkl is the one torch.save writes for the same state dict.
    H.py(H.read(REF), "save", "shared", dir .. "/torch.pt")
    local ours = H.py([[
import sys, zipfile
a = zipfile.ZipFile(sys.argv[1]).read('shared/data.pkl')
b = zipfile.ZipFile(sys.argv[2]).read('torch/data.pkl')
print(a == b)
]], dir .. "/shared.pt", dir .. "/torch.pt")
    assert.are.equal("True\n", ours)
  end)

  it("shares views of a mapped file's storage and streams them from the mapping", function()
    local dir = H.tmpdir()
    local src = { emb = make("float32", { 6, 4 }, 5), other = make("int8", { 5 }, 6) }
    graft.save(dir .. "/src.safetensors", src)
    local m = graft.open(dir .. "/src.safetensors")
    local out = { emb = m.emb, head = m.emb:t(), rows = m.emb:narrow(1, 3, 2),
      other = m.other, casted = m.emb:half() }
    graft.save(dir .. "/out.bin", out)
    local items = dict_items(load(dir .. "/out.bin"))
    for name, t in pairs(out) do same_tensor(t, items[name], name) end
    assert.are.equal(items.emb.storage, items.head.storage)
    assert.are.equal(items.emb.storage, items.rows.storage)
    assert.are_not.equal(items.emb.storage, items.casted.storage)
    assert.are.equal(8, items.rows.offset)
  end)

  it("writes a disjoint pair of narrows as one record over the bytes they span", function()
    local dir = H.tmpdir()
    local a = make("int16", { 10, 3 }, 11)
    local m = { top = a:narrow(1, 2, 2), bottom = a:narrow(1, 7, 3) }
    graft.save(dir .. "/span.pt", m)
    local items = dict_items(load(dir .. "/span.pt"))
    same_tensor(m.top, items.top, "top")
    same_tensor(m.bottom, items.bottom, "bottom")
    assert.are.equal(items.top.storage, items.bottom.storage)
    assert.are.equal(0, items.top.offset)
    assert.are.equal(15, items.bottom.offset)
    assert.are.equal(24, items.top.storage_numel)
  end)

  it("writes a nested checkpoint with ints, floats, strings, bools and lists", function()
    local dir = H.tmpdir()
    local sd = { bias = graft.tensor({ 0.5, -1.0 }), weight = graft.tensor({ { 0, 1, 2 }, { 3, 4, 5 } }, "float64") }
    local ck = {
      args = { layers = { 64, 64 }, mode = "fast", neg = -3 },
      big = 1 << 40, done = false, epoch = 10, lr = 0.25, model = sd,
      n300 = 300, n70000 = 70000, ok = true,
    }
    graft.save(dir .. "/ck.pt", ck)
    -- torch 1.13's weights_only unpickler lacks BINFLOAT (lr), as for
    -- torch.save's own files: load it unrestricted here; the opcode check
    -- below holds it to 2.x's allow-list.
    local got = load(dir .. "/ck.pt", false)
    assert.are.equal("dict", got.dict)
    local items, keys = dict_items(got)
    assert.are.same({ "args", "big", "done", "epoch", "lr", "model", "n300",
      "n70000", "ok" }, keys)
    assert.are.same({ int = "1099511627776" }, items.big)
    assert.are.same({ int = "10" }, items.epoch)
    assert.are.same({ int = "70000" }, items.n70000)
    assert.are.same({ bool = false }, items.done)
    assert.are.same({ bool = true }, items.ok)
    assert.are.same({ float = H.hex(string.pack("<d", 0.25)) }, items.lr)
    local args = dict_items(items.args)
    assert.are.same({ list = { { int = "64" }, { int = "64" } } }, args.layers)
    assert.are.same({ str = "fast" }, args.mode)
    assert.are.same({ int = "-3" }, args.neg)
    assert.are.equal("OrderedDict", items.model.dict)
    local model = dict_items(items.model)
    same_tensor(sd.bias, model.bias, "bias")
    same_tensor(sd.weight, model.weight, "weight")
    -- Byte-identical to torch.save of the same dict.
    H.py(H.read(REF), "save", "checkpoint", dir .. "/torch.pt")
    assert.are.equal("True\n", H.py([[
import sys, zipfile
a = zipfile.ZipFile(sys.argv[1]).read('ck/data.pkl')
b = zipfile.ZipFile(sys.argv[2]).read('torch/data.pkl')
print(a == b)
]], dir .. "/ck.pt", dir .. "/torch.pt"))
    -- Without floats, torch 1.13 loads it with weights_only=True.
    ck.lr = nil
    graft.save(dir .. "/ck2.pt", ck)
    local items2 = dict_items(load(dir .. "/ck2.pt"))
    assert.are.same({ int = "10" }, items2.epoch)
    same_tensor(sd.weight, dict_items(items2.model).weight, "weight")
  end)

  it("writes lists of tensors, integer keys, empty tables and a bare list", function()
    local dir = H.tmpdir()
    local w = make("float32", { 2, 2 }, 21)
    local ck = {
      state = { [0] = { step = 3, exp_avg = w:half() }, [1] = { step = 4 } },
      params = { w, w:t() },
      empty = {},
    }
    graft.save(dir .. "/opt.pt", ck)
    local items = dict_items(load(dir .. "/opt.pt"))
    assert.are.equal("dict", items.empty.dict)
    assert.are.same({}, items.empty.items)
    local state, keys = dict_items(items.state)
    assert.are.same({ "0", "1" }, keys)
    same_tensor(w:half(), dict_items(state["0"]).exp_avg, "exp_avg")
    assert.are.equal(2, #items.params.list)
    same_tensor(w, items.params.list[1], "params 1")
    same_tensor(w:t(), items.params.list[2], "params 2")
    assert.are.equal(items.params.list[1].storage, items.params.list[2].storage)
    graft.save(dir .. "/list.pt", { w, graft.tensor(1, "int64") })
    local l = load(dir .. "/list.pt")
    same_tensor(w, l.list[1], "list 1")
  end)

  it("opts.dtype casts floating-point tensors in nested tables too", function()
    local dir = H.tmpdir()
    local w = make("float32", { 3 }, 31)
    graft.save(dir .. "/d.pt", { model = { w = w, steps = graft.tensor({ 1, 2 }, "int64") }, epoch = 1 },
      { dtype = "bfloat16" })
    local model = dict_items(dict_items(load(dir .. "/d.pt")).model)
    same_tensor(w:bfloat16(), model.w, "w")
    assert.are.equal("int64", model.steps.dtype)
  end)

  it("uses only the opcodes and globals torch 2.x's weights_only allows", function()
    local dir = H.tmpdir()
    local a = make("float32", { 3, 3 }, 41)
    local m = { model = { a = a, at = a:t() }, lr = 0.5, name = "x", flags = { true, false }, n = -(1 << 50) }
    for i = 1, 300 do m.model["p" .. i] = graft.tensor(i) end
    graft.save(dir .. "/ops.pt", m)
    local got = ref("ops", dir .. "/ops.pt")
    local allowed = {}
    for op in ([[PROTO STOP GLOBAL NEWOBJ REDUCE BUILD APPEND APPENDS SETITEM
      SETITEMS MARK TUPLE TUPLE1 TUPLE2 TUPLE3 NONE NEWFALSE NEWTRUE EMPTY_TUPLE
      EMPTY_LIST EMPTY_DICT EMPTY_SET BININT BININT1 BININT2 BINFLOAT LONG1
      BINUNICODE SHORT_BINSTRING BINPERSID BINGET LONG_BINGET BINPUT
      LONG_BINPUT]]):gmatch("%S+") do allowed[op] = true end
    for _, op in ipairs(got.ops) do assert.is_true(allowed[op], op) end
    assert.are.same({ "collections.OrderedDict", "torch.FloatStorage",
      "torch._utils._rebuild_tensor_v2" }, got.globals)
    local seen = {}
    for _, op in ipairs(got.ops) do seen[op] = true end
    assert.is_true(seen.LONG_BINPUT and seen.LONG1 and seen.BINFLOAT and true)
  end)

  it("lays the archive out as torch.save does: stored, 64-byte aligned, CRCs, descriptors", function()
    local dir = H.tmpdir()
    local m = {}
    for i = 1, 7 do m["t" .. i] = make("float32", { i, 3 }, i) end
    graft.save(dir .. "/my.model.pt", m)
    local z = zip_of(dir .. "/my.model.pt")
    assert.are.equal("", z.bad_crc)
    assert.is_true(z.has_zip64_end)
    assert.are.equal("my.model/data.pkl", z.members[1].name)
    assert.are.equal("my.model/byteorder", z.members[2].name)
    assert.are.equal("my.model/version", z.members[#z.members].name)
    for _, mm in ipairs(z.members) do
      assert.are.equal(0, mm.data_offset % 64, mm.name)
      assert.are.equal(0, mm.method, mm.name)
      assert.are.equal(0x0808, mm.local_flags, mm.name)
      assert.are.same({ "4246" }, mm.extra_ids, mm.name)
      assert.is_true(mm.descriptor, mm.name)
      assert.is_false(mm.cd_zip64, mm.name)
    end
    assert.are.equal("little", H.py([[
import sys, zipfile
print(zipfile.ZipFile(sys.argv[1]).read('my.model/byteorder').decode(), end='')
]], dir .. "/my.model.pt"))
    assert.are.equal("torch", graft.detect(dir .. "/my.model.pt"))
  end)

  -- miniz (torch's zip reader) takes a 32-bit offset field of 0xFFFFFFFF
  -- to mean the archive is that big and refuses small ones that use it, so
  -- torch reads the archive with forced ZIP64 sizes, zipfile the one with
  -- forced ZIP64 offsets too.
  -- at = "SIZE[,OFFSET]": the thresholds set through core.testing.zip64_at
  -- for this one save (restored to the real 4 GiB ones even on failure).
  local function zip64_file(dir, at)
    local t = {}
    for i = 1, 4 do
      local b = {}
      for k = 1, 40 * i do b[k] = (k * 7 + i) % 256 end
      t["t" .. i] = graft.tensor(string.char(table.unpack(b)), "uint8", { 40 * i })
    end
    t.small = graft.tensor({ 1, 2 }, "int16")
    local size_at, off_at = at:match("^(%d+),?(%d*)$")
    local out = dir .. "/z" .. at:gsub(",", "_") .. ".pt"
    graft.core.testing.zip64_at(tonumber(size_at), tonumber(off_at))
    local ok, err = pcall(graft.save, out, t)
    graft.core.testing.zip64_at(0, 0)
    assert(ok, err)
    return out
  end

  local function check_zip64(path, size_at, off_at)
    local z = zip_of(path)
    assert.are.equal("", z.bad_crc)
    local n_size, n_off = 0, 0
    for _, mm in ipairs(z.members) do
      assert.are.equal(0, mm.data_offset % 64, mm.name)
      local big = mm.size >= size_at or mm.header_offset >= off_at
      assert.are.equal(big, mm.cd_zip64, mm.name)
      assert.are.same(big and { "0001", "4246" } or { "4246" }, mm.extra_ids, mm.name)
      if mm.size >= size_at then n_size = n_size + 1 end
      if mm.header_offset >= off_at then n_off = n_off + 1 end
    end
    return n_size, n_off
  end

  it("uses ZIP64 sizes past a (forced low) threshold; torch reads them", function()
    local dir = H.tmpdir()
    local path = zip64_file(dir, "100,1000000")
    local n_size = check_zip64(path, 100, 1000000)
    assert.are.equal(3, n_size)
    local items = dict_items(load(path))
    assert.are.equal(160, #items.t4.hex / 2)
    assert.are.equal(H.hex(string.pack("<i2<i2", 1, 2)), items.small.hex)
  end)

  it("uses ZIP64 offsets and end records past a (forced low) threshold; zipfile reads them", function()
    local dir = H.tmpdir()
    local path = zip64_file(dir, "100")
    local n_size, n_off = check_zip64(path, 100, 100)
    assert.are.equal(3, n_size)
    assert.is_true(n_off >= 5)
    assert.are.equal("ok\n", H.py([[
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.read('z100/data/4') == bytes((k * 7 + 4) % 256 for k in range(1, 161))
print('ok')
]], path))
  end)

  it("reads its own output back: values, nested structure and sharing", function()
    local dir = H.tmpdir()
    local a = make("float32", { 4, 6 }, 61)
    local ck = { model = { w = a, wt = a:t(), h = a:half(), i = make("int64", { 3 }, 62) }, epoch = 3 }
    graft.save(dir .. "/rt.pt", ck)
    local m = graft.open(dir .. "/rt.pt")
    for k, t in pairs(ck.model) do
      assert.is_true(m["model." .. k]:equal(t), k)
      assert.are.equal(H.hex(t:bytes()), H.hex(m["model." .. k]:bytes()), k)
    end
    assert.are.equal((m["model.w"]:storage_id()), (m["model.wt"]:storage_id()))
    assert.are.equal(3, graft.meta(m).tree.epoch)
  end)

  it("reports progress over the bytes of the records", function()
    local dir = H.tmpdir()
    local a = make("float32", { 64, 64 }, 51)
    local last, total
    graft.save(dir .. "/p.pt", { a = a, at = a:t(), h = a:half() }, {
      progress = function(done, tot) last, total = done, tot end })
    assert.are.equal(64 * 64 * 4 + 64 * 64 * 2, total)
    assert.are.equal(total, last)
  end)
end)
