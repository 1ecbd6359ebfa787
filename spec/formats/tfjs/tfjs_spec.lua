-- TF.js model.json + .bin shards: reading (plain and quantised weights,
-- against Keras's get_weights and tfjs's own decodeWeights), writing a
-- layers model that TF.js in Node loads and predicts with as Keras does,
-- and bad manifests. Fixtures: spec/fixtures/gen_tfjs.py under the oracle
-- environment; TF.js: tools/tfjs-oracle/oracle.js with @tensorflow/tfjs from
-- .node-oracles/tfjs (tools/install-deps --test; GRAFT_TFJS_MODULES names
-- another node_modules).
local graft = require "graft"
local json = require "graft.json"
local H = require "spec.helper"

local MODULES = os.getenv("GRAFT_TFJS_MODULES") or ".node-oracles/tfjs/node_modules"

-- Run the TF.js oracle; fails (never skips) when TF.js is not installed.
local function tfjs(...)
  if not H.exists(MODULES .. "/@tensorflow/tfjs/package.json") then
    error("ORACLE MISSING: @tensorflow/tfjs not found in " .. MODULES
      .. "; run tools/install-deps --test (or set GRAFT_TFJS_MODULES)", 0)
  end
  local args = { "NODE_PATH=" .. H.q(MODULES), "node", "tools/tfjs-oracle/oracle.js" }
  for _, a in ipairs({ ... }) do args[#args + 1] = H.q(a) end
  local dir = H.tmpdir()
  local ok, _, code = os.execute(table.concat(args, " ") .. " >/dev/null 2>" .. dir .. "/err")
  if not ok then error("tfjs oracle failed (" .. tostring(code) .. "): " .. H.read(dir .. "/err"), 2) end
end

local fx
local function fixtures()
  if not fx then
    fx = H.tmpdir()
    H.oracle(H.read("spec/fixtures/gen_tfjs.py"), fx)
  end
  return fx
end

local function copy_model(src, dst)
  os.execute("mkdir -p " .. H.q(dst) .. " && cp " .. H.q(src) .. "/* " .. H.q(dst) .. "/")
  return dst .. "/model.json"
end

local function edit_manifest(file, fn)
  local doc = json.decode(H.read(file))
  fn(doc.weightsManifest[1])
  H.write(file, json.encode(doc))
end

describe("tfjs", function()
  teardown(H.cleanup)

  it("opens a tfjs-converter layout model.json equal to Keras's get_weights", function()
    local d = fixtures()
    local m = graft.open(d .. "/conv/model.json")
    local meta = graft.meta(m)
    assert.equal("tfjs", meta.format)
    assert.equal("layers-model", meta.model_format)
    assert.equal("Sequential", meta.modelTopology.class_name)
    assert.truthy(meta.generatedBy:find("^keras v2"))
    assert.equal(10, #meta.shards)
    local want = {}
    for n in H.read(d .. "/names.txt"):gmatch("[^\n]+") do want[#want + 1] = n end
    assert.same(want, graft.names(m))
    local ref = graft.open(d .. "/weights.npz")
    for _, n in ipairs(want) do
      assert.is_true(m[n]:equal(ref[n]), n)
    end
  end)

  it("dequantises uint8/uint16/float16 weights bit for bit as tfjs's decodeWeights", function()
    local d = fixtures()
    local m = graft.open(d .. "/q/model.json")
    tfjs("decode", d .. "/q/model.json", d .. "/q.json")
    local ref = json.decode(H.read(d .. "/q.json"))
    local kinds = {}
    for name, r in pairs(ref) do
      local t = m[name]
      assert.equal(r.dtype, t.dtype, name)
      assert.same(r.shape, t.shape, name)
      local want = graft.tensor(r.values, r.dtype):reshape(table.unpack(r.shape))
      assert.is_true(t:equal(want), name)
      kinds[graft.meta(m).quantization[name].dtype] = true
    end
    assert.same({ uint8 = true, uint16 = true, float16 = true }, kinds)
    assert.same({ -7, -6, -5, -4, -3 }, m.ints:totable()[1])
  end)

  it("writes a layers model from a Keras .h5 that TF.js predicts with as Keras does", function()
    local d = fixtures()
    local src = graft.open(d .. "/model.h5")
    local out = d .. "/w"
    os.execute("mkdir -p " .. H.q(out))
    graft.save(out .. "/model.json", src, { format = "tfjs", base = d .. "/model.h5", shard_size = 1000 })
    assert.truthy(H.exists(out .. "/group1-shard1of10.bin"))
    -- graft reads back what it wrote
    local back = graft.open(out .. "/model.json")
    for _, n in ipairs(graft.names(src)) do assert.is_true(back[n]:equal(src[n]), n) end
    -- TF.js loads it and predicts
    local x = graft.open(d .. "/input.npy")
    local xt = x[graft.names(x)[1]]
    H.write(d .. "/input.json", json.encode({ shape = setmetatable(xt.shape, json.array_mt),
      values = setmetatable(H.flat(xt:totable()), json.array_mt) }))
    tfjs("predict", out .. "/model.json", d .. "/input.json", d .. "/pred.json")
    local p = json.decode(H.read(d .. "/pred.json"))
    local y = graft.tensor(p.values, "float32"):reshape(table.unpack(p.shape))
    local keras = graft.open(d .. "/predict.npy")
    local k = keras[graft.names(keras)[1]]
    assert.same(k.shape, y.shape)
    assert.is_true(y:allclose(k, 1e-5, 1e-5))
  end)

  it("writes 4 MB shards by default and takes model_config as text", function()
    local d = H.tmpdir()
    local big = graft.zeros({ 1100, 1000 })  -- 4.4 MB: two shards
    local cfg = '{"class_name": "Sequential", "config": {"name": "s", "layers": ['
      .. '{"class_name": "InputLayer", "config": {"batch_input_shape": [null, 1100], "name": "in"}},'
      .. '{"class_name": "Dense", "config": {"name": "d", "units": 1000, "use_bias": false}}]}}'
    graft.save(d .. "/model.json", { ["d/kernel"] = big }, { format = "tfjs", model_config = cfg })
    assert.equal(4 * 1024 * 1024, #H.read(d .. "/group1-shard1of2.bin"))
    assert.equal(4400000 - 4 * 1024 * 1024, #H.read(d .. "/group1-shard2of2.bin"))
    local text = H.read(d .. "/model.json")
    assert.truthy(text:find('"batch_input_shape": [null, 1100]', 1, true))
    local m = graft.open(d .. "/model.json")
    assert.same({ 1100, 1000 }, m["d/kernel"].shape)
  end)

  it("refuses manifests whose sizes lie, escaping shard paths and missing shards", function()
    local d = fixtures()
    local dir = H.tmpdir()
    local p = copy_model(d .. "/conv", dir .. "/short")
    edit_manifest(p, function(g) g.weights[7].shape = { 217, 10 } end)
    assert.truthy(H.raises(function() graft.open(p) end):find("head/kernel: the manifest places it at bytes 9488..9608 but weightsManifest[1]'s 10 shard file(s) hold 9580 bytes", 1, true))
    p = copy_model(d .. "/conv", dir .. "/long")
    edit_manifest(p, function(g) g.weights[7].shape = { 215, 10 } end)
    assert.truthy(H.raises(function() graft.open(p) end):find("weights take 9540 bytes but its 10 shard file(s) hold 9580", 1, true))
    p = copy_model(d .. "/conv", dir .. "/esc")
    edit_manifest(p, function(g) g.paths[2] = "../conv/group1-shard2of10.bin" end)
    assert.truthy(H.raises(function() graft.open(p) end):find("is not a file name beside model.json", 1, true))
    p = copy_model(d .. "/conv", dir .. "/abs")
    edit_manifest(p, function(g) g.paths[1] = "/etc/passwd" end)
    assert.truthy(H.raises(function() graft.open(p) end):find("is not a file name beside model.json", 1, true))
    p = copy_model(d .. "/conv", dir .. "/miss")
    os.remove(dir .. "/miss/group1-shard3of10.bin")
    assert.truthy(H.raises(function() graft.open(p) end):find("shard group1-shard3of10.bin is missing", 1, true))
    p = copy_model(d .. "/conv", dir .. "/q")
    edit_manifest(p, function(g) g.weights[1].quantization = { dtype = "int4" } end)
    assert.truthy(H.raises(function() graft.open(p) end):find('unknown quantization dtype "int4"', 1, true))
    p = copy_model(d .. "/conv", dir .. "/neg")
    edit_manifest(p, function(g) g.weights[1].shape = { -1, 3 } end)
    assert.truthy(H.raises(function() graft.open(p) end):find("conv/kernel: dimension 1 is -1", 1, true))
  end)

  it("is detected by content and by name, ahead of the safetensors index", function()
    local d = H.tmpdir()
    H.write(d .. "/model.json", '{"weightsManifest": [{"paths": [], "weights": []}]}')
    local m = graft.open(d .. "/model.json")
    assert.equal("tfjs", graft.meta(m).format)
    assert.same({}, graft.names(m))
    H.write(d .. "/x.json", '{"format": "graph-model", "modelTopology": {}, "weightsManifest": []}')
    assert.equal("graph-model", graft.meta(graft.open(d .. "/x.json")).model_format)
  end)
end)
