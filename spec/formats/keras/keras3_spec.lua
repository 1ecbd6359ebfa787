-- Keras 3: the .weights.h5 layout (layers/<name>/vars/<i>) and the .keras
-- zip (metadata.json, config.json, model.weights.h5 opened in place from
-- the archive), on the real file Keras 3.15 wrote (MANIFEST.md section 6).
local graft = require "graft"
local H = require "helper"

local ZIP = "keras3/keras-pre_pr22362_nested_container/pre_pr22362_nested_container.keras"
local WEIGHTS = "keras3/keras-pre_pr22362-weights-extracted/model.weights.h5"

local NAMES = { "dense/kernel", "dense_1/kernel", "dense_2/kernel", "dense_3/kernel", "dense_3/bias" }

local function all_equal(t, v)
  for _, x in ipairs(H.flat(t:totable())) do
    if math.abs(x - v) > 1e-7 then return false end
  end
  return true
end

local function check_model(m)
  assert.same(NAMES, graft.names(m))
  assert.same({ 4, 4 }, m["dense/kernel"].shape)
  assert.same({ 4, 2 }, m["dense_3/kernel"].shape)
  assert.same({ 2 }, m["dense_3/bias"].shape)
  assert.is_true(all_equal(m["dense/kernel"], 0.1))
  assert.is_true(all_equal(m["dense_1/kernel"], 0.2))
  assert.is_true(all_equal(m["dense_2/kernel"], 0.3))
  assert.is_true(all_equal(m["dense_3/kernel"], 0.5))
  assert.is_true(all_equal(m["dense_3/bias"], 0))
  local meta = graft.meta(m)
  assert.equal("keras3", meta.format)
  assert.equal("layers/dense_3/vars/1", meta.paths["dense_3/bias"])
  local byname = {}
  for _, o in ipairs(meta.objects) do byname[o.path] = o end
  assert.equal("d_0", byname["layers/dense"].name)
  assert.equal("dense", byname["layers/dense_3"].name)
  assert.equal("nested_dense_model", byname[""].name)
end

describe("Keras 3", function()
  teardown(H.cleanup)

  it("reads a .weights.h5 with variables named by layer class", function()
    local p = H.real(WEIGHTS)
    assert.equal("hdf5", graft.detect(p))
    check_model(graft.open(p))
  end)

  it("reads the .keras zip without extracting it, with its config and metadata", function()
    local p = H.real(ZIP)
    assert.equal("keras_zip", graft.detect(p))
    local m = graft.open(p)
    check_model(m)
    local meta = graft.meta(m)
    assert.equal("zip", meta.container)
    assert.equal("3.15.0", meta.keras_version)
    assert.equal("NestedDenseModel", meta.config.class_name)
    assert.same({ 2, 4 }, meta.config.build_config.input_shape)
    -- the member is the extracted file, byte for byte: same tensors
    local w = graft.open(H.real(WEIGHTS))
    for _, n in ipairs(NAMES) do assert.is_true(m[n]:equal(w[n]), n) end
  end)

  it("reads a .keras whose members are deflated", function()
    local out = H.tmpdir() .. "/deflated.keras"
    H.py([[
import sys, zipfile
src, dst = sys.argv[1:3]
with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as o:
    for i in z.infolist():
        o.writestr(i.filename, z.read(i.filename))
]], H.real(ZIP), out)
    check_model(graft.open(out))
  end)

  it("names variables from a Sequential config (use_bias, BatchNormalization flags)", function()
    local out = H.tmpdir() .. "/seq.keras"
    H.py([==[
import sys, json, zipfile, io, h5py, numpy as np
cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
  {"class_name": "InputLayer", "config": {"name": "input_layer"}},
  {"class_name": "Conv2D", "config": {"name": "c", "use_bias": True}},
  {"class_name": "BatchNormalization", "config": {"name": "bn", "center": True, "scale": False}},
  {"class_name": "Dense", "config": {"name": "d", "use_bias": False}},
  {"class_name": "Dense", "config": {"name": "d2"}}]}}
buf = io.BytesIO()
with h5py.File(buf, "w") as f:
    def v(path, arrays):
        g = f.create_group(path)
        g.attrs["name"] = path.split("/")[-2]
        for i, a in enumerate(arrays):
            g.create_dataset(str(i), data=a)
    v("layers/conv2d/vars", [np.ones((3, 3, 1, 2), "f4"), np.zeros(2, "f4")])
    v("layers/batch_normalization/vars", [np.ones(2, "f4"), np.ones(2, "f4"), np.ones(2, "f4")])
    v("layers/dense/vars", [np.ones((2, 3), "f4")])
    v("layers/dense_1/vars", [np.ones((3, 1), "f4"), np.ones(1, "f4")])
    v("optimizer/vars", [np.int64(3), np.ones((2, 3), "f4")])
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
    z.writestr("config.json", json.dumps(cfg))
    z.writestr("model.weights.h5", buf.getvalue())
]==], out)
    local m = graft.open(out)
    assert.same({ "conv2d/kernel", "conv2d/bias", "batch_normalization/beta",
      "batch_normalization/moving_mean", "batch_normalization/moving_variance",
      "dense/kernel", "dense_1/kernel", "dense_1/bias" }, graft.names(m))
    local opt = graft.meta(m).optimizer
    assert.same({ "optimizer/0", "optimizer/1" }, graft.names(opt))
  end)
end)
