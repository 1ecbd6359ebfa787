-- Reading TensorFlow tensor bundles (checkpoint V2) and V1 checkpoints
-- from the real files TF wrote: names, dtypes, shapes and values as
-- MANIFEST.md states them, crc32c checked, every path form, the
-- `checkpoint` state file, TF2 object graphs and short names.
local graft = require "graft"
local H = require "helper"

local SM = "savedmodel/"
local REG = "tf_ckpt_v2/tf2onnx-regression"
local GG = SM .. "genomic-gaps-sharded-tf2"
local RUST = SM .. "tf-rust-regression_savedmodel-tf2.5/variables/variables"
local HP2 = SM .. "tf-serving-saved_model_half_plus_two_cpu/00000123/variables/variables"
local HP2_TF2 = SM .. "tf-serving-saved_model_half_plus_two_tf2_cpu/00000123/variables/variables"
local MKL = SM .. "tf-serving-saved_model_half_plus_two_mkl/00000123/variables/variables"
local COUNTER = SM .. "tf-serving-saved_model_counter/00000123/variables/variables"
local V1 = "tf_meta/session_bundle_half_plus_two/00000123/export-00000-of-00001"

local function near(a, b, tol)
  return math.abs(a - b) <= (tol or 1e-7) * math.max(1, math.abs(b))
end

local function scalar(t)
  return t:totable()
end

describe("tf bundle", function()
  after_each(H.cleanup)

  it("opens the TF 1.11 checkpoint by directory, prefix, .index and .data", function()
    for _, p in ipairs({ REG, REG .. "/model", REG .. "/model.index",
                         REG .. "/model.data-00000-of-00001" }) do
      local m = graft.open(H.real(p))
      assert.same({ "W", "b" }, graft.names(m))
      assert.equal("float32", m.W.dtype)
      assert.same({}, m.W.shape)
      assert.truthy(near(scalar(m.W), 0.21396178))
      assert.truthy(near(scalar(m.b), 1.0495254))
      local meta = graft.meta(m)
      assert.equal("tf", meta.format)
      assert.equal("v2", meta.version)
      assert.equal(1, meta.num_shards)
      assert.equal("little", meta.endianness)
      assert.equal(1, meta.producer)
    end
  end)

  it("reads the directory's `checkpoint` state file", function()
    local meta = graft.meta(graft.open(H.real(REG)))
    assert.equal("model", meta.checkpoint_state.model_checkpoint_path)
    assert.same({ "model" }, meta.checkpoint_state.all_model_checkpoint_paths)
    assert.truthy(meta.prefix:find("tf2onnx%-regression/model$"))
  end)

  it("opens half_plus_two (snappy index) with a=0.5, b=2, c=3", function()
    local m = graft.open(H.real(HP2))
    assert.same({ "a", "a2", "b", "c", "c2" }, graft.names(m))
    local want = { a = 0.5, a2 = 0.5, b = 2, c = 3, c2 = 3 }
    for k, v in pairs(want) do assert.equal(v, scalar(m[k])) end
    assert.equal(1, graft.meta(m).index_snappy_blocks)
    local offs = {}
    for _, k in ipairs(graft.names(m)) do offs[#offs + 1] = graft.meta(m).entries[k].offset end
    assert.same({ 0, 4, 8, 12, 16 }, offs)
  end)

  it("opens the TF 2.14 half_plus_two (snappy) with its object graph", function()
    local m = graft.open(H.real(HP2_TF2))
    assert.equal(0.5, scalar(m["a/.ATTRIBUTES/VARIABLE_VALUE"]))
    assert.equal(2, scalar(m["b/.ATTRIBUTES/VARIABLE_VALUE"]))
    assert.equal(3, scalar(m["c/.ATTRIBUTES/VARIABLE_VALUE"]))
    local og = m._CHECKPOINTABLE_OBJECT_GRAPH
    assert.equal("string", og.dtype)
    assert.equal(613, #og:totable())
    local nodes = graft.meta(m).object_graph.nodes
    assert.equal("a", nodes[1].children[1].local_name)
    local names = graft.tf.short_names(graft.meta(m), graft.names(m))
    assert.equal("a", names["a/.ATTRIBUTES/VARIABLE_VALUE"])
  end)

  it("opens the mkl SavedModel variables (conv kernels)", function()
    local m = graft.open(H.real(MKL))
    assert.equal(9, #graft.names(m))
    assert.same({ 1, 1, 1, 1 }, m["conv2d/kernel"].shape)
    assert.truthy(near(H.flat(m["conv2d/kernel"]:totable())[1], -0.5223960))
    assert.truthy(near(H.flat(m["conv2d_1/kernel"]:totable())[1], -1.0451120))
    assert.truthy(near(H.flat(m["conv2d_2/kernel"]:totable())[1], 1.5779432))
    assert.same({ 0 }, m["conv2d/bias"]:totable())
  end)

  it("opens the smallest bundle (counter = 0)", function()
    local m = graft.open(H.real(COUNTER))
    assert.same({ "counter" }, graft.names(m))
    assert.equal(0, scalar(m.counter))
  end)

  it("opens the TF 2.5 bundle: float32, int64 and string entries", function()
    local m = graft.open(H.real(RUST))
    assert.truthy(near(m["w/.ATTRIBUTES/VARIABLE_VALUE"]:totable()[1], 0.20429754))
    assert.same({ 0 }, m["b/.ATTRIBUTES/VARIABLE_VALUE"]:totable())
    local iter = m["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"]
    assert.equal("int64", iter.dtype)
    assert.equal(0, scalar(iter))
    assert.equal(0.5, scalar(m["optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE"]))
    assert.equal(0, scalar(m["optimizer/decay/.ATTRIBUTES/VARIABLE_VALUE"]))
    assert.equal(0, scalar(m["optimizer/momentum/.ATTRIBUTES/VARIABLE_VALUE"]))
    assert.equal(531, #m._CHECKPOINTABLE_OBJECT_GRAPH:totable())
    local names, _, other = graft.tf.short_names(graft.meta(m), graft.names(m))
    assert.equal("w", names["w/.ATTRIBUTES/VARIABLE_VALUE"])
    assert.truthy(other["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"])
  end)

  it("opens the 2-shard genomic-gaps checkpoint: 67 entries", function()
    local m = graft.open(H.real(GG))
    local names = graft.names(m)
    assert.equal(67, #names)
    local meta = graft.meta(m)
    assert.equal(2, meta.num_shards)
    assert.equal("_CHECKPOINTABLE_OBJECT_GRAPH", names[1])
    assert.equal(0, meta.entries._CHECKPOINTABLE_OBJECT_GRAPH.shard_id)
    assert.equal(13318, #m._CHECKPOINTABLE_OBJECT_GRAPH:totable())
    local floats, ints = 0, 0
    for i = 2, #names do
      assert.equal(1, meta.entries[names[i]].shard_id)
      local dt = m[names[i]].dtype
      if dt == "float32" then floats = floats + 1 elseif dt == "int64" then ints = ints + 1 end
    end
    assert.equal(65, floats)
    assert.equal(1, ints)
    local k0 = "layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert.same({ 10, 2, 1, 32 }, m[k0].shape)
    local k1 = m["layer_with_weights-1/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    assert.same({ 10, 2, 32, 64 }, k1.shape)
    assert.equal(163840, k1.nbytes)
    assert.same({ 1312, 32 }, m["layer_with_weights-6/kernel/.ATTRIBUTES/VARIABLE_VALUE"].shape)
    local bias = m["layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE"]:totable()
    assert.truthy(near(bias[1], -0.55296642))
    assert.truthy(near(bias[2], -0.06813231))
    assert.equal(82532, scalar(m["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"]))
    assert.truthy(near(scalar(m["optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE"]), 0.001))
    assert.truthy(m["layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"])
    assert.truthy(m["keras_api/metrics/0/total/.ATTRIBUTES/VARIABLE_VALUE"])
  end)

  it("gives TF2 short names and separates optimizer slots", function()
    local m = graft.open(H.real(GG))
    local w, slots, other = graft.tf.split(m)
    assert.equal(m["layer_with_weights-0/kernel/.ATTRIBUTES/VARIABLE_VALUE"], w["conv2d/kernel"])
    assert.equal(m["layer_with_weights-0/bias/.ATTRIBUTES/VARIABLE_VALUE"], w["conv2d/bias"])
    assert.equal(m["layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/m/.ATTRIBUTES/VARIABLE_VALUE"],
      slots["conv2d/kernel"].m)
    assert.equal(m["layer_with_weights-0/kernel/.OPTIMIZER_SLOT/optimizer/v/.ATTRIBUTES/VARIABLE_VALUE"],
      slots["conv2d/kernel"].v)
    assert.truthy(other["optimizer/iter/.ATTRIBUTES/VARIABLE_VALUE"])
    assert.truthy(other._CHECKPOINTABLE_OBJECT_GRAPH)
    assert.truthy(other["keras_api/metrics/0/count/.ATTRIBUTES/VARIABLE_VALUE"])
    local nw, ns, no = 0, 0, 0
    for _ in pairs(w) do nw = nw + 1 end
    for _, v in pairs(slots) do for _ in pairs(v) do ns = ns + 1 end end
    for _ in pairs(other) do no = no + 1 end
    assert.equal(67, nw + ns + no)
    assert.equal(22, nw)   -- moving statistics are weights too
    assert.equal(36, ns)
  end)

  it("opens a SavedModel directory as its variables", function()
    local m = graft.open(H.real(SM .. "tf2onnx-regression"))
    assert.same({ "W", "b" }, graft.names(m))
  end)

  it("opens the V1 checkpoint of the TF 0.12 session bundle", function()
    local m = graft.open(H.real(V1))
    assert.same({ "a", "b" }, graft.names(m))
    assert.equal(0.5, scalar(m.a))
    assert.equal(2, scalar(m.b))
    assert.equal("float32", m.a.dtype)
    assert.equal("v1", graft.meta(m).version)
  end)

  it("graft verify checks every entry's crc32c", function()
    local cli = require "graft.cli"
    for _, p in ipairs({ REG, GG, RUST, HP2, HP2_TF2, MKL, COUNTER }) do
      local out = { buf = {} }
      function out:write(...) for _, s in ipairs({ ... }) do self.buf[#self.buf + 1] = s end end
      assert.equal(0, cli.main({ "verify", H.real(p) }, out))
      assert.truthy(table.concat(out.buf):find("verified"))
    end
    assert.equal(67, graft.core.tf_verify(H.real(GG .. "/variables/variables")))
  end)

  it("lists the bundle in graft ls", function()
    local cli = require "graft.cli"
    local out = { buf = {} }
    function out:write(...) for _, s in ipairs({ ... }) do self.buf[#self.buf + 1] = s end end
    assert.equal(0, cli.main({ "ls", H.real(REG) }, out))
    assert.truthy(table.concat(out.buf):find("2 tensors", 1, true))
  end)
end)
