-- Sharded safetensors as Hugging Face writes them: shards
-- `model-00001-of-0000N.safetensors` and `model.safetensors.index.json`
-- (json.dumps(index, indent=2, sort_keys=True) + "\n", metadata.total_size
-- the sum of the tensors' bytes, greedy fill in order). Python (json +
-- st_ref.py, an independent safetensors implementation) is the reference.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local REF = "spec/fixtures/st_ref.py"

-- Python's index for the shards in `dir` named by argv: the tensors each
-- shard holds (read by st_ref), dumped as transformers/huggingface_hub do.
local PY_INDEX = [==[
import sys, json, os
sys.path.insert(0, "spec/fixtures")
import st_ref
index_path, shards = sys.argv[1], sys.argv[2:]
d = os.path.dirname(index_path)
weight_map, total = {}, 0
for s in shards:
    _, tensors = st_ref.load_file(os.path.join(d, s))
    for name, dtype, shape, offs, data in tensors:
        weight_map[name] = s
        total += len(data)
index = {"metadata": {"total_size": total}, "weight_map": weight_map}
sys.stdout.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
]==]

-- float32 values i * scale + bias, as a 1-d tensor.
local function ramp(n, scale, bias)
  local parts = {}
  for i = 1, n do parts[i] = string.pack("<f", i * scale + bias) end
  return graft.tensor(table.concat(parts), "float32", { n })
end

-- 1,000,000-byte limit ("1MB"): a (400 kB) + b (600 kB) fill shard 1
-- exactly; c goes to shard 2; big (1.2 MB) alone in shard 3; the rest in 4.
local cached
local function sample()
  if cached then
    local t = {}
    for k, v in pairs(cached) do t[k] = v end
    return t
  end
  cached = {
    a = ramp(100000, 0.5, 1):reshape(100, 1000),
    b = ramp(150000, -0.25, 3),
    c = graft.tensor({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, "int64"),
    big = ramp(300000, 1, 0),
    ["\u{fc}.d"] = graft.tensor({ 0.5, 1.5, -2 }, "float16"),
    ['q"k'] = graft.tensor({ { true, false } }, "bool"),
  }
  return sample()
end
local ORDER = { "a", "b", "c", "big", "\u{fc}.d", 'q"k' }
local SHARDS = {
  "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
  "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
}

local function sorted(t)
  table.sort(t)
  return t
end

local function write_sharded(dir, opts)
  local o = { max_shard_size = "1MB", order = ORDER }
  for k, v in pairs(opts or {}) do o[k] = v end
  graft.save(dir .. "/model.safetensors", sample(), o)
  return dir .. "/model.safetensors.index.json"
end

-- File order of a safetensors file as st_ref reads it.
local function ref_names(path)
  local d = json.decode(H.py(H.read(REF), "dump", path))
  local names = {}
  for i, t in ipairs(d.tensors) do names[i] = t.name end
  return names
end

describe("sharded save", function()
  after_each(H.cleanup)

  it("writes HF shard names and an index identical to Python's json.dumps", function()
    local dir = H.tmpdir()
    local index = write_sharded(dir)
    local want = { "model.safetensors.index.json" }
    for _, s in ipairs(SHARDS) do want[#want + 1] = s end
    assert.are.same(sorted(want), sorted(H.ls(dir)))
    local text = H.read(index)
    assert.are.equal(H.py(PY_INDEX, index, table.unpack(SHARDS)), text)
    assert.truthy(text:find('"total_size": 2200088', 1, true), text)
    assert.truthy(text:find('"\\u00fc.d": "model-00004-of-00004.safetensors"', 1, true), text)
    assert.truthy(text:find('"q\\"k": "model-00004-of-00004.safetensors"', 1, true), text)
    for _, s in ipairs(SHARDS) do
      assert.are.equal("ok\n", H.py(H.read(REF), "check", dir .. "/" .. s))
    end
  end)

  it("fills shards greedily in order; a tensor above the limit sits alone", function()
    local dir = H.tmpdir()
    write_sharded(dir)
    local want = { { "a", "b" }, { "c" }, { "big" }, { "\u{fc}.d", 'q"k' } }
    for i, s in ipairs(SHARDS) do
      assert.are.same(sorted(want[i]), sorted(ref_names(dir .. "/" .. s)))
    end
    -- a different order changes the packing: b, c fit; a does not
    local dir2 = H.tmpdir()
    graft.save(dir2 .. "/model.safetensors", sample(),
      { max_shard_size = 1000000, order = { "big", "b", "c", "a" } })
    local idx = json.decode(H.read(dir2 .. "/model.safetensors.index.json"))
    local m = idx.weight_map
    assert.are.equal("model-00001-of-00003.safetensors", m.big)
    assert.are.equal("model-00002-of-00003.safetensors", m.b)
    assert.are.equal("model-00002-of-00003.safetensors", m.c)
    assert.are.equal("model-00003-of-00003.safetensors", m.a)
    assert.are.equal("model-00003-of-00003.safetensors", m["\u{fc}.d"])
  end)

  it("reads size strings as HF does (MB = 10^6, MiB = 2^20)", function()
    local dir = H.tmpdir()
    -- a + b + c = 1,000,080 <= 1MiB (1,048,576) < 1MB + big
    write_sharded(dir, { max_shard_size = "1MiB" })
    local m = json.decode(H.read(dir .. "/model.safetensors.index.json")).weight_map
    assert.are.equal("model-00001-of-00003.safetensors", m.a)
    assert.are.equal("model-00001-of-00003.safetensors", m.b)
    assert.are.equal("model-00001-of-00003.safetensors", m.c)
    assert.are.equal("model-00002-of-00003.safetensors", m.big)
    assert.are.equal("model-00003-of-00003.safetensors", m['q"k'])
    local err = H.raises(function()
      graft.save(dir .. "/x.safetensors", sample(), { max_shard_size = "lots" })
    end)
    assert.truthy(err:find("max_shard_size", 1, true), err)
    err = H.raises(function()
      graft.save(dir .. "/x.npz", sample(), { max_shard_size = "1MB" })
    end)
    assert.truthy(err:find("safetensors", 1, true), err)
  end)

  it("a single shard is a plain model.safetensors and no index", function()
    local dir = H.tmpdir()
    write_sharded(dir, { max_shard_size = "10GB" })
    assert.are.same({ "model.safetensors" }, H.ls(dir))
    assert.are.equal("ok\n", H.py(H.read(REF), "check", dir .. "/model.safetensors"))
    assert.are.equal(6, #graft.names(graft.open(dir .. "/model.safetensors")))
  end)

  it("passes opts.metadata and opts.dtype to every shard", function()
    local dir = H.tmpdir()
    write_sharded(dir, { metadata = { format = "pt" }, dtype = "float16", max_shard_size = "500kB" })
    local m = graft.open(dir .. "/model.safetensors.index.json")
    assert.are.equal("float16", m.a.dtype)
    assert.are.equal("int64", m.c.dtype)
    assert.are.equal("bool", m['q"k'].dtype)
    for _, s in ipairs(graft.meta(m).shards) do
      local part = graft.open(dir .. "/" .. s)
      assert.are.same({ format = "pt" }, graft.meta(part).__metadata__)
    end
    -- halves: a (200 kB) + b (300 kB) = 500 kB fill shard 1
    assert.are.equal("model-00001-of-00004.safetensors", graft.meta(m).shards[1])
    assert.are.same({ "a", "b" }, sorted(ref_names(dir .. "/model-00001-of-00004.safetensors")))
  end)
end)

describe("sharded open", function()
  after_each(H.cleanup)

  it("opens every shard as one table in shard order", function()
    local dir = H.tmpdir()
    local index = write_sharded(dir)
    local m = graft.open(index)
    local want = {}
    for _, s in ipairs(SHARDS) do
      for _, n in ipairs(ref_names(dir .. "/" .. s)) do want[#want + 1] = n end
    end
    assert.are.same(want, graft.names(m))
    local src = sample()
    for _, n in ipairs(ORDER) do
      assert.are.equal(src[n].dtype, m[n].dtype)
      assert.is_true(m[n]:equal(src[n]), n)
    end
    local meta = graft.meta(m)
    assert.is_true(meta.sharded)
    assert.are.equal("safetensors", meta.format)
    assert.are.same(SHARDS, meta.shards)
    assert.are.equal(2200088, meta.index_metadata.total_size)
  end)

  it("opens an index and shards written by Python", function()
    local dir = H.tmpdir()
    H.py([==[
import sys, json, os
import numpy as np
sys.path.insert(0, "spec/fixtures")
import st_ref
d = sys.argv[1]
rng = np.random.default_rng(3)
sd = {
    "model.embed_tokens.weight": rng.standard_normal((64, 32)).astype("<f4"),
    "model.layers.0.self_attn.q_proj.weight": rng.standard_normal((32, 32)).astype("<f2"),
    "model.layers.0.mlp.up_proj.weight": rng.standard_normal((64, 32)).astype("<f4"),
    "model.norm.weight": np.ones(32, "<f4"),
    "lm_head.weight": rng.standard_normal((64, 32)).astype("<f4"),
    "position_ids": np.arange(16, dtype="<i8"),
}
# greedy in order (transformers shard_checkpoint), max 10000 bytes
limit, shards, cur, size, total = 10000, [], {}, 0, 0
for k, v in sd.items():
    n = v.nbytes
    total += n
    if size + n > limit and cur:
        shards.append(cur); cur, size = {}, 0
    cur[k] = v; size += n
shards.append(cur)
wm = {}
for i, s in enumerate(shards):
    fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
    st_ref.save_file(s, os.path.join(d, fn), {"format": "pt"})
    for k in s:
        wm[k] = fn
with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
    f.write(json.dumps({"metadata": {"total_size": total}, "weight_map": wm},
                       indent=2, sort_keys=True) + "\n")
with open(os.path.join(d, "values.json"), "w") as f:
    json.dump({k: {"dtype": str(v.dtype), "shape": list(v.shape),
                   "values": v.reshape(-1).tolist(), "shard": wm[k]}
               for k, v in sd.items()}, f)
]==], dir)
    local m = graft.open(dir .. "/model.safetensors.index.json")
    local want = json.decode(H.read(dir .. "/values.json"))
    local names = graft.names(m)
    assert.are.equal(6, #names)
    local shard_of_prev = ""
    for _, n in ipairs(names) do
      local w, t = want[n], m[n]
      assert.truthy(w, n)
      assert.is_true(w.shard >= shard_of_prev, "shard order")
      shard_of_prev = w.shard
      assert.are.equal(w.dtype, t.dtype)
      assert.are.same(w.shape, t.shape)
      local flat = t:reshape(t.numel):totable()
      assert.are.same(w.values, flat, n)
    end
    local meta = graft.meta(m)
    assert.is_true(meta.sharded)
    assert.are.same(sorted(H.ls(dir)), sorted({ "values.json",
      "model.safetensors.index.json", table.unpack(meta.shards) }))
    -- graft writes the same index for the same tensors and limit
    local out = H.tmpdir()
    graft.save(out .. "/model.safetensors", m, { max_shard_size = 10000,
      order = { "model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight",
        "position_ids" } })
    assert.are.equal(H.read(dir .. "/model.safetensors.index.json"),
      H.read(out .. "/model.safetensors.index.json"))
  end)

  local function with_index(text)
    local dir = H.tmpdir()
    write_sharded(dir)
    local path = dir .. "/model.safetensors.index.json"
    H.write(path, text)
    return path, dir
  end

  local function open_error(path)
    return H.raises(function() graft.open(path) end)
  end

  it("an index naming a missing shard names the index", function()
    local path = with_index([[{"metadata": {}, "weight_map": {
      "a": "model-00001-of-00004.safetensors", "b": "model-00001-of-00004.safetensors",
      "x": "model-00009-of-00009.safetensors"}}]])
    local err = open_error(path)
    assert.truthy(err:find("^graft: " .. path:gsub("%p", "%%%0") .. ": "), err)
    assert.truthy(err:find("model-00009-of-00009.safetensors", 1, true), err)
  end)

  it("a tensor missing from its shard names the index and the tensor", function()
    local path = with_index([[{"weight_map": {"a": "model-00001-of-00004.safetensors",
      "b": "model-00001-of-00004.safetensors", "zzz": "model-00001-of-00004.safetensors"}}]])
    local err = open_error(path)
    assert.truthy(err:find(path, 1, true), err)
    assert.truthy(err:find("zzz", 1, true), err)
    -- and a shard holding a tensor the index does not list there
    path = with_index([[{"weight_map": {"a": "model-00001-of-00004.safetensors"}}]])
    err = open_error(path)
    assert.truthy(err:find(path, 1, true), err)
    assert.truthy(err:find('"b"', 1, true), err)
  end)

  it("a shard name with / or .. is refused before opening anything", function()
    for _, bad in ipairs({ "../model-00001-of-00004.safetensors", "sub/x.safetensors",
                           "/etc/passwd", "..", "" }) do
      local path = with_index(string.format('{"weight_map": {"a": %s}}', json.encode(bad)))
      local err = open_error(path)
      assert.truthy(err:find(path, 1, true), err)
      assert.truthy(err:find("bad shard file name", 1, true), err)
    end
  end)

  it("invalid JSON or an index without weight_map names the index", function()
    for _, text in ipairs({ '{"weight_map": {"a": ', "{ nope }", '{"metadata": {}}',
                            '{"weight_map": ["a"]}', '{"weight_map": {"a": 3}}' }) do
      local path = with_index(text)
      local err = open_error(path)
      assert.truthy(err:find("^graft: " .. path:gsub("%p", "%%%0") .. ": "), err)
      assert.falsy(err:find("%.lua:%d+:"), err)
    end
  end)

end)

describe("sharded safetensors: rewriting a set", function()
  after_each(H.cleanup)

  it("removes the old set's shards that the new set does not reuse", function()
    local dir = H.tmpdir()
    local p = dir .. "/model.safetensors"
    local t = { a = H.iota({ 100 }), b = H.iota({ 100 }) * 2, c = H.iota({ 100 }) * 3 }
    local order = { "a", "b", "c" }
    graft.save(p, t, { max_shard_size = 400, order = order })
    for i = 1, 3 do assert.truthy(H.read(string.format("%s/model-%05d-of-00003.safetensors", dir, i))) end
    graft.save(p, t, { max_shard_size = 800, order = order })
    for i = 1, 3 do
      assert.is_nil(io.open(string.format("%s/model-%05d-of-00003.safetensors", dir, i), "rb"))
    end
    local m = graft.open(p .. ".index.json")
    assert.same(order, graft.names(m))
    assert.is_true(m.c:equal(t.c))
    -- files the old index did not name are never touched
    H.write(dir .. "/notes.txt", "mine")
    graft.save(p, t, { max_shard_size = 400, order = order })
    assert.equal("mine", H.read(dir .. "/notes.txt"))
    assert.is_nil(io.open(dir .. "/model-00001-of-00002.safetensors", "rb"))
  end)
end)
