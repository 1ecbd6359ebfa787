-- PyTorch files read by graft, checked against what torch itself reads from
-- the same files: spec/fixtures/gen_torch.py writes them with Debian's
-- python3-torch 1.13 into a temporary directory, with torch's own reading
-- (names, dtypes, shapes, bytes, storage sharing) in ref.json.
local graft = require "graft"
local json = require "graft.json"
local H = require "helper"

local DIR, REF

local function setup_fixtures()
  if DIR then return end
  DIR = H.tmpdir()
  H.py(H.read("spec/fixtures/gen_torch.py"), DIR)
  REF = json.decode(H.read(DIR .. "/ref.json"))
end

local function open(name, opts)
  setup_fixtures()
  return graft.open(DIR .. "/" .. name, opts)
end

-- Every tensor torch reads is in graft's table with the same dtype, shape
-- and bytes; names in torch's order unless `unordered`.
local function same_as_torch(name, opts)
  -- `unordered` is this helper's; graft.open refuses options it does not take
  local open_opts
  for k, v in pairs(opts or {}) do
    if k ~= "unordered" then open_opts = open_opts or {}; open_opts[k] = v end
  end
  local m = open(name, open_opts)
  local ref = REF[name]
  local names = graft.names(m)
  if opts and opts.unordered then
    table.sort(names)
    table.sort(ref.names)
  end
  assert.are.same(ref.names, names)
  for n, r in pairs(ref.tensors) do
    local t = m[n]
    assert.truthy(t, n)
    assert.are.equal(r.dtype, t.dtype, n)
    assert.are.same(r.shape, t.shape, n)
    assert.are.equal(r.hex, H.hex(t:bytes()), n)
  end
  for _, group in ipairs(ref.shared) do
    local first = m[group[1]]:storage_id()
    for _, n in ipairs(group) do
      assert.are.equal(first, (m[n]:storage_id()), "storage of " .. n)
    end
  end
  return m
end

describe("torch reader", function()
  it("reads a state dict of every dtype torch 1.13 saves bit-exactly", function()
    local m = same_as_torch("dtypes.pt")
    local meta = graft.meta(m)
    assert.are.equal("torch", meta.format)
    assert.are.equal("zip", meta.kind)
    assert.are.equal("dtypes", meta.archive)
    assert.are.equal("3", meta.version)
    assert.are.same({}, m.scalar.shape)
    assert.are.same({ 0, 5 }, m.empty.shape)
  end)

  it("flattens a nested checkpoint into dotted names and keeps the rest in meta", function()
    local m = same_as_torch("checkpoint.pt")
    assert.truthy(m["model.conv1.weight"])
    assert.truthy(m["optimizer.state.4.exp_avg"])
    local tree = graft.meta(m).tree
    assert.are.equal(10, tree.epoch)
    assert.are.equal(0.75, tree.best_acc)
    assert.are.same({ "a", "b" }, tree.tags)
    -- argparse.Namespace is data: its attributes
    assert.are.equal(0.01, tree.args.lr)
    assert.are.equal("net", tree.args.arch)
    assert.are.same({ 1, 2 }, tree.args.layers)
    assert.are.equal(0.01, tree.optimizer.param_groups[1].lr)
    -- tensors in the tree are the same userdata as in the table
    assert.are.equal(m["model.fc.bias"], tree.model["fc.bias"])
  end)

  it("select opens one sub-dict and strip removes a prefix", function()
    setup_fixtures()
    local m = open("checkpoint.pt", { select = "model" })
    local want = {}
    for _, n in ipairs(REF["checkpoint.pt"].names) do
      if n:sub(1, 6) == "model." then want[#want + 1] = n:sub(7) end
    end
    assert.are.same(want, graft.names(m))
    assert.are.equal("model", graft.meta(m).select)
    m = open("checkpoint.pt", { select = "optimizer.state.4" })
    assert.are.same({ "step", "exp_avg", "exp_avg_sq" }, graft.names(m))
    m = open("dataparallel.pt", { strip = "module." })
    assert.are.same(want, graft.names(m))
    local err = H.raises(function() open("checkpoint.pt", { select = "nope" }) end)
    assert.truthy(err:find("select \"nope\": no such entry", 1, true), err)
    assert.truthy(err:find("model", 1, true), err)
    -- a key without tensors selects an empty table, not an error
    m = open("checkpoint.pt", { select = "args" })
    assert.are.same({}, graft.names(m))
  end)

  it("keeps tied weights and views on one shared storage", function()
    local m = same_as_torch("tied.pt")
    assert.are.equal((m["embed.weight"]:storage_id()), (m["decoder.weight"]:storage_id()))
    assert.are.equal((m.x:storage_id()), (m.x_t:storage_id()))
    assert.are.same({ 6, 4 }, m.x_t.shape)
    assert.are.same({ 4 }, m.x_col.shape)
  end)

  it("reads permuted, sliced, offset and stride-0 views exactly", function()
    local m = same_as_torch("views.pt")
    assert.are.same({ 5, 3, 4 }, m.permuted.shape)
    assert.are.same({ 3, 5 }, m.expanded.shape)
  end)

  it("opens a whole pickled nn.Module under its state_dict names, safely", function()
    local m = same_as_torch("module.pt")
    local meta = graft.meta(m)
    assert.are.equal("torch.nn.modules.container.Sequential", meta.tree.global)
    assert.are.same({ "torch.nn.modules.activation.ReLU", "torch.nn.modules.batchnorm.BatchNorm1d",
                      "torch.nn.modules.container.Sequential", "torch.nn.modules.linear.Linear" },
                    meta.globals)
    assert.are.equal(3, meta.tree.state._modules["0"].state.in_features)
  end)

  it("reads the legacy (pre-1.6) format", function()
    local m = same_as_torch("legacy.pt")
    local meta = graft.meta(m)
    assert.are.equal("legacy", meta.kind)
    assert.are.equal(1001, meta.version)
    assert.are.equal("little", meta.byteorder)
    same_as_torch("legacy_checkpoint.pt")
  end)

  it("reads .pkl files of numpy arrays (protocols 2, 4, 5) in place", function()
    for _, p in ipairs({ 2, 4, 5 }) do
      local name = "arrays_p" .. p .. ".pkl"
      local m = same_as_torch(name)
      local meta = graft.meta(m)
      assert.are.equal("pickle", meta.kind)
      assert.are.equal(7, meta.tree.step)
      assert.are.equal(0.25, meta.tree.loss)
    end
  end)

  it("swaps the data of an archive whose byteorder record says big", function()
    local m = same_as_torch("big.pt")
    assert.are.equal("big", graft.meta(m).byteorder)
    local le = open("little.pt")
    for _, n in ipairs({ "f", "i", "h", "c" }) do
      assert.is_true(le[n]:equal(m[n]), n)
    end
  end)

  it("reads float8 and wide unsigned tensors pickled with _rebuild_tensor_v3", function()
    local m = open("float8.pt")
    for n, r in pairs(REF["float8.pt"]) do
      assert.are.equal(r.dtype, m[n].dtype, n)
      assert.are.same(r.shape, m[n].shape, n)
      assert.are.equal(r.hex, H.hex(m[n]:bytes()), n)
    end
    -- the byte layouts of docs/formats/dtypes.md#graft-dtypes / torch: e4m3fn bias 7, e5m2 bias 15
    assert.are.same({ { 1, 0.5, -2 }, { 448, 0, 2 ^ -9 } }, m.e4m3:cast("float64"):totable())
    assert.are.same({ 1, 0.5, -2, 57344 }, m.e5m2:cast("float64"):totable())
    assert.are.same({ 1, 65535, 300 }, m.u16:totable())
  end)

  it("keeps a quantized tensor as an inert placeholder", function()
    local m = open("quantized.pt")
    assert.are.same({ "plain" }, graft.names(m))
    local q = graft.meta(m).tree.q
    assert.are.equal("torch._utils._rebuild_qtensor", q.global)
    assert.are.same({ storage = "0", dtype = "qint8", numel = 4 }, q.args[1])
  end)

  it("lists the tensors of a TorchScript archive without running its code", function()
    local m = same_as_torch("scripted.pt", { unordered = true })
    local meta = graft.meta(m)
    assert.are.equal("torchscript", meta.kind)
    assert.are.equal("__torch__.Scripted", meta.tree.global)
  end)

  it("detects torch files from their bytes and honours opts.format", function()
    setup_fixtures()
    assert.are.equal("torch", graft.detect(DIR .. "/dtypes.pt"))
    assert.are.equal("torch", graft.detect(DIR .. "/legacy.pt"))
    assert.are.equal("torch", graft.detect(DIR .. "/arrays_p2.pkl"))
    assert.are.equal("torch", graft.detect(DIR .. "/scripted.pt"))
    -- a renamed archive is still torch, an .npz stays npz
    os.execute("cp " .. H.q(DIR .. "/tied.pt") .. " " .. H.q(DIR .. "/weights.data"))
    assert.are.equal("torch", graft.detect(DIR .. "/weights.data"))
    H.py("import numpy as np, sys; np.savez(sys.argv[1], a=np.zeros(2))", DIR .. "/a.npz")
    assert.are.equal("npz", graft.detect(DIR .. "/a.npz"))
    -- "pickle" is another name for the same reader
    local m = open("arrays_p4.pkl", { format = "pickle" })
    assert.truthy(m["arrays.f4"])
  end)
end)

describe("torch reader on the real files", function()
  local R = "pytorch/"

  it("candle zip tests", function()
    local m = graft.open(H.real(R .. "candle-zip-tests/test.pt"))
    assert.are.same({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } }, m.test:totable())
    m = graft.open(H.real(R .. "candle-zip-tests/test_with_key.pt"))
    assert.are.same({ { 1, 2, 3, 4 }, { 5, 6, 7, 8 } }, m["model_state_dict.test"]:totable())
    m = graft.open(H.real(R .. "candle-zip-tests/test_with_key.pt"), { select = "model_state_dict" })
    assert.are.same({ "test" }, graft.names(m))
    m = graft.open(H.real(R .. "candle-zip-tests/fortran_tensor_3d.pth"))
    local t = m.tensor_fortran
    assert.are.same({ 2, 3, 4 }, t.shape)
    local flat = H.flat(t:totable())
    for i = 1, 24 do assert.are.equal(i, flat[i]) end
    m = graft.open(H.real(R .. "candle-zip-tests/boolean.pt"))
    assert.are.same({ true, false }, m.bool:totable()[1])
    assert.are.equal(false, m.bool:totable()[2][1])
    m = graft.open(H.real(R .. "candle-zip-tests/config.pt"))
    assert.are.same({}, graft.names(m))
    local tree = graft.meta(m).tree
    assert.are.same({ some_float = 0.1, some_int = 1, some_bool = true, some_str = "hello" }, tree)
  end)

  it("torchserve bare tensor in an archive/ folder", function()
    local m = graft.open(H.real(R .. "torchserve-zip-archive-prefix-bare-tensor/0_png.pt"))
    assert.are.same({ "tensor" }, graft.names(m))
    local s = m.tensor:stats()
    assert.are.same({ 1, 28, 28 }, m.tensor.shape)
    assert.is_true(math.abs(s.min - -0.42421296) < 1e-6)
    assert.is_true(math.abs(s.max - 2.8214867) < 1e-6)
    assert.is_true(math.abs(s.mean * 784 - 46.222023) < 1e-3)
    assert.are.equal("archive", graft.meta(m).archive)
    assert.is_nil(graft.meta(m).byteorder)
  end)

  it("hls4ml legacy whole modules (cuda:0 storages, _rebuild_tensor v1)", function()
    local m = graft.open(H.real(R .. "hls4ml-legacy-whole-module/three_layer_model.pt"))
    assert.are.same({ "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias",
                      "6.weight", "6.bias" }, graft.names(m))
    assert.are.same({ 64, 16 }, m["0.weight"].shape)
    assert.are.same({ 5 }, m["6.bias"].shape)
    local w = m["0.weight"]:totable()[1]
    assert.is_true(math.abs(w[1] - 0.16981480) < 1e-7 and math.abs(w[2] - -0.27685997) < 1e-7)
    local meta = graft.meta(m)
    assert.are.equal("legacy", meta.kind)
    assert.are.equal("torch.nn.modules.container.Sequential", meta.tree.global)
    m = graft.open(H.real(R .. "hls4ml-legacy-whole-module/two_layer_model.pt"))
    assert.are.same({ "0.weight", "0.bias", "2.weight", "2.bias" }, graft.names(m))
    assert.is_true(math.abs(m["2.bias"]:totable()[1] - -0.13096614) < 1e-7)
  end)

  it("hls4ml legacy checkpoint dict", function()
    local p = H.real(R .. "hls4ml-legacy-checkpoint-dict/model_1iteration.pt")
    local m = graft.open(p)
    local tree = graft.meta(m).tree
    assert.are.equal(200, tree.epoch)
    assert.are.equal("number", type(tree.best_valid_loss))
    assert.are.equal("number", type(tree.valid_losses[1]))
    local sd = graft.open(p, { select = "state_dict" })
    assert.are.equal(10, #graft.names(sd))
    assert.are.same({ 4, 3 }, sd["input_network.0.weight"].shape)
    assert.are.same({ 4, 21 }, sd["node_network.network.0.weight"].shape)
    assert.are.same({ 1 }, sd["edge_network.network.2.bias"].shape)
    local storages, n = {}, 0
    for _, t in pairs(m) do
      local id = t:storage_id()
      if not storages[id] then storages[id] = true; n = n + 1 end
    end
    assert.are.equal(30, n)
  end)

  it("torchserve legacy iris state dict", function()
    local m = graft.open(H.real(R .. "torchserve-pr418-legacy-iris-state_dict/iris.pt"))
    assert.are.same({ "Linear.weight" }, graft.names(m))
    local want = { 0.37159589, 1.02998209, -1.44352567, -0.51531374, 0.32225782, -0.33051413,
                   0.05906077, -0.30442503, -0.30130568, -1.13069141, 1.03624797, 0.64413726 }
    local got = H.flat(m["Linear.weight"]:totable())
    for i = 1, 12 do assert.is_true(math.abs(got[i] - want[i]) < 1e-7, i) end
  end)

  it("tch-rs TorchScript archive: tensors listed, __torch__.Foo inert", function()
    local m = graft.open(H.real(R .. "tch-rs-torchscript/foo.pt"))
    assert.are.same({ "value" }, graft.names(m))
    assert.are.same({ 42 }, m.value:totable())
    local meta = graft.meta(m)
    assert.are.equal("torchscript", meta.kind)
    assert.are.same({ "__torch__.Foo" }, meta.globals)
  end)
end)
