-- TensorFlow frozen GraphDefs and .meta files: Consts as tensors (the real
-- graphs TensorFlow wrote, and a synthetic graph holding every encoding of
-- TensorProto values, made by spec/fixtures/gen_tfgraph.py with Python's
-- protobuf runtime), variables in graft.meta, and patching Consts with
-- every other byte of the graph kept.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local GEN = "spec/fixtures/gen_tfgraph.py"
local hex = H.hex

local function gen(...)
  local args = { H.PYTHON, GEN }
  for _, a in ipairs({ ... }) do args[#args + 1] = H.q(a) end
  local p = io.popen(table.concat(args, " "))
  local out = p:read("a")
  assert(p:close(), "gen_tfgraph.py failed")
  return out
end

-- The synthetic graph and what TensorFlow's rules make of it.
local fixture
local function typed()
  if not fixture then
    local dir = H.tmpdir()
    gen(dir)
    fixture = { path = dir .. "/typed.pb",
                expected = json.decode(H.read(dir .. "/expected.json")) }
  end
  return fixture
end

-- t against one entry of the generator's JSON (hex bytes or hex strings).
local function matches(t, e, name)
  assert.is_truthy(t, name)
  assert.are.equal(e.dtype, t.dtype, name)
  assert.are.same(e.shape, t.shape, name)
  if e.hex then
    assert.are.equal(e.hex, hex(t:bytes()), name)
  else
    local v = t:totable()
    if type(v) ~= "table" then v = { v } end
    for i, s in ipairs(e.strings) do assert.are.equal(s, hex(v[i]), name) end
  end
end

local function shape(t) return table.concat(t.shape, ",") end

describe("frozen GraphDef", function()
  it("tf2onnx regression: the Consts W and b (float_val scalars)", function()
    local m = graft.open(H.real("tf_graphdef/tf2onnx-regression/frozen.pb"))
    assert.are.same({ "W", "b" }, graft.names(m))
    assert.are.equal("float32", m.W.dtype)
    assert.are.same({}, m.W.shape)
    assert.is_true(math.abs(m.W:totable() - 0.21396178) < 1e-7)
    assert.is_true(math.abs(m.b:totable() - 1.0495254) < 1e-7)
    local meta = graft.meta(m)
    assert.are.equal("graphdef", meta.format)
    assert.are.equal(8, meta.node_count)
    assert.is_nil(meta.producer) -- the file has no versions field
  end)

  it("hls4ml 3layer: eight tensor_content weights", function()
    local m = graft.open(H.real("tf_graphdef/hls4ml-3layer/3layer.pb"))
    assert.are.same({ "fc1_relu/kernel", "fc1_relu/bias", "fc2_relu/kernel", "fc2_relu/bias",
      "fc3_relu/kernel", "fc3_relu/bias", "output_softmax/kernel", "output_softmax/bias" },
      graft.names(m))
    assert.are.equal("16,64", shape(m["fc1_relu/kernel"]))
    assert.are.equal("32,5", shape(m["output_softmax/kernel"]))
    local k = H.flat(m["fc1_relu/kernel"]:totable())
    assert.is_true(math.abs(k[1] - 0.20430794) < 1e-7)
    assert.is_true(math.abs(k[2] - 0.20888045) < 1e-7)
    for _, b in ipairs({ "fc1_relu/bias", "fc2_relu/bias", "fc3_relu/bias", "output_softmax/bias" }) do
      local s = m[b]:stats()
      assert.are.equal(0, s.min)
      assert.are.equal(0, s.max)
    end
    assert.are.equal(29, graft.meta(m).node_count)
  end)

  it("tf2onnx lstm: 106 Consts, weights in tensor_content, small ones typed", function()
    local m = graft.open(H.real("tf_graphdef/tf2onnx-lstm/frozen.pb"))
    assert.are.equal(106, #graft.names(m))
    assert.are.equal(529, graft.meta(m).node_count)
    assert.are.equal("128,10", shape(m["model/w1"]))
    assert.are.equal("10", shape(m["model/b1"]))
    assert.are.equal("156,512", shape(m["rnn/basic_lstm_cell/kernel"]))
    assert.are.equal("512", shape(m["rnn/basic_lstm_cell/bias"]))
    assert.are.equal("float32", m["rnn/basic_lstm_cell/kernel"].dtype)
  end)

  it("every real graph's Consts equal an independent protobuf + numpy reading", function()
    for _, f in ipairs({ "tf2onnx-regression/frozen.pb", "hls4ml-3layer/3layer.pb",
                         "tf2onnx-lstm/frozen.pb" }) do
      local path = H.real("tf_graphdef/" .. f)
      local want = json.decode(gen("--dump", path))
      local m = graft.open(path)
      local n = 0
      for name, e in pairs(want) do
        matches(m[name], e, f .. ": " .. name)
        n = n + 1
      end
      assert.are.equal(n, #graft.names(m))
    end
  end)

  it("reads every TensorProto encoding: content, typed fields, repeat-last, zeros, half/bfloat16 bits, strings", function()
    local fx = typed()
    local m = graft.open(fx.path)
    local n = 0
    for name, e in pairs(fx.expected) do
      matches(m[name], e, name)
      n = n + 1
    end
    assert.are.equal(n, #graft.names(m))
    -- the same bytes as Python's protobuf reading of the file
    local want = json.decode(gen("--dump", fx.path))
    for name, e in pairs(want) do matches(m[name], e, name) end
  end)

  it("spot values of the synthetic graph", function()
    local m = graft.open(typed().path)
    assert.are.same({ { 1.5, 1.5, 1.5 }, { 1.5, 1.5, 1.5 } }, m["f32/fill"]:totable())
    assert.are.same({ 1, 2, 3, 3, 3 }, m["f32/partial"]:totable())
    assert.are.same({ { 0, 0 }, { 0, 0 } }, m["f32/none"]:totable())
    assert.are.same({ 1.5, -2.0, 65504.0, 65504.0 }, m["f16/half_val"]:float():totable())
    assert.are.same({ 1.0, -3.5, 0.15625 }, m["bf16/half_val"]:float():totable())
    assert.are.same({ -2, 300, 300 }, m["i16/neg"]:totable())
    assert.are.equal("int8", m["qint8/list"].dtype)
    assert.are.same({ "ab", "\xff\0z", "\xff\0z" }, m["str/list"]:totable())
    assert.are.same({ "hello", "", "tf" }, m["str/content"]:totable())
  end)

  it("lists skipped Consts, variables and the producer in graft.meta", function()
    local meta = graft.meta(graft.open(typed().path))
    assert.are.same({ { name = "skip/resource", dtype = "resource" } }, meta.skipped)
    assert.are.same({ { name = "v", key = "v", op = "VariableV2", dtype = "float32", shape = { 3, 2 } } },
      meta.variables)
    assert.are.equal(27, meta.producer)
  end)

  it("is detected from the name (protobuf has no magic)", function()
    assert.are.equal("graphdef", graft.detect(H.real("tf_graphdef/tf2onnx-lstm/frozen.pb")))
    assert.are.equal("metagraph", graft.detect(H.real("tf_ckpt_v2/tf2onnx-regression/model.meta")))
  end)
end)

describe("MetaGraphDef (.meta)", function()
  it("session bundle half_plus_two: Consts, variables a and b, saver V1", function()
    local m = graft.open(H.real("tf_meta/session_bundle_half_plus_two/00000123/export.meta"))
    assert.are.equal(0.5, m["a/initial_value"]:totable())
    assert.are.equal(2.0, m["b/initial_value"]:totable())
    assert.are.same({ "model" }, { m["save/Const"]:totable() })
    local meta = graft.meta(m)
    assert.are.equal("metagraph", meta.format)
    assert.are.equal(57, meta.node_count)
    assert.are.equal("0.12.head", meta.tensorflow_version)
    assert.are.equal("V1", meta.saver.version)
    local vars = {}
    for _, v in ipairs(meta.variables) do vars[v.name] = v end
    assert.are.same({ name = "a", key = "a", op = "Variable", dtype = "float32", shape = {} }, vars.a)
    assert.are.same({ name = "b", key = "b", op = "Variable", dtype = "float32", shape = {} }, vars.b)
  end)

  it("tf2onnx regression model.meta (TF 1.11): VariableV2 W and b, 128 nodes", function()
    local meta = graft.meta(graft.open(H.real("tf_ckpt_v2/tf2onnx-regression/model.meta")))
    assert.are.equal(128, meta.node_count)
    assert.are.equal("V2", meta.saver.version)
    local names = {}
    for _, v in ipairs(meta.variables) do
      names[#names + 1] = v.name
      assert.are.equal("VariableV2", v.op)
      assert.are.equal("float32", v.dtype)
    end
    assert.is_truthy(table.concat(names, " "):find("W", 1, true))
    assert.are.same({ "W", "b" }, { names[1], names[2] })
  end)
end)

describe("patching a frozen graph", function()
  local function real_graphs()
    return { H.real("tf_graphdef/tf2onnx-regression/frozen.pb"),
             H.real("tf_graphdef/hls4ml-3layer/3layer.pb"),
             H.real("tf_graphdef/tf2onnx-lstm/frozen.pb"), typed().path }
  end

  it("with every Const's own values reproduces each graph byte for byte", function()
    local dir = H.tmpdir()
    for _, base in ipairs(real_graphs()) do
      local out = dir .. "/same.pb"
      graft.save(out, graft.open(base), { format = "graphdef", base = base })
      assert.is_true(H.read(out) == H.read(base), base)
    end
  end)

  it("changes only the patched node's bytes (tensor_content, streamed from a view)", function()
    local base = H.real("tf_graphdef/tf2onnx-lstm/frozen.pb")
    local m = graft.open(base)
    -- a permuted, cast view: written through the streaming path
    local new = graft.tensor((function()
      local t = {}
      for i = 1, 10 do
        t[i] = {}
        for j = 1, 128 do t[i][j] = (i * 128 + j) / 7 end
      end
      return t
    end)(), "float64"):t():float()
    local out = H.tmpdir() .. "/patched.pb"
    graft.save(out, { ["model/w1"] = new }, { base = base })
    local a, b = H.read(base), H.read(out)
    assert.are.equal(#a, #b) -- same size: only values changed
    local p = 0
    while p < #a and a:byte(p + 1) == b:byte(p + 1) do p = p + 1 end
    local s = 0
    while s < #a and a:byte(#a - s) == b:byte(#b - s) do s = s + 1 end
    local rec = json.decode(gen("--nodes", base))["model/w1"]
    assert.is_true(p >= rec[1] and #a - s <= rec[2], "bytes changed outside the node")
    local m2 = graft.open(out)
    assert.is_true(m2["model/w1"]:equal(new))
    for _, name in ipairs(graft.names(m)) do
      if name ~= "model/w1" then assert.is_true(m2[name]:equal(m[name]), name) end
    end
    -- Python's protobuf agrees on every Const of the patched graph
    for name, e in pairs(json.decode(gen("--dump", out))) do matches(m2[name], e, name) end
  end)

  it("keeps a typed field typed (float_val scalar) and may change the length", function()
    local base = H.real("tf_graphdef/tf2onnx-regression/frozen.pb")
    local out = H.tmpdir() .. "/w.pb"
    graft.save(out, { W = graft.tensor(0.5, "float32") }, { format = "graphdef", base = base })
    local m = graft.open(out)
    assert.are.equal(0.5, m.W:totable())
    assert.is_true(math.abs(m.b:totable() - 1.0495254) < 1e-7)
    assert.are.equal(#H.read(base), #H.read(out))
    -- a fill becomes one value; a list grows (enclosing lengths rewritten)
    local fx = typed()
    local out2 = H.tmpdir() .. "/t.pb"
    graft.save(out2, { ["f32/partial"] = graft.tensor({ 9, 8, 7, 6, 5 }, "float32"),
                       ["str/list"] = graft.open(fx.path)["str/content"] },
      { base = fx.path })
    local m2 = graft.open(out2)
    assert.are.same({ 9, 8, 7, 6, 5 }, m2["f32/partial"]:totable())
    assert.are.same({ "hello", "", "tf" }, m2["str/list"]:totable())
    for name, e in pairs(json.decode(gen("--dump", out2))) do matches(m2[name], e, name) end
  end)

  it("reports progress for streamed tensors", function()
    local base = H.real("tf_graphdef/hls4ml-3layer/3layer.pb")
    local m = graft.open(base)
    local last
    graft.save(H.tmpdir() .. "/p.pb", m, { base = base, progress = function(d, t) last = { d, t } end })
    assert.are.same({ 4 * (16 * 64 + 64 + 64 * 32 + 32 + 32 * 32 + 32 + 32 * 5 + 5) }, { last[2] })
    assert.are.equal(last[2], last[1])
  end)
end)
