-- torch 2.x as the oracle (issue 11): files torch 2.x writes (every dtype it
-- saves, float8 and uint16/32/64 included; checkpoints; TorchScript and
-- torch.export .pt2 archives) are read by graft bit-exactly as torch.load /
-- torch.jit.load / torch.export.load read them; what graft writes is loaded
-- by torch 2.x with torch.load(weights_only=True) and mmap=True, values,
-- dtypes and storage sharing intact, and a state dict's data.pkl is byte
-- for byte torch 2.x's own. Generator and checker:
-- spec/fixtures/gen_torch2.py (two oracle processes for the whole file).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local GEN = "spec/fixtures/gen_torch2.py"

local function hex_of(t)
  return H.hex(t:contiguous():bytes())
end

-- The [dtype, shape, hex] triple of every tensor graft reads from path.
local function graft_view(m)
  local out = {}
  for _, n in ipairs(graft.names(m)) do
    local t = m[n]
    out[n] = { t.dtype, t.shape, hex_of(t) }
  end
  return out
end

-- Sharing groups as sets of sorted name lists, for comparison.
local function groups(list)
  local out = {}
  for _, g in ipairs(list) do
    local c = { table.unpack(g) }
    table.sort(c)
    out[#out + 1] = table.concat(c, ",")
  end
  table.sort(out)
  return out
end

describe("torch 2.x oracle", function()
  local dir, ref
  setup(function()
    dir = H.tmpdir()
    ref = json.decode(H.oracle(H.read(GEN), "gen", dir))
  end)
  teardown(H.cleanup)

  for _, f in ipairs({ "sd.pt", "ckpt.pt", "module.pt", "script.pt", "m.pt2" }) do
    it("graft reads " .. f .. " bit-exactly as torch 2.x does", function()
      local m = graft.open(dir .. "/" .. f)
      local want = ref[f].tensors
      local got = graft_view(m)
      local names = {}
      for n in pairs(want) do names[#names + 1] = n end
      table.sort(names)
      assert.is_true(#names > 0)
      for _, n in ipairs(names) do
        assert.are.same(want[n], got[n], f .. ": " .. n)
      end
      for n in pairs(got) do assert.truthy(want[n], f .. ": graft has " .. n .. ", torch not") end
      -- what torch loads as one storage graft loads as one storage
      for _, g in ipairs(ref[f].shared) do
        for k = 2, #g do
          assert.are.equal(m[g[1]]:storage_id(), m[g[k]]:storage_id(), f .. ": " .. table.concat(g, ","))
        end
      end
    end)
  end

  it("graft's meta says which archive kind each file is", function()
    assert.are.equal("zip", graft.meta(graft.open(dir .. "/sd.pt")).kind)
    assert.are.equal("torchscript", graft.meta(graft.open(dir .. "/script.pt")).kind)
    local pm = graft.meta(graft.open(dir .. "/m.pt2"))
    assert.are.equal("pt2", pm.kind)
    assert.are.same({}, pm.skipped)
  end)

  it("a damaged .pt2 payload config is an error naming the file and tensor", function()
    -- torch's m.pt2 with one entry of its weights config changed (zipfile
    -- rewrites the archive; the records stay stored)
    local edit = [[
import json, sys, zipfile
src, dst, case = sys.argv[1:4]
zi = zipfile.ZipFile(src)
zo = zipfile.ZipFile(dst, "w")
for i in zi.infolist():
    b = zi.read(i)
    if i.filename.endswith("data/weights/model_weights_config.json"):
        c = json.loads(b)
        e = c["config"]["conv.weight"]
        if case == "offset": e["tensor_meta"]["storage_offset"] = {"as_int": 10**6}
        if case == "dtype": e["tensor_meta"]["dtype"] = 99
        if case == "record": e["path_name"] = "weight_999"
        if case == "sizes": e["tensor_meta"]["sizes"] = [{"as_int": -1}]
        b = b"{not json" if case == "json" else json.dumps(c).encode()
    zo.writestr(i, b)
zo.close()
]]
    local cases = {
      offset = 'tensor "conv.weight"', dtype = 'tensor "conv.weight": unknown dtype code',
      record = 'tensor "conv.weight": record m/data/weights/weight_999 is missing',
      sizes = 'tensor "conv.weight": sizes holds a value that is not a non-negative integer',
      json = 'not a JSON object with a "config" object',
    }
    for case, want in pairs(cases) do
      local p = dir .. "/bad_" .. case .. ".pt2"
      H.py(edit, dir .. "/m.pt2", p, case)
      local err = H.raises(function() graft.open(p) end)
      assert.truthy(err:find(p, 1, true), err)
      assert.truthy(err:find(want, 1, true), case .. ": " .. err)
    end
  end)

  describe("what graft writes", function()
    local res
    setup(function()
      local out = dir .. "/out"
      os.execute("mkdir -p " .. H.q(out))
      -- every dtype, tied tensors and views, as read from torch's file
      graft.save(out .. "/sd.pt", graft.open(dir .. "/sd.pt"))
      -- a checkpoint with floats, ints and a string beside the weights
      graft.save(out .. "/ckpt.pt", {
        model = graft.open(dir .. "/ckpt.pt", { select = "model" }),
        epoch = 3, loss = 0.25, lr = 1e-3, tag = "run-1",
      })
      -- lazy casts into the v3 dtypes, from a float tensor made here
      local f = graft.tensor({ { 0.5, -2, 448 }, { 1, 0, 3 } })
      local u = graft.tensor({ { 1, 2, 65535 }, { 0, 7, 9 } }, "int32")
      graft.save(out .. "/cast.pt", {
        e4m3 = f:cast("float8_e4m3fn"), e5m2 = f:cast("float8_e5m2"),
        u16 = u:cast("uint16"), u32 = u:cast("uint32"), u64 = u:cast("uint64"),
      })
      -- TorchScript and .pt2 weights as plain state dicts
      graft.save(out .. "/script.pt", graft.open(dir .. "/script.pt"))
      graft.save(out .. "/pt2.pt", graft.open(dir .. "/m.pt2"))
      res = json.decode(H.oracle(H.read(GEN), "check", dir))
    end)

    it("torch.load(weights_only=True) and mmap=True read every tensor equal", function()
      for _, pair in ipairs({ { "sd.pt", "sd.pt" }, { "script.pt", "script.pt" }, { "pt2.pt", "m.pt2" } }) do
        local got, want = res[pair[1]], ref[pair[2]]
        assert.are.same(want.tensors, got.tensors, pair[1])
        assert.is_true(got.mmap_equal, pair[1])
      end
      local ck = res["ckpt.pt"]
      for n, v in pairs(ref["ckpt.pt"].tensors) do
        if n:match("^model%.") then assert.are.same(v, ck.tensors[n], n) end
      end
      assert.is_true(ck.mmap_equal)
    end)

    it("a checkpoint's floats, ints and strings load with weights_only=True", function()
      local p = res["ckpt.pt"].plain
      assert.are.same({ "int", 3 }, p.epoch)
      assert.are.same({ "float", 0.25 }, p.loss)
      assert.are.same({ "float", 1e-3 }, p.lr)
      assert.are.same({ "str", "run-1" }, p.tag)
    end)

    it("float8 and uint16/32/64 casts load in torch 2.x with their dtypes and values", function()
      local t = res["cast.pt"].tensors
      local f = graft.tensor({ { 0.5, -2, 448 }, { 1, 0, 3 } })
      local u = graft.tensor({ { 1, 2, 65535 }, { 0, 7, 9 } }, "int32")
      local want = {
        e4m3 = f:cast("float8_e4m3fn"), e5m2 = f:cast("float8_e5m2"),
        u16 = u:cast("uint16"), u32 = u:cast("uint32"), u64 = u:cast("uint64"),
      }
      for n, w in pairs(want) do
        assert.are.same({ w.dtype, w.shape, hex_of(w) }, t[n], n)
      end
      assert.is_true(res["cast.pt"].mmap_equal)
    end)

    it("tied tensors and views (uint16 ones too) still share one storage in torch", function()
      assert.are.same(groups(ref["sd.pt"].shared), groups(res["sd.pt"].shared))
    end)

    it("the state dict's data.pkl is byte for byte torch 2.x's own", function()
      assert.are.equal(res.pickles[1], res.pickles[2])
    end)
  end)
end)
