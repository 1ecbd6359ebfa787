-- Keras 2 HDF5 files (model.save and save_weights): the real files Keras
-- 2.0, 2.2.4-tf, 2.9 and 2.11 wrote (MANIFEST.md section 5), read in the
-- order layer_names / weight_names give, with Keras-style names, configs
-- decoded and optimizer weights apart; plus h5py-written Keras layouts for
-- what the real files lack (a nested model, layer_names split in chunks).
local graft = require "graft"
local H = require "helper"

local K2 = "keras_h5/"
local THREE = K2 .. "hls4ml-KERAS_3layer-weights-only-keras2.0.0/KERAS_3layer_weights.h5"
local FASHION = K2 .. "hls4ml-FashionMNIST-qkeras-keras2.9/FashionMNIST.h5"
local FASHION_W = K2 .. "hls4ml-FashionMNIST-qkeras-keras2.9/FashionMNIST_weights.h5"
local GAPS = K2 .. "genomic-gaps-full-model-keras2.2.4tf/best_single.hdf5"
local DOTKERAS = K2 .. "hls4ml-dense-streaming-hdf5-named-dot-keras/keras_model.keras"

local function first(t, n)
  local v = H.flat(t:totable())
  local out = {}
  for i = 1, n do out[i] = v[i] end
  return out
end

local function close(want, got, tol)
  assert.equal(#want, #got)
  for i = 1, #want do
    assert.is_true(math.abs(want[i] - got[i]) <= (tol or 1e-7), string.format("%d: %s vs %s", i, want[i], got[i]))
  end
end

describe("Keras 2 HDF5", function()
  teardown(H.cleanup)

  it("reads a Keras 2.0 save_weights file in layer order, fixed-length strings", function()
    local m = graft.open(H.real(THREE))
    local meta = graft.meta(m)
    assert.equal("keras", meta.format)
    assert.equal("2.0.0", meta.keras_version)
    assert.equal("tensorflow", meta.backend)
    assert.equal("fixed", meta.strings)
    assert.same({ "input_1", "fc1_relu", "fc2_relu", "fc3_relu", "output_softmax" }, meta.layer_names)
    assert.same({ "fc1_relu/kernel", "fc1_relu/bias", "fc2_relu/kernel", "fc2_relu/bias",
      "fc3_relu/kernel", "fc3_relu/bias", "output_softmax/kernel", "output_softmax/bias" },
      graft.names(m))
    local shapes = { { 16, 64 }, { 64 }, { 64, 32 }, { 32 }, { 32, 32 }, { 32 }, { 32, 5 }, { 5 } }
    for i, n in ipairs(graft.names(m)) do
      assert.same(shapes[i], m[n].shape, n)
      assert.equal("float32", m[n].dtype)
    end
    close({ 0.27313474, -0.12113316, 0.49521461 }, first(m["fc1_relu/kernel"], 3))
    assert.equal("fc1_relu/fc1_relu/kernel:0", meta.paths["fc1_relu/kernel"])
    assert.is_nil(meta.model_config)
    assert.is_nil(meta.optimizer)
  end)

  it("holds the same bits as the ONNX export of the same model (hls4ml)", function()
    local m = graft.open(H.real(THREE))
    local onnx = H.py([[
import sys, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
for t in m.graph.initializer:
    a = numpy_helper.to_array(t)
    print(t.name, "x".join(map(str, a.shape)), a.astype("<f4").tobytes().hex())
]], H.real("onnx/hls4ml-three-layer/three_layer_keras.onnx"))
    local by_hex = {}
    for name, shape, hex in onnx:gmatch("(%S+) (%S+) (%x+)\n") do by_hex[hex] = { name, shape } end
    local matched = {}
    for _, n in ipairs(graft.names(m)) do
      local hit = by_hex[H.hex(m[n]:bytes())]
      assert.truthy(hit, n .. " has no bit-identical ONNX initializer")
      assert.equal(table.concat(m[n].shape, "x"), hit[2])
      matched[#matched + 1] = hit[1]
    end
    table.sort(matched)
    assert.same({ "B", "B1", "B2", "B3", "W", "W1", "W2", "W3" }, matched)
  end)

  it("reads a Keras 2.2.4-tf full model: 24 layers, configs, Nadam weights apart", function()
    local m = graft.open(H.real(GAPS))
    local meta = graft.meta(m)
    assert.equal("2.2.4-tf", meta.keras_version)
    assert.equal(24, #meta.layer_names)
    assert.equal("model_weights", meta.weights_group)
    assert.same({ 10, 4, 1, 32 }, m["conv2d/kernel"].shape)
    assert.equal("conv2d/kernel", graft.names(m)[1])
    for _, w in ipairs({ "gamma", "beta", "moving_mean", "moving_variance" }) do
      assert.same({ 32 }, m["batch_normalization/" .. w].shape)
    end
    -- weightless layers are listed, with no tensors
    local add
    for _, l in ipairs(meta.layers) do if l.name == "add" then add = l end end
    assert.same({}, add.weights)
    assert.equal("Model", meta.model_config.class_name)
    local input = meta.model_config.config.layers[1].config.batch_input_shape
    assert.same({ 201, 4 }, { input[2], input[3] })
    assert.is_nil(input[1])
    assert.equal("Nadam", meta.training_config.optimizer_config.class_name)
    assert.is_true(math.abs(meta.training_config.optimizer_config.config.learning_rate - 0.001) < 1e-9)
    local opt = meta.optimizer
    assert.equal("Nadam/iter", graft.names(opt)[1])
    assert.equal("int64", opt["Nadam/iter"].dtype)
    assert.equal(878, opt["Nadam/iter"]:totable())
    for n in pairs(m) do assert.is_nil(n:find("^Nadam/")) end
    local total = #graft.names(m) + #graft.names(opt)
    assert.equal(88, total)
  end)

  it("reads Keras 2.9 files: vlen strings, a nested weight path, an int64 scalar", function()
    for _, f in ipairs({ FASHION, FASHION_W }) do
      local m = graft.open(H.real(f))
      local meta = graft.meta(m)
      assert.equal("2.9.0", meta.keras_version)
      assert.equal("vlen", meta.strings)
      assert.same({ "q_conv2d_batchnorm/kernel", "q_conv2d_batchnorm/bias",
        "q_conv2d_batchnorm/batch_normalization/gamma", "q_conv2d_batchnorm/batch_normalization/beta",
        "q_conv2d_batchnorm/iteration", "q_conv2d_batchnorm/batch_normalization/moving_mean",
        "q_conv2d_batchnorm/batch_normalization/moving_variance" }, graft.names(m))
      assert.same({ 3, 3, 3, 8 }, m["q_conv2d_batchnorm/kernel"].shape)
      assert.equal("int64", m["q_conv2d_batchnorm/iteration"].dtype)
      assert.same({}, m["q_conv2d_batchnorm/iteration"].shape)
      assert.is_true(meta.top_level)
    end
    local full = graft.meta(graft.open(H.real(FASHION)))
    assert.equal("Sequential", full.model_config.class_name)
    assert.equal("Adam/iter", graft.names(full.optimizer)[1])
    assert.is_nil(graft.meta(graft.open(H.real(FASHION_W))).optimizer)
  end)

  it("detects a Keras 2 HDF5 file named .keras by its bytes", function()
    local p = H.real(DOTKERAS)
    assert.equal("hdf5", graft.detect(p))
    local m = graft.open(p)
    assert.equal("keras", graft.meta(m).format)
    assert.same({ "fc1/kernel", "fc1/bias", "fc2/kernel", "fc2/bias" }, graft.names(m))
    assert.same({ 8, 4 }, m["fc1/kernel"].shape)
    assert.same({ 2 }, m["fc2/bias"].shape)
    assert.equal("int64", graft.meta(m).optimizer.iteration.dtype)
  end)

  it("values equal what h5py reads at each original path", function()
    local m = graft.open(H.real(GAPS))
    local meta = graft.meta(m)
    local out = H.py([[
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
def show(n, o):
    if isinstance(o, h5py.Dataset):
        print(n, np.asarray(o[()]).tobytes().hex())
f.visititems(show)
]], H.real(GAPS))
    local want = {}
    for p, hex in out:gmatch("(%S+) (%x*)\n") do want[p] = hex end
    for _, n in ipairs(graft.names(m)) do
      assert.equal(want[meta.paths[n]], H.hex(m[n]:bytes()), n)
    end
    local opt = meta.optimizer
    for _, n in ipairs(graft.names(opt)) do
      assert.equal(want[graft.meta(opt).paths[n]], H.hex(opt[n]:bytes()), n)
    end
  end)

  describe("h5py-written Keras layouts", function()
    local dir
    setup(function()
      dir = H.tmpdir()
      H.py(H.read("spec/fixtures/gen_hdf5.py"), dir)
    end)

    local NESTED = { "encoder/dense_1/kernel", "encoder/dense_1/bias",
      "encoder/batch_normalization/gamma", "encoder/batch_normalization/beta",
      "encoder/batch_normalization/moving_mean", "encoder/batch_normalization/moving_variance",
      "dense/kernel", "dense/bias" }

    it("names a nested model's weights below the sub-model", function()
      local m = graft.open(dir .. "/keras_nested.h5")
      assert.same(NESTED, graft.names(m))
      assert.same({ "input_1", "encoder", "flatten", "dense" }, graft.meta(m).layer_names)
      assert.same({ { 0, 1, 2, 3 }, { 4, 5, 6, 7 }, { 8, 9, 10, 11 } }, m["encoder/dense_1/kernel"]:totable())
      assert.equal("encoder/dense_1/kernel:0", graft.meta(m).paths["encoder/dense_1/kernel"])
    end)

    it("reads layer_names and weight_names split into name0, name1 chunks", function()
      for _, f in ipairs({ "keras_split.h5", "keras_split_w.h5" }) do
        local m = graft.open(dir .. "/" .. f)
        assert.same(NESTED, graft.names(m), f)
        assert.same({ "input_1", "encoder", "flatten", "dense" }, graft.meta(m).layer_names)
      end
    end)

    it("opens as generic HDF5 when asked", function()
      local m = graft.open(dir .. "/keras_nested.h5", { format = "hdf5" })
      assert.equal("hdf5", graft.meta(m).format)
      assert.truthy(m["encoder/dense_1/kernel:0"])
    end)
  end)
end)
