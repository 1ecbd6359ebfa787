-- GGUF: the real files of ../shared/fixtures/real/gguf as MANIFEST.md
-- section 12 describes them; files gguf-py (llama.cpp's own Python package)
-- writes with every type graft reads, bit-equal after dequantisation to
-- gguf-py's quants.dequantize; files graft writes, read back by gguf-py's
-- GGUFReader with the same metadata and Q8_0/Q4_0 blocks byte-identical to
-- quants.quantize (spec/fixtures/gguf_oracle.py).
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local ORACLE = "spec/fixtures/gguf_oracle.py"

local function kv_by_key(meta)
  local t = {}
  for _, e in ipairs(meta.kv) do t[e.key] = t[e.key] or e end
  return t
end

local function all_equal(t, v)
  for _, x in ipairs(H.flat(t:float():totable())) do
    if x ~= v then return false end
  end
  return true
end

describe("gguf: real files", function()
  local function iree(name) return H.real("gguf/iree-gguf-testdata/" .. name) end

  it("iree testdata: metadata in file order, the duplicate key kept, alignment 64", function()
    for _, name in ipairs({ "empty.gguf", "single.gguf", "multiple.gguf", "single_v2.gguf" }) do
      local m = graft.open(iree(name))
      local meta = graft.meta(m)
      assert.are.equal("gguf", meta.format)
      assert.are.equal(name == "single_v2.gguf" and 2 or 3, meta.version)
      assert.are.equal(64, meta.alignment)
      assert.are.equal(6, #meta.kv)
      assert.are.same({ key = "general.architecture", type = "string", value = "generic" }, meta.kv[1])
      assert.are.same({ key = "general.architecture", type = "string", value = "generic" }, meta.kv[2])
      local kv = kv_by_key(meta)
      assert.are.same({ key = "general.alignment", type = "uint32", value = 64 }, kv["general.alignment"])
      assert.are.same({ key = "metadata_uint32", type = "uint32", value = 42 }, kv.metadata_uint32)
      assert.are.same({ key = "metadata_str", type = "string", value = "hello" }, kv.metadata_str)
      assert.are.same({ key = "metadata_strs", type = "array", item_type = "string",
                        value = { "a", "b", "c" } }, kv.metadata_strs)
      assert.are.equal("generic", meta.metadata["general.architecture"])
      assert.are.equal(42, meta.metadata.metadata_uint32)
    end
    assert.are.same({}, graft.names(graft.open(iree("empty.gguf"))))
  end)

  it("iree testdata: tensors of ones with dims in graft's order", function()
    local s = graft.open(iree("single.gguf"))
    assert.are.same({ "tensor0" }, graft.names(s))
    assert.are.equal("float32", s.tensor0.dtype)
    assert.are.same({ 2, 2 }, s.tensor0.shape)
    assert.is_true(all_equal(s.tensor0, 1))
    local m = graft.open(iree("multiple.gguf"))
    assert.are.same({ "tensor0", "tensor1", "tensor2" }, graft.names(m))
    assert.are.same({ 2, 2 }, m.tensor0.shape)
    assert.are.same({ 1, 2 }, m.tensor1.shape)
    assert.are.same({ 4, 3 }, m.tensor2.shape)   -- stored as ggml [3, 4]
    for _, n in ipairs(graft.names(m)) do assert.is_true(all_equal(m[n], 1)) end
    local v2 = graft.open(iree("single_v2.gguf"))
    assert.is_true(all_equal(v2.tensor0, 1))
  end)

  it("llama.cpp's bert-bge vocab: no tensors, 20 keys, ends at the last key", function()
    local m = graft.open(H.real("gguf/llamacpp-vocab-bert-bge/ggml-vocab-bert-bge.gguf"))
    local meta = graft.meta(m)
    assert.are.equal(3, meta.version)
    assert.are.same({}, graft.names(m))
    assert.are.equal(20, #meta.kv)
    local kv = kv_by_key(meta)
    assert.are.same({ key = "bert.attention.causal", type = "bool", value = false }, kv["bert.attention.causal"])
    assert.are.equal("uint32", kv["bert.block_count"].type)
    assert.are.equal(12, kv["bert.block_count"].value)
    assert.are.equal("float32", kv["bert.attention.layer_norm_epsilon"].type)
    local tokens, tt = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.token_type"]
    assert.are.equal("string", tokens.item_type)
    assert.are.equal(30522, #tokens.value)
    assert.are.equal("[PAD]", tokens.value[1])
    assert.are.equal("int32", tt.item_type)
    assert.are.equal(30522, #tt.value)
  end)

  it("ollama's llama-2-tiny-random: 18 keys, 12 F16/F32 tensors, reversed dims", function()
    local m = graft.open(H.real("gguf/ollama-pr2177-llama-2-tiny-random/llama-2-tiny-random.gguf"))
    local meta = graft.meta(m)
    assert.are.equal(3, meta.version)
    assert.are.equal(32, meta.alignment)
    assert.are.equal(18, #meta.kv)
    assert.are.equal(12, #graft.names(m))
    local kv = kv_by_key(meta)
    assert.are.equal(8, kv["llama.embedding_length"].value)
    assert.are.equal(1, kv["llama.block_count"].value)
    assert.are.equal(32, kv["llama.feed_forward_length"].value)
    assert.are.equal(2, kv["llama.attention.head_count"].value)
    assert.are.equal(4096, kv["llama.context_length"].value)
    assert.are.equal(32000, #kv["tokenizer.ggml.tokens"].value)
    assert.are.equal("float32", kv["tokenizer.ggml.scores"].item_type)
    assert.are.equal(32000, #kv["tokenizer.ggml.scores"].value)
    assert.are.equal("int32", kv["tokenizer.ggml.token_type"].item_type)
    assert.are.equal("float16", m["token_embd.weight"].dtype)
    assert.are.same({ 32000, 8 }, m["token_embd.weight"].shape)
    assert.are.same({ 32000, 8 }, m["output.weight"].shape)
    for _, p in ipairs({ "q", "k", "v", "output" }) do
      assert.are.same({ 8, 8 }, m["blk.0.attn_" .. p .. ".weight"].shape)
    end
    assert.are.same({ 32, 8 }, m["blk.0.ffn_gate.weight"].shape)
    assert.are.same({ 32, 8 }, m["blk.0.ffn_up.weight"].shape)
    assert.are.same({ 8, 32 }, m["blk.0.ffn_down.weight"].shape)
    for _, n in ipairs({ "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "output_norm.weight" }) do
      assert.are.equal("float32", m[n].dtype)
      assert.are.same({ 8 }, m[n].shape)
      assert.is_true(all_equal(m[n], 1))
    end
    local q = m["blk.0.attn_q.weight"]:float():totable()
    assert.is_true(math.abs(q[1][1] - 0.024261475) < 1e-9)
    assert.is_true(math.abs(q[1][2] - 0.019699097) < 1e-9)
    assert.are.equal("F16", meta.ggml_types["token_embd.weight"])
  end)

  it("graft.detect says gguf from the magic bytes", function()
    assert.are.equal("gguf", graft.detect(H.real("gguf/iree-gguf-testdata/single.gguf")))
  end)
end)

describe("gguf: files gguf-py writes", function()
  local dir, m
  setup(function()
    dir = H.tmpdir()
    H.oracle(H.read(ORACLE), "write", dir)
    m = graft.open(dir .. "/py.gguf")
  end)
  teardown(H.cleanup)

  local TYPES = { f32 = "float32", f16 = "float16", f64 = "float64", bf16 = "bfloat16",
                  i8 = "int8", i16 = "int16", i32 = "int32", i64 = "int64",
                  q4_0 = "q4_0", q4_1 = "q4_1", q5_0 = "q5_0", q5_1 = "q5_1", q8_0 = "q8_0",
                  q2_k = "q2_k", q3_k = "q3_k", q4_k = "q4_k", q5_k = "q5_k", q6_k = "q6_k",
                  q8_k = "q8_k" }

  it("every type: raw bytes as stored, values bit-equal to quants.dequantize", function()
    local n = 0
    for name, dtype in pairs(TYPES) do
      local t = m[name]
      assert.are.equal(dtype, t.dtype, name)
      assert.are.equal(H.read(dir .. "/" .. name .. ".raw"), t:bytes(), name)
      assert.is_true(H.read(dir .. "/" .. name .. ".f32") == t:float():bytes(), name)
      n = n + 1
    end
    assert.are.equal(19, n)
    assert.are.same({ 4, 96 }, m.q4_0.shape)
    assert.are.same({ 3, 512 }, m.q6_k.shape)
    assert.are.same({ 2, 3, 32 }, m.bf16.shape)
  end)

  it("quantised casts go through float32: float16, bfloat16, float64", function()
    for _, name in ipairs({ "q4_0", "q5_1", "q3_k", "q6_k" }) do
      local f = m[name]:float()
      for _, dt in ipairs({ "float16", "bfloat16", "float64" }) do
        assert.are.equal(f:cast(dt):bytes(), m[name]:cast(dt):bytes())
      end
    end
  end)

  it("views keeping whole blocks work, views cutting blocks are refused", function()
    local t, f = m.q4_k, m.q4_k:float()
    assert.are.equal(f:narrow(1, 2, 2):bytes(), t:narrow(1, 2, 2):float():bytes())
    assert.are.equal(f:select(1, 3):bytes(), t:select(1, 3):float():bytes())
    assert.are.equal(f:narrow(2, 257, 256):bytes(), t:narrow(2, 257, 256):float():bytes())
    assert.are.equal(f:flip(1):bytes(), t:flip(1):float():bytes())
    assert.are.equal(t:narrow(1, 2, 1):bytes(), t:bytes():sub(#t:bytes() / 3 + 1, 2 * #t:bytes() / 3))
    local err = H.raises(function() return t:narrow(2, 2, 256) end)
    assert.matches("cut the 256%-element blocks of a q4_k tensor", err)
    err = H.raises(function() return t:t() end)
    assert.matches("would cut its 256%-element blocks", err)
    err = H.raises(function() return t:select(2, 1) end)
    assert.matches("cut", err)
    assert.are.equal(f:reshape(6, 256):bytes(), t:reshape(6, 256):float():bytes())
    err = H.raises(function() return t:reshape(12, 128) end)
    assert.matches("q4_k", err)
  end)

  it("cat, stack, comparisons and constructors around quantised tensors", function()
    local a, b = m.q4_k, m.q6_k
    assert.is_true(graft.cat({ a:float(), b:float() }, 1):bytes() == a:float():bytes() .. b:float():bytes())
    local c = graft.cat({ a:float(), b:float() }, 2)
    assert.are.same({ 3, 1024 }, c.shape)
    assert.is_true(c:narrow(2, 1, 512):contiguous():bytes() == a:float():bytes())
    assert.are.same({ 2, 3, 512 }, graft.stack({ a:float(), b:float() }, 1).shape)
    assert.matches("cat: q4_k tensors cannot be joined block%-wise", H.raises(function() return graft.cat({ a, b }, 1) end))
    assert.is_true(a:float():equal(a))
    assert.are.equal(a:float():stats().max, a:stats().max)
    assert.are.equal("q4_k", a:contiguous().dtype)
    assert.are.equal(a:bytes(), a:clone():bytes())
    local t = graft.tensor(a:bytes(), "q4_k")
    assert.are.same({ 1536 }, t.shape)
    assert.are.equal(a:reshape(1536):float():bytes(), t:float():bytes())
    local z = graft.zeros({ 2, 32 }, "q8_0")
    assert.are.equal(68, z.nbytes)
    assert.are.equal(0, z:float():stats().max)
  end)

  it("big quantised tensors decode the same on one thread and on several", function()
    -- 4 MiB of float32 output: above the size where rows are shared out
    local raw = m.q8_0:bytes()
    local big = graft.tensor(raw:rep(32768 * 34 // #raw + 1):sub(1, 32768 * 34), "q8_0", { 1024, 1024 })
    local before = graft.core.threads()
    graft.core.threads(1)
    local one = big:float():bytes()
    graft.core.threads(4)
    local four = big:float():bytes()
    graft.core.threads(before)
    assert.is_true(one == four)
    assert.is_true(one:sub(1, 4 * 96) == m.q8_0:float():bytes():sub(1, 4 * 96))
  end)

  it("metadata: every value type, arrays and nested arrays, in file order", function()
    local meta = graft.meta(m)
    local want = {
      { "general.architecture", "string", "graftest" },
      { "t.u8", "uint8", 200 }, { "t.i8", "int8", -100 }, { "t.u16", "uint16", 65000 },
      { "t.i16", "int16", -32000 }, { "t.u32", "uint32", 4000000000 },
      { "t.i32", "int32", -2000000000 }, { "t.f32", "float32", 0.100000001490116119384765625 },
      { "t.bool", "bool", true }, { "t.str", "string", "héllo" },
      { "t.u64", "uint64", (1 << 62) + 1 }, { "t.i64", "int64", -(1 << 62) - 1 },
      { "t.f64", "float64", 0.1 },
    }
    for i, w in ipairs(want) do
      assert.are.same({ key = w[1], type = w[2], value = w[3] }, meta.kv[i])
    end
    assert.are.same({ key = "t.arr_i32", type = "array", item_type = "int32", value = { 1, -2, 3 } }, meta.kv[14])
    assert.are.same({ key = "t.arr_str", type = "array", item_type = "string", value = { "a", "", "ccc" } }, meta.kv[15])
    assert.are.same({ key = "t.arr_f32", type = "array", item_type = "float32", value = { 0.5, -1.25 } }, meta.kv[16])
    assert.are.same({ key = "t.nested", type = "array", item_type = "array", value = {
      { type = "array", item_type = "int32", value = { 1, 2 } },
      { type = "array", item_type = "int32", value = { 3 } } } }, meta.kv[17])
    assert.are.same({ key = "t.last", type = "string", value = "end" }, meta.kv[18])
    assert.are.equal(18, #meta.kv)
  end)

  it("other formats get quantised tensors dequantised (float32, or opts.dtype)", function()
    local pt = dir .. "/deq.pt"
    graft.save(pt, { a = m.q5_k, b = m.q8_0 })
    local back = graft.open(pt)
    assert.are.equal("float32", back.a.dtype)
    assert.is_true(back.a:bytes() == m.q5_k:float():bytes())
    graft.save(dir .. "/deq.safetensors", { a = m.q5_k }, { dtype = "float16" })
    assert.is_true(graft.open(dir .. "/deq.safetensors").a:bytes() == m.q5_k:half():bytes())
  end)

  it("graft writes the same file back byte for byte", function()
    graft.save(dir .. "/again.gguf", m)
    assert.is_true(H.read(dir .. "/py.gguf") == H.read(dir .. "/again.gguf"))
  end)
end)

describe("gguf: files graft writes, read by gguf-py", function()
  teardown(H.cleanup)

  it("keeps metadata types, order and values; Q8_0/Q4_0 byte-identical to quants.quantize", function()
    local dir = H.tmpdir()
    local src = graft.open(H.real("gguf/ollama-pr2177-llama-2-tiny-random/llama-2-tiny-random.gguf"))
    local x = {}
    for i = 1, 6 * 128 do x[i] = math.sin(i * 0.37) * (i % 7) + ((i % 32 == 5) and 9.5 or 0) end
    local f = graft.tensor(x, "float32"):reshape(6, 128)
    graft.save(dir .. "/f.npy", { f = f })
    H.write(dir .. "/quant.txt", "a.q8 " .. dir .. "/f.npy q8_0\na.q4 " .. dir .. "/f.npy q4_0\n"
      .. "emb.q8 " .. dir .. "/emb.npy q8_0\n")
    graft.save(dir .. "/emb.npy", { e = src["token_embd.weight"]:float():narrow(1, 1, 64):reshape(2, 256) })
    local out = {}
    for _, n in ipairs(graft.names(src)) do out[n] = src[n] end
    out["a.q8"], out["a.q4"], out["a.bf16"] = f, f, f
    out["emb.q8"] = src["token_embd.weight"]:narrow(1, 1, 64):reshape(2, 256)
    local names = graft.names(src)
    for _, n in ipairs({ "a.q8", "a.q4", "a.bf16", "emb.q8" }) do names[#names + 1] = n end
    graft.save(dir .. "/g.gguf", out, {
      order = names, alignment = 64,
      types = { ["a.q8"] = "q8_0", ["a.q4"] = "q4_0", ["a.bf16"] = "bfloat16", ["emb.q8"] = "q8_0" },
      metadata = { ["general.name"] = "graft test", ["t.count"] = { type = "uint16", value = 7 },
                   ["t.empty"] = { type = "array", item_type = "int32", value = {} },
                   ["t.nested"] = { type = "array", item_type = "array", value = {
                     { type = "array", item_type = "float64", value = { 1.5 } } } } },
    })
    -- out has no meta of its own: metadata comes from opts only
    local got = json.decode(H.oracle(H.read(ORACLE), "read", dir .. "/g.gguf", dir))
    assert.are.equal(64, got.alignment)
    assert.are.equal(0, got.data_offset % 64)
    assert.are.same({ "general.name", "t.count", "t.empty", "t.nested", "general.alignment" },
      (function() local k = {} for i, e in ipairs(got.kv) do k[i] = e.key end return k end)())
    assert.are.same({ "UINT16" }, got.kv[2].types)
    -- GGUFReader lists no item type for an empty array; graft reads it back
    assert.are.equal("ARRAY", got.kv[3].types[1])
    assert.are.same({}, got.kv[3].value)
    assert.are.same({ key = "t.empty", type = "array", item_type = "int32", value = {} },
      graft.meta(graft.open(dir .. "/g.gguf")).kv[3])
    assert.are.same({ "ARRAY", "ARRAY", "FLOAT64" }, got.kv[4].types)
    assert.are.same({ "UINT32" }, got.kv[5].types)
    assert.are.equal(64, got.kv[5].value)
    local byname = {}
    for _, t in ipairs(got.tensors) do
      byname[t.name] = t
      assert.are.equal(0, t.offset % 64, t.name)
    end
    assert.are.equal(16, #got.tensors)
    assert.are.same({ "Q8_0", { 6, 128 } }, { byname["a.q8"].type, byname["a.q8"].shape })
    assert.are.same({ "Q4_0", { 6, 128 } }, { byname["a.q4"].type, byname["a.q4"].shape })
    assert.are.equal("BF16", byname["a.bf16"].type)
    assert.are.same({ "F16", { 32000, 8 } }, { byname["token_embd.weight"].type, byname["token_embd.weight"].shape })
    for _, n in ipairs({ "a.q8", "a.q4", "emb.q8" }) do
      assert.is_true(H.read(dir .. "/got." .. n) == H.read(dir .. "/want." .. n), n)
    end
    for _, n in ipairs(graft.names(src)) do
      assert.is_true(H.read(dir .. "/got." .. n) == src[n]:bytes(), n)
    end
    assert.is_true(H.read(dir .. "/got.a.bf16") == f:cast("bfloat16"):bytes())
  end)

  it("carries a source GGUF's metadata over and updates keys given as a map", function()
    local dir = H.tmpdir()
    local src = graft.open(H.real("gguf/iree-gguf-testdata/multiple.gguf"))
    graft.save(dir .. "/c.gguf", src, { metadata = { metadata_str = "bye", added = true } })
    local got = json.decode(H.oracle(H.read(ORACLE), "read", dir .. "/c.gguf", dir))
    local keys = {}
    for i, e in ipairs(got.kv) do keys[i] = e.key end
    -- the source's second general.architecture is dropped: gguf-py and
    -- llama.cpp refuse files with a key twice
    assert.are.same({ "general.architecture", "general.alignment", "metadata_uint32", "metadata_str",
                      "metadata_strs", "added" }, keys)
    assert.are.equal("bye", got.kv[4].value)
    assert.are.same({ "a", "b", "c" }, got.kv[5].value)
    assert.are.same({ "BOOL" }, got.kv[6].types)
    assert.are.equal(64, got.alignment)
    local back = graft.open(dir .. "/c.gguf")
    for _, n in ipairs(graft.names(src)) do assert.are.equal(src[n]:bytes(), back[n]:bytes()) end
    assert.are.equal(6, #graft.meta(back).kv)
  end)

  it("opts.quantize quantises 2-D real tensors with whole blocks and leaves the rest", function()
    local dir = H.tmpdir()
    local src = graft.open(H.real("gguf/ollama-pr2177-llama-2-tiny-random/llama-2-tiny-random.gguf"))
    local t = { w = graft.zeros({ 4, 64 }), b = graft.zeros({ 64 }), odd = graft.zeros({ 4, 8 }),
                e = src["token_embd.weight"] }
    local last, total
    graft.save(dir .. "/q.gguf", t, { quantize = "q4_0", progress = function(d, n) last, total = d, n end })
    assert.are.equal(total, last)
    assert.are.equal(4 * 64 * 4 + 64 * 4 + 4 * 8 * 4 + 32000 * 8 * 2, total)
    local m = graft.meta(graft.open(dir .. "/q.gguf"))
    assert.are.same({ w = "Q4_0", b = "F32", odd = "F32", e = "F16" }, m.ggml_types)
  end)

  it("refuses what GGUF cannot hold, naming the file and tensor", function()
    local dir = H.tmpdir()
    local err = H.raises(function()
      graft.save(dir .. "/x.gguf", { w = graft.zeros({ 2, 48 }) }, { types = { w = "q8_0" } })
    end)
    assert.matches("x%.gguf: tensor \"w\": q8_0 needs the last dimension to be a multiple of 32", err)
    err = H.raises(function() graft.save(dir .. "/x.gguf", { u = graft.zeros({ 2 }, "uint8") }) end)
    assert.matches("x%.gguf: tensor \"u\": GGUF has no uint8 type", err)
    err = H.raises(function() graft.save(dir .. "/x.gguf", { [string.rep("n", 64)] = graft.zeros({ 2 }) }) end)
    assert.matches("too long for GGUF", err)
    err = H.raises(function()
      graft.save(dir .. "/x.gguf", { w = graft.zeros({ 2 }) }, { metadata = { k = { type = "uint8", value = 300 } } })
    end)
    assert.matches("key \"k\": 300 is out of range for uint8", err)
    err = H.raises(function() graft.save(dir .. "/x.gguf", { w = graft.zeros({ 2 }) }, { alignment = 24 }) end)
    assert.matches("alignment 24 is not a power of two", err)
    err = H.raises(function()
      graft.save(dir .. "/x.gguf", { w = graft.zeros({ 2 }) }, { metadata = {
        { key = "a", type = "bool", value = true }, { key = "a", type = "bool", value = false } } })
    end)
    assert.matches("key \"a\" appears twice", err)
    assert.is_nil(io.open(dir .. "/x.gguf"))
  end)
end)

describe("gguf: the graft command", function()
  teardown(H.cleanup)
  local run = H.graft

  it("ls, show, convert (dequantising for other formats), diff and verify", function()
    local dir = H.tmpdir()
    local src = H.real("gguf/ollama-pr2177-llama-2-tiny-random/llama-2-tiny-random.gguf")
    local out, _, code = run("ls", src, "--json")
    assert.are.equal(0, code)
    local j = json.decode(out)
    assert.are.equal("gguf", j.format)
    assert.are.equal(12, j.count)
    out, _, code = run("show", src, "output_norm.weight")
    assert.are.equal(0, code)
    assert.matches("Tensor%(float32, {8}%)", out)
    -- a quantised file to safetensors and back
    local q = dir .. "/q.gguf"
    local m = graft.open(src)
    graft.save(q, m, { quantize = "q8_0", order = graft.names(m) })
    out, _, code = run("show", q, "token_embd.weight")
    assert.are.equal(0, code)
    assert.matches("Tensor%(float16, {32000,8}%)", out)   -- rows of 8: not quantised
    graft.save(q, { w = m["token_embd.weight"]:reshape(1000, 256) }, { quantize = "q8_0" })
    out, _, code = run("ls", q)
    assert.are.equal(0, code)
    assert.matches("w%s+q8_0%s+{1000,256}%s+265%.6 KiB", out)
    local _, err
    _, err, code = run("convert", q, dir .. "/q.safetensors")
    assert.are.equal(0, code, err)
    local st = graft.open(dir .. "/q.safetensors")
    assert.are.equal("float32", st.w.dtype)
    assert.are.equal(graft.open(q).w:float():bytes(), st.w:bytes())
    -- equal values, but q8_0 vs float32 is a dtype difference (exit 1)
    out, _, code = run("diff", q, dir .. "/q.safetensors")
    assert.are.equal(1, code)
    assert.are.equal("dtype: w q8_0 vs float32 max abs diff 0\n1 differences\n", out)
    -- byte for byte only without the provenance the CLI records by default
    _, _, code = run("convert", src, dir .. "/copy.gguf", "--no-provenance")
    assert.are.equal(0, code)
    assert.is_true(H.read(src) == H.read(dir .. "/copy.gguf"))
    out, _, code = run("verify", q)
    assert.are.equal(0, code)
    assert.matches("1 tensor verified", out)
  end)
end)
