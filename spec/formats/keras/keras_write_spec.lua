-- Writing Keras weights from tables graft did not read from Keras: the
-- Keras 2 save_weights layout that load_weights accepts (positional and
-- by_name, checked by spec/fixtures/keras_load.py, which follows Keras's
-- legacy loader), strings as current Keras writes them (vlen ASCII) or
-- fixed-length on request, layer_names split as Keras splits big lists; the
-- Keras 3 .weights.h5 layout; and the PyTorch -> Keras recipe in examples/cookbook/.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local DUMP = H.read("spec/fixtures/h5_structure.py")
local LOAD = H.read("spec/fixtures/keras_load.py")

local function f32(shape, start)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local parts = {}
  for i = 1, n do parts[i] = string.pack("<f", (start or 0) + i) end
  return graft.tensor(table.concat(parts), "float32", shape)
end

local function check_load(path, model)
  local dir = H.tmpdir()
  H.write(dir .. "/model.json", json.encode(model))
  return H.py(LOAD, path, dir .. "/model.json")
end

describe("writing Keras weights", function()
  teardown(H.cleanup)

  local t = {
    ["conv2d/kernel"] = f32({ 3, 3, 1, 4 }),
    ["conv2d/bias"] = f32({ 4 }),
    ["batch_normalization/gamma"] = f32({ 4 }),
    ["batch_normalization/beta"] = f32({ 4 }),
    ["batch_normalization/moving_mean"] = f32({ 4 }),
    ["batch_normalization/moving_variance"] = f32({ 4 }),
    ["dense/kernel"] = f32({ 4, 2 }),
    ["dense/bias"] = f32({ 2 }),
  }
  local order = { "conv2d/kernel", "conv2d/bias", "batch_normalization/gamma",
    "batch_normalization/beta", "batch_normalization/moving_mean",
    "batch_normalization/moving_variance", "dense/kernel", "dense/bias" }
  local model = {
    { name = "input_1", shapes = json.array_mt and setmetatable({}, json.array_mt) },
    { name = "conv2d", shapes = { { 3, 3, 1, 4 }, { 4 } } },
    { name = "batch_normalization", shapes = { { 4 }, { 4 }, { 4 }, { 4 } } },
    { name = "flatten", shapes = setmetatable({}, json.array_mt) },
    { name = "dense", shapes = { { 4, 2 }, { 2 } } },
  }

  it("writes the save_weights layout load_weights accepts, by position and by name", function()
    local out = H.tmpdir() .. "/w.h5"
    graft.save(out, t, { order = order, layer_names = { "input_1", "conv2d", "batch_normalization", "flatten", "dense" } })
    assert.equal("ok positional\nok by_name\n", check_load(out, model))
    local dump = H.py(DUMP, out)
    local want = table.concat({
      "A / @backend str:vlen:ascii () 'tensorflow'",
      "A / @keras_version str:vlen:ascii () '2.15.0'",
      "A / @layer_names str:vlen:ascii (5,) ['input_1', 'conv2d', 'batch_normalization', 'flatten', 'dense']",
      "G batch_normalization",
      "A batch_normalization @weight_names str:vlen:ascii (4,) ['batch_normalization/gamma:0', "
        .. "'batch_normalization/beta:0', 'batch_normalization/moving_mean:0', 'batch_normalization/moving_variance:0']",
      "G batch_normalization/batch_normalization",
      "D batch_normalization/batch_normalization/beta:0 <f4 (4,)",
      "D batch_normalization/batch_normalization/gamma:0 <f4 (4,)",
      "D batch_normalization/batch_normalization/moving_mean:0 <f4 (4,)",
      "D batch_normalization/batch_normalization/moving_variance:0 <f4 (4,)",
      "G conv2d",
      "A conv2d @weight_names str:vlen:ascii (2,) ['conv2d/kernel:0', 'conv2d/bias:0']",
      "G conv2d/conv2d",
      "D conv2d/conv2d/bias:0 <f4 (4,)",
      "D conv2d/conv2d/kernel:0 <f4 (3, 3, 1, 4)",
      "G dense",
      "A dense @weight_names str:vlen:ascii (2,) ['dense/kernel:0', 'dense/bias:0']",
      "G dense/dense",
      "D dense/dense/bias:0 <f4 (2,)",
      "D dense/dense/kernel:0 <f4 (4, 2)",
      "G flatten",
      "A flatten @weight_names <f8 (0,) []",
      "G input_1",
      "A input_1 @weight_names <f8 (0,) []",
      "G top_level_model_weights",
      "A top_level_model_weights @weight_names <f8 (0,) []",
    }, "\n") .. "\n"
    assert.equal(want, dump)
    local back = graft.open(out)
    assert.same(order, graft.names(back))
    for _, n in ipairs(order) do assert.is_true(back[n]:equal(t[n]), n) end
  end)

  it("orders layers by opts.order, and keeps its own weight names", function()
    local out = H.tmpdir() .. "/o.h5"
    local rev = { "dense/kernel", "dense/bias", "conv2d/kernel", "conv2d/bias" }
    graft.save(out, { ["dense/kernel"] = t["dense/kernel"], ["dense/bias"] = t["dense/bias"],
      ["conv2d/kernel"] = t["conv2d/kernel"], ["conv2d/bias"] = t["conv2d/bias"] }, { order = rev })
    local m = graft.open(out)
    assert.same({ "dense", "conv2d" }, graft.meta(m).layer_names)
    assert.same(rev, graft.names(m))
  end)

  it("writes fixed-length strings on request, as Keras 2.0-2.8 did", function()
    local out = H.tmpdir() .. "/f.h5"
    graft.save(out, t, { order = order, strings = "fixed", keras_version = "2.2.4" })
    local dump = H.py(DUMP, out)
    assert.truthy(dump:find("A / @layer_names str:S19:ascii (3,) ['conv2d', 'batch_normalization', 'dense']", 1, true), dump)
    assert.truthy(dump:find("A conv2d @weight_names str:S15:ascii (2,)", 1, true))
    assert.equal("fixed", graft.meta(graft.open(out)).strings)
  end)

  it("splits a layer list too big for one object header into layer_names0, 1, ...", function()
    local big, names = {}, {}
    for i = 1, 3000 do
      local n = string.format("layer_with_a_long_name_%05d/kernel", i)
      big[n] = graft.tensor({ i }, "float32")
      names[#names + 1] = n
    end
    local out = H.tmpdir() .. "/big.h5"
    graft.save(out, big, { order = names })
    local info = H.py([[
import sys, h5py
f = h5py.File(sys.argv[1], "r")
print(sorted(k for k in f.attrs if k.startswith("layer_names")), [len(f.attrs[k]) for k in sorted(f.attrs) if k.startswith("layer_names")], f.attrs["layer_names0"].dtype)
]], out)
    assert.equal("['layer_names0', 'layer_names1'] [1500, 1500] |S28\n", info)
    local back = graft.open(out)
    assert.same(names, graft.names(back))
    local mdl = {}
    for i = 1, 3000 do mdl[i] = { name = string.format("layer_with_a_long_name_%05d", i), shapes = { { 1 } } } end
    assert.equal("ok positional\nok by_name\n", check_load(out, mdl))
  end)

  it("writes a Keras 3 .weights.h5: layers/<name>/vars/<i>", function()
    local out = H.tmpdir() .. "/model.weights.h5"
    graft.save(out, t, { order = order })
    local dump = H.py(DUMP, out)
    assert.truthy(dump:find("G layers/conv2d/vars\nA layers/conv2d/vars @name str:vlen:utf-8 () 'conv2d'\n"
      .. "D layers/conv2d/vars/0 <f4 (3, 3, 1, 4)\nD layers/conv2d/vars/1 <f4 (4,)", 1, true), dump)
    assert.truthy(dump:find("D layers/batch_normalization/vars/3 <f4 (4,)", 1, true))
    -- Without a config the layers come back in HDF5 (name) order.
    local back = graft.open(out)
    assert.equal("keras3", graft.meta(back).format)
    local got, want = graft.names(back), { table.unpack(order) }
    table.sort(got)
    table.sort(want)
    assert.same(want, got)
    for _, n in ipairs(order) do assert.is_true(back[n]:equal(t[n]), n) end
  end)

  it("puts RNN cells and Bidirectional halves at Keras 3's attribute paths, sub-models under layers/", function()
    local out = H.tmpdir() .. "/rnn.weights.h5"
    local z = function(...) return graft.zeros({ ... }) end
    graft.save(out, { ["lstm/cell/kernel"] = z(2, 8), ["bi/forward_layer/cell/kernel"] = z(2, 6),
                      ["bi/backward_layer/cell/kernel"] = z(2, 6), ["enc/dense/kernel"] = z(2, 3) },
      { order = { "lstm/cell/kernel", "bi/forward_layer/cell/kernel", "bi/backward_layer/cell/kernel",
                  "enc/dense/kernel" } })
    local dump = H.py(DUMP, out)
    for _, p in ipairs({ "D layers/lstm/cell/vars/0 <f4 (2, 8)", "D layers/bi/forward_layer/cell/vars/0 <f4 (2, 6)",
                         "D layers/bi/backward_layer/cell/vars/0 <f4 (2, 6)",
                         "D layers/enc/layers/dense/vars/0 <f4 (2, 3)" }) do
      assert.truthy(dump:find(p, 1, true), p .. "\n" .. dump)
    end
  end)

  it("turns a PyTorch state dict into the layout of real Keras files (examples/cookbook/torch_to_keras.lua)", function()
    local dir = H.tmpdir()
    H.py([[
import sys, torch, numpy as np
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Conv2d(1, 32, (10, 4)), torch.nn.BatchNorm2d(32),
                        torch.nn.Flatten(), torch.nn.Linear(16, 64))
m[1].running_mean.uniform_(); m[1].running_var.uniform_(1, 2)
sd = m.state_dict()
torch.save(sd, sys.argv[1] + "/sd.pt")
]], dir)
    local out = dir .. "/torch.h5"
    local recipe = assert(loadfile("examples/cookbook/torch_to_keras.lua"))
    recipe(dir .. "/sd.pt", out, "0=conv2d", "1=batch_normalization", "3=fc1_relu")
    -- values: torch's tensors in Keras layout
    assert.equal("ok\n", H.py([[
import sys, h5py, torch, numpy as np
sd = torch.load(sys.argv[1] + "/sd.pt")
f = h5py.File(sys.argv[1] + "/torch.h5", "r")
def eq(a, b): assert np.array_equal(np.asarray(a), b.numpy()), (a, b)
eq(f["conv2d/conv2d/kernel:0"], sd["0.weight"].permute(2, 3, 1, 0))
eq(f["conv2d/conv2d/bias:0"], sd["0.bias"])
eq(f["batch_normalization/batch_normalization/gamma:0"], sd["1.weight"])
eq(f["batch_normalization/batch_normalization/moving_variance:0"], sd["1.running_var"])
eq(f["fc1_relu/fc1_relu/kernel:0"], sd["3.weight"].t())
print("ok")
]], dir))
    -- layout: each layer group as the real Keras files have it (string
    -- storage differs by Keras version: compare the values, not the type)
    local function group_lines(dump, layer)
      local out = {}
      for l in dump:gmatch("[^\n]+") do
        local kind, path = l:match("^(%a) (%S+)")
        if path == layer or (path and path:sub(1, #layer + 1) == layer .. "/") then
          out[#out + 1] = (l:gsub("str:%S+ ", "str "))
        end
      end
      return table.concat(out, "\n")
    end
    local mine = H.py(DUMP, out)
    local gaps = H.py(DUMP, H.real("keras_h5/genomic-gaps-full-model-keras2.2.4tf/best_single.hdf5"), "model_weights")
    local three = H.py(DUMP, H.real("keras_h5/hls4ml-KERAS_3layer-weights-only-keras2.0.0/KERAS_3layer_weights.h5"))
    assert.equal(group_lines(gaps, "conv2d"), group_lines(mine, "conv2d"))
    assert.equal(group_lines(gaps, "batch_normalization"), group_lines(mine, "batch_normalization"))
    assert.equal(group_lines(three, "fc1_relu"), group_lines(mine, "fc1_relu"))
    for _, a in ipairs({ "backend", "keras_version", "layer_names" }) do
      assert.truthy(mine:find("A / @" .. a .. " ", 1, true), a)
    end
  end)
end)
