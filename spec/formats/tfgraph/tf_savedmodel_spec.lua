-- SavedModel directories: the variables checkpoint as tensors (keys as they
-- are), the serving meta graph's signatures and variables in graft.meta.
-- Values and keys are those MANIFEST.md states for the real SavedModels.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local SM = "savedmodel/"

local function near(a, b) return math.abs(a - b) < 1e-6 end

-- Every variable the meta graph lists under a checkpoint key is in the
-- checkpoint with that dtype and shape.
local function keys_match(m)
  local n = 0
  for _, v in ipairs(graft.meta(m).variables) do
    local t = v.key and m[v.key]
    if v.path or graft.meta(m).checkpoint then
      if t then
        assert.are.equal(v.dtype, t.dtype, v.key)
        assert.are.same(v.shape, t.shape, v.key)
        n = n + 1
      end
    end
  end
  return n
end

describe("SavedModel", function()
  it("half_plus_two (TF 1.14): a=0.5, b=2, c=3 and the serving signatures", function()
    local m = graft.open(H.real(SM .. "tf-serving-saved_model_half_plus_two_cpu/00000123"))
    assert.are.same({ "a", "a2", "b", "c", "c2" }, graft.names(m))
    assert.are.equal(0.5, m.a:totable())
    assert.are.equal(2.0, m.b:totable())
    assert.are.equal(3.0, m.c:totable())
    local meta = graft.meta(m)
    assert.are.equal("savedmodel", meta.format)
    assert.are.same({ "serve" }, meta.tags)
    assert.are.same({ { "serve" } }, meta.meta_graphs)
    local s = meta.signatures.classify_x_to_y
    assert.are.equal("tensorflow/serving/classify", s.method)
    assert.are.same({ name = "tf_example:0", dtype = "string" }, s.inputs.inputs)
    assert.are.same({ name = "y:0", dtype = "float32", shape = { -1, 1 } }, s.outputs.scores)
    assert.are.equal("V2", meta.saver.version)
    assert.are.equal(5, keys_match(m))
    assert.is_table(meta.checkpoint)
  end)

  it("half_plus_two TF2 (TF 2.14): object-graph keys, which the meta graph's variables give", function()
    local m = graft.open(H.real(SM .. "tf-serving-saved_model_half_plus_two_tf2_cpu/00000123"))
    assert.are.equal(0.5, m["a/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    assert.are.equal(2.0, m["b/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    assert.are.equal(3.0, m["c/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    local og = m._CHECKPOINTABLE_OBJECT_GRAPH
    assert.are.equal("string", og.dtype)
    assert.are.equal(613, #og:totable())
    local meta = graft.meta(m)
    local keys = {}
    for _, v in ipairs(meta.variables) do keys[#keys + 1] = v.key end
    assert.are.same({ "a/.ATTRIBUTES/VARIABLE_VALUE", "b/.ATTRIBUTES/VARIABLE_VALUE",
                      "c/.ATTRIBUTES/VARIABLE_VALUE" }, keys)
    assert.are.equal(3, keys_match(m))
    assert.is_truthy(meta.tensorflow_version:find("^2%.14"))
  end)

  it("tf-rust regression (TF 2.5): float32, int64 and string entries", function()
    local m = graft.open(H.real(SM .. "tf-rust-regression_savedmodel-tf2.5"))
    assert.is_true(near(m["w/.ATTRIBUTES/VARIABLE_VALUE"]:totable()[1], 0.20429754))
    assert.are.same({ 0 }, m["b/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    local it = m["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"]
    assert.are.equal("int64", it.dtype)
    assert.are.equal(0, it:totable())
    assert.are.equal(0.5, m["optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    assert.are.equal(531, #m._CHECKPOINTABLE_OBJECT_GRAPH:totable())
    assert.are.equal(6, keys_match(m))
    local meta = graft.meta(m)
    assert.are.equal("tensorflow/serving/predict", meta.signatures.train.method)
    assert.are.same({ name = "SGD/iter", dtype = "int64", shape = {}, trainable = false,
                      path = "optimizer/iter", key = "optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE" },
      meta.variables[3])
  end)

  it("genomic gaps (TF 2.0, 2 shards): 67 entries, every variable and optimizer slot keyed", function()
    local m = graft.open(H.real(SM .. "genomic-gaps-sharded-tf2"))
    assert.are.equal(67, #graft.names(m))
    assert.are.equal(82532, m["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    local b = m["layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE"]:totable()
    assert.is_true(near(b[1], -0.55296642) and near(b[2], -0.06813231))
    assert.are.same({ 10, 2, 32, 64 }, m["layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE"].shape)
    -- 65 float32 + 1 int64 tensors besides the object graph: all keyed
    assert.are.equal(66, keys_match(m))
    local meta = graft.meta(m)
    local slot
    for _, v in ipairs(meta.variables) do
      if v.name == "Nadam/conv2d/kernel/m" then slot = v end
    end
    assert.are.equal("layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE", slot.key)
    assert.are.same({ name = "serving_default_input_1:0", dtype = "float32", shape = { -1, 201, 4 } },
      meta.signatures.serving_default.inputs.input_1)
  end)

  it("opens from saved_model.pb as from its directory", function()
    local dir = H.real(SM .. "tf2onnx-regression")
    local a, b = graft.open(dir), graft.open(dir .. "/saved_model.pb")
    assert.are.same(graft.names(a), graft.names(b))
    assert.is_true(near(a.W:totable(), 0.21396178))
    assert.is_true(near(b.b:totable(), 1.0495254))
    assert.are.equal("savedmodel", graft.detect(dir))
    assert.are.equal("savedmodel", graft.detect(dir .. "/saved_model.pb"))
  end)

  it("counter and half_plus_two mkl (VariableV2 and VarHandleOp mixed)", function()
    local c = graft.open(H.real(SM .. "tf-serving-saved_model_counter/00000123"))
    assert.are.equal(0.0, c.counter:totable())
    assert.are.equal("incr_counter_op/AssignAdd:0",
      graft.meta(c).signatures.incr_counter.outputs.output.name)
    local m = graft.open(H.real(SM .. "tf-serving-saved_model_half_plus_two_mkl/00000123"))
    assert.is_true(near(m["conv2d/kernel"]:totable()[1][1][1][1], -0.5223960))
    local ops = {}
    for _, v in ipairs(graft.meta(m).variables) do ops[v.op] = true end
    assert.is_true(ops.VariableV2 and ops.VarHandleOp)
    assert.are.equal(9, keys_match(m))
  end)

  it("lists on the command line", function()
    local env = "LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' "
    local p = io.popen(env .. "lua5.4 bin/graft ls --json "
      .. H.q(H.real(SM .. "tf-serving-saved_model_half_plus_two_cpu/00000123")) .. " 2>&1")
    local out = json.decode(p:read("a"))
    p:close()
    assert.are.equal("savedmodel", out.format)
    assert.are.equal(5, out.count)
  end)
end)
