-- The oldest PyTorch files: plain pickles of torch 0.1.x-0.3 tensors and
-- modules (issue 14 item 5), nothing silently lost (issue 13 item 5) and
-- NUL bytes in keys refused (issue 13 item 6). spec/fixtures/gen_oldtorch.py
-- writes the pickles opcode by opcode as those releases did and records in
-- ref.json what torch 1.13 (Debian's python3-torch) reads from each.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local DIR, REF

local function fixtures()
  if DIR then return DIR end
  DIR = H.tmpdir()
  H.py(H.read("spec/fixtures/gen_oldtorch.py"), DIR)
  REF = json.decode(H.read(DIR .. "/ref.json"))
  return DIR
end

local ROOT = H.ROOT
-- `graft ARGS...` as a user runs it: stdout, stderr, exit code.
local function cli(...)
  local dir = H.tmpdir()
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = H.q(a) end
  local cmd = string.format("cd %s && LUA_PATH=%s LUA_CPATH=%s lua5.4 bin/graft %s >%s/out 2>%s/err </dev/null",
    H.q(ROOT), H.q(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;;"),
    H.q(ROOT .. "/build/?.so;;"), table.concat(args, " "), dir, dir)
  local _, _, code = os.execute(cmd)
  return H.read(dir .. "/out"), H.read(dir .. "/err"), code
end

local function err_of(fn)
  local ok, e = pcall(fn)
  assert.is_false(ok, "expected an error")
  return tostring(e)
end

describe("torch 0.1.x-0.3 plain pickles", function()
  for _, name in ipairs({ "lists.pkl", "setstate.pkl", "rebuild.pkl", "module.pkl", "old.tar",
                              "dumps2.pkl", "dumps4.pkl" }) do
    it(name .. " opens to the values torch 1.13 reads", function()
      local path = fixtures() .. "/" .. name
      local m = graft.open(path)
      local ref = REF[name]
      assert.is_true(#ref.names > 0)
      assert.are.same(ref.names, graft.names(m))
      for n, r in pairs(ref.tensors) do
        local t = m[n]
        assert.are.equal(r.dtype, t.dtype, n)
        assert.are.same(r.shape, t.shape, n)
        assert.are.same(r.values, H.flat(t:cast("float64"):totable()), n)
      end
    end)
  end

  it("keeps one storage for the set_ views of a shared storage", function()
    local m = graft.open(fixtures() .. "/setstate.pkl")
    local id = m.full:storage_id()
    assert.are.equal(id, (m.t:storage_id()))
    assert.are.equal(id, (m.part:storage_id()))
    assert.are_not.equal(id, (m.longs:storage_id()))
  end)

  it("names a whole 0.1.x module's parameters like its state_dict", function()
    local m = graft.open(fixtures() .. "/module.pkl")
    local meta = graft.meta(m)
    assert.are.equal("pickle", meta.kind)
    assert.are.equal("torch.nn.modules.linear.Linear", meta.tree.global)
    assert.are.equal(3, meta.tree.state.in_features)
  end)

  it("issue 13 reproducer: graft ls / verify list the tensors and exit 0", function()
    local out, err, code = cli("ls", fixtures() .. "/lists.pkl")
    assert.are.equal(0, code, err)
    assert.truthy(out:find("4 tensors"), out)
    out, err, code = cli("verify", fixtures() .. "/module.pkl")
    assert.are.equal(0, code, err)
  end)
end)

describe("torch >= 0.4 plain pickles", function()
  it("reads each _load_from_bytes storage (a legacy file in the pickle)", function()
    -- each tensor pickles its own copy of the storage (TypedStorage.__reduce__
    -- makes a new file each time): torch does not share them either
    local m = graft.open(fixtures() .. "/dumps2.pkl")
    assert.are.same({ 3, 4, 5 }, m.row:totable())
    assert.are.equal("pickle", graft.meta(m).kind)
  end)
end)

describe("torch <= 0.1.9 tar files", function()
  it("opens as kind tar with the object tree, shared storages kept", function()
    local m = graft.open(fixtures() .. "/old.tar")
    local meta = graft.meta(m)
    assert.are.equal("tar", meta.kind)
    assert.are.equal(3, meta.tree.epoch)
    assert.are.equal(m.w:storage_id(), (m.wt:storage_id()))
  end)

  it("a truncated tar is a clear error, never a crash", function()
    local data = H.read(fixtures() .. "/old.tar")
    local dir = H.tmpdir()
    for _, n in ipairs({ 1024, 1536, 2100, 2600, 3000, #data - 1024 }) do
      if n < #data then
        H.write(dir .. "/cut.tar", data:sub(1, n))
        local ok, e = pcall(graft.open, dir .. "/cut.tar")
        if not ok then assert.truthy(tostring(e):find("cut.tar", 1, true), e) end
        if ok then assert.truthy(#graft.names(e) > 0) end
      end
    end
  end)
end)

describe("nothing silently lost", function()
  it("a pickle of plain numbers opens with 0 tensors and its tree", function()
    local m = graft.open(fixtures() .. "/numbers.pkl")
    assert.are.same({}, graft.names(m))
    assert.are.equal(0.1, graft.meta(m).tree.lr)
  end)

  it("a tensor constructor graft cannot decode is an error naming file and key", function()
    local path = fixtures() .. "/lost.pkl"
    local e = err_of(function() graft.open(path) end)
    assert.truthy(e:find(path, 1, true), e)
    assert.truthy(e:find('"w"', 1, true), e)
    assert.truthy(e:find("torch.FloatTensor", 1, true), e)
    for _, cmd in ipairs({ "ls", "verify" }) do
      local _, err, code = cli(cmd, path)
      assert.are_not.equal(0, code, cmd)
      assert.truthy(err:find("torch.FloatTensor", 1, true), err)
    end
  end)

  it("0 tensors while the pickle names a tensor class is an error", function()
    local path = H.tmpdir() .. "/classes.pkl"
    -- {"kind": torch.FloatTensor} (the class itself, not an instance)
    H.write(path, "\x80\x02}X\x04\0\0\0kindctorch\nFloatTensor\ns.")
    local e = err_of(function() graft.open(path) end)
    assert.truthy(e:find("no tensor decoded", 1, true), e)
    assert.truthy(e:find("torch.FloatTensor", 1, true), e)
  end)

  it("a storage of a type the reader knows only as a placeholder still opens", function()
    -- quantized tensors stay inert placeholders (torch_read_spec): only
    -- plain tensor constructors are refused
    local path = H.tmpdir() .. "/numbers2.pkl"
    H.write(path, "\x80\x02}X\x01\0\0\0a\x4b\x01s.")
    assert.are.same({}, graft.names(graft.open(path)))
  end)
end)

describe("old torch values that lie", function()
  it("a nested list repeated through the memo cannot ask for more than the file holds", function()
    local path = H.tmpdir() .. "/bomb.pkl"
    -- FloatTensor([[A] * 100] * 100) with A = 100 floats: 10^6 numbers in 1.4 KB
    H.write(path, "\x80\x02}X\x01\0\0\0wctorch\nFloatTensor\n("
      .. "]q\0(" .. string.rep("G?\xf0\0\0\0\0\0\0", 100) .. "e0"
      .. "]q\1(" .. string.rep("h\0", 100) .. "e0"
      .. "](" .. string.rep("h\1", 100) .. "etRs.")
    local e = err_of(function() graft.open(path) end)
    assert.truthy(e:find("more numbers than the file has bytes", 1, true), e)
    assert.truthy(e:find("bomb.pkl", 1, true), e)
  end)

  it("a rectangular list with a ragged row is refused", function()
    local path = H.tmpdir() .. "/ragged.pkl"
    H.write(path, "\x80\x02}X\x01\0\0\0wctorch\nFloatTensor\n("
      .. "](" .. "](K\x01K\x02e" .. "]K\x03a" .. "etRs.") -- [[1, 2], [3]]
    local e = err_of(function() graft.open(path) end)
    assert.truthy(e:find("rectangular", 1, true), e)
  end)
end)

describe("NUL bytes in keys", function()
  it("a dict key holding a NUL is refused, not truncated", function()
    local path = H.tmpdir() .. "/nulkey.pkl"
    -- {"a\0b": torch.FloatTensor([1.0])}
    H.write(path, "\x80\x02}X\x03\0\0\0a\0bctorch\nFloatTensor\n(]G?\xf0\0\0\0\0\0\0atRs.")
    local e = err_of(function() graft.open(path) end)
    assert.truthy(e:find("NUL", 1, true), e)
    assert.truthy(e:find(path, 1, true), e)
  end)

  it("a NUL inside a persistent-id storage key is refused", function()
    local dir = H.tmpdir()
    H.py([[
import io, pickle, pickletools, struct, sys, torch
b = io.BytesIO()
torch.save({"w": torch.ones(2)}, b, _use_new_zipfile_serialization=False)
d = b.getvalue()
pos = 0
for _ in range(4):  # magic, protocol, sys_info, object: the key list is next
    for op, arg, p in pickletools.genops(d[pos:]):
        end = p
    pos += end + 1
key = pickle.loads(d[pos:])[0].encode()
old = b"X" + struct.pack("<I", len(key)) + key
new = b"X" + struct.pack("<I", len(key) + 2) + key + b"\0x"
assert d.count(old) == 2
open(sys.argv[1] + "/nulpid.pt", "wb").write(d.replace(old, new))
]], dir)
    local e = err_of(function() graft.open(dir .. "/nulpid.pt") end)
    assert.truthy(e:find("NUL", 1, true), e)
    assert.truthy(e:find("nulpid.pt", 1, true), e)
  end)

  it("a tensor name with a NUL from any reader is refused (npz member)", function()
    local dir = H.tmpdir()
    H.py([[
import io, sys, zipfile
import numpy as np
b = io.BytesIO()
np.save(b, np.ones(2, np.float32))
o = io.BytesIO()
with zipfile.ZipFile(o, "w") as z:
    z.writestr("aQb.npy", b.getvalue())
# zipfile itself cuts names at a NUL: patch both headers' names
open(sys.argv[1] + "/nul.npz", "wb").write(o.getvalue().replace(b"aQb.npy", b"a\0b.npy"))
]], dir)
    local e = err_of(function() graft.open(dir .. "/nul.npz") end)
    assert.truthy(e:find("NUL", 1, true), e)
    assert.truthy(e:find("nul.npz", 1, true), e)
  end)

  it("a safetensors name with \\u0000 is refused", function()
    local path = H.tmpdir() .. "/nul.safetensors"
    local h = '{"a\\u0000b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    H.write(path, string.pack("<I8", #h) .. h .. string.pack("<f", 1))
    local e = err_of(function() graft.open(path) end)
    assert.truthy(e:find("\\u0000", 1, true), e)
    assert.truthy(e:find("nul.safetensors", 1, true), e)
  end)
end)
