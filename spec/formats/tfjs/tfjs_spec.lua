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

-- A model.json over hand-made shards: files maps shard name -> bytes,
-- groups is the weightsManifest (a Lua list of {paths, weights}).
local function hand_model(dir, files, groups)
  for name, bytes in pairs(files) do H.write(dir .. "/" .. name, bytes) end
  for _, g in ipairs(groups) do
    setmetatable(g.paths, json.array_mt)
    setmetatable(g.weights, json.array_mt)
    for _, w in ipairs(g.weights) do setmetatable(w.shape, json.array_mt) end
  end
  H.write(dir .. "/model.json", json.encode({ format = "graph-model",
    weightsManifest = setmetatable(groups, json.array_mt) }))
  return dir .. "/model.json"
end

-- Overwrites a file's bytes in place (same inode, so a mapping sees them).
local function overwrite(path, bytes)
  local f = assert(io.open(path, "r+b"))
  f:write(bytes)
  f:close()
end

local function floats(...) return string.pack("<" .. string.rep("f", select("#", ...)), ...) end

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

  it("rewrites a model as one set: old shards go, a failed save leaves the old model whole", function()
    local d = H.tmpdir()
    local cfg = '{"class_name": "Sequential", "config": {"name": "s", "layers": ['
      .. '{"class_name": "InputLayer", "config": {"batch_input_shape": [null, 30], "name": "in"}},'
      .. '{"class_name": "Dense", "config": {"name": "d", "units": 10, "use_bias": false}}]}}'
    local w = H.iota({ 30, 10 })  -- 1200 bytes
    local p = d .. "/model.json"
    graft.save(p, { ["d/kernel"] = w }, { format = "tfjs", model_config = cfg, shard_size = 500 })
    assert.truthy(H.read(d .. "/group1-shard3of3.bin"))
    -- fewer shards: the three old ones are removed, the new one is read
    graft.save(p, { ["d/kernel"] = w * 2 }, { format = "tfjs", model_config = cfg })
    for i = 1, 3 do
      assert.is_nil(io.open(d .. "/group1-shard" .. i .. "of3.bin", "rb"))
    end
    assert.is_true(graft.open(p)["d/kernel"]:equal(w * 2))
    -- a save that fails part way (model.json's temporary name is taken by
    -- a folder, so the shards are written and the index is not): the model
    -- on disk stays the previous one, no temporary file is left
    assert.is_true(os.execute("mkdir " .. H.q(p .. ".graft-tmp")))
    local ok, err = pcall(graft.save, p, { ["d/kernel"] = w * 3 },
      { format = "tfjs", model_config = cfg, shard_size = 500 })
    assert.is_false(ok)
    assert.matches("graft: ", err, 1, true)
    os.remove(p .. ".graft-tmp")
    assert.is_true(graft.open(p)["d/kernel"]:equal(w * 2))
    for name in io.popen("ls -a " .. H.q(d)):lines() do
      assert.is_nil(name:find("graft%-tmp"), name)
    end
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

  it("opens the manifest, not the shards: a shard rewritten after open gives its new values", function()
    -- w lies in a.bin, span crosses a.bin / b.bin, q (uint8) and h
    -- (float16) in b.bin: views, a lazy gather, lazy dequantisation, a
    -- lazy cast. Had open read the shards, the old values would show.
    local d = H.tmpdir()
    local p = hand_model(d, { ["a.bin"] = floats(1, 2, 3, 4, 5, 6),
                              ["b.bin"] = floats(7) .. "\1\2\3\4" .. "\0\60\0\64" },
      { { paths = { "a.bin", "b.bin" }, weights = {
        { name = "w", shape = { 2, 2 }, dtype = "float32" },
        { name = "span", shape = { 3 }, dtype = "float32" },
        { name = "q", shape = { 4 }, dtype = "float32",
          quantization = { dtype = "uint8", scale = 0.5, min = -1 } },
        { name = "h", shape = { 2 }, dtype = "float32", quantization = { dtype = "float16" } } } } })
    local m = graft.open(p)
    assert.same({ "w", "span", "q", "h" }, graft.names(m))
    assert.same({ "a.bin", "b.bin" }, graft.meta(m).shards)
    overwrite(d .. "/a.bin", floats(10, 20, 30, 40, 50, 60))
    -- float16 0x3E00 = 1.5, 0xC000 = -2
    overwrite(d .. "/b.bin", floats(70) .. "\10\20\30\40" .. "\0\62\0\192")
    assert.same({ { 10, 20 }, { 30, 40 } }, m.w:totable())
    assert.same({ 50, 60, 70 }, m.span:totable())
    assert.same({ 4, 9, 14, 19 }, m.q:totable())
    assert.same({ 1.5, -2 }, m.h:totable())
    assert.equal("float32", m.h.dtype)
  end)

  it("opens a 128 MiB model in a few MiB: no shard data is read (measured in a subprocess)", function()
    -- Sparse shards (no disk blocks): a 64 MiB float32 weight and a
    -- 64 Mi-element uint8-quantised one (256 MiB once dequantised).
    local d = H.tmpdir()
    for _, name in ipairs({ "a.bin", "b.bin" }) do
      local f = assert(io.open(d .. "/" .. name, "wb"))
      f:seek("set", 64 * 1024 * 1024 - 1)
      f:write("\0")
      f:close()
    end
    local p = hand_model(d, {}, { { paths = { "a.bin", "b.bin" }, weights = {
      { name = "big", shape = { 4096, 4096 }, dtype = "float32" },
      { name = "q", shape = { 8192, 8192 }, dtype = "float32",
        quantization = { dtype = "uint8", scale = 0.25, min = 0 } } } } })
    local code = 'package.path = "lua/?.lua;lua/?/init.lua;" .. package.path; '
      .. 'package.cpath = "build/?.so;" .. package.cpath; '
      .. 'local g = require "graft"; local c = require "graft.core"; '
      .. 'collectgarbage(); local r0 = c.maxrss(); '
      .. 'local m = g.open(' .. string.format("%q", p) .. '); '
      .. 'print(#g.names(m), m.big.nbytes + m.q.nbytes, c.maxrss() - r0)'
    local f = io.popen("lua5.4 -e " .. H.q(code) .. " 2>&1")
    local out = f:read("a")
    f:close()
    local n, bytes, rss = out:match("^(%d+)\t(%d+)\t(%d+)")
    assert.equal("2", n, out)
    assert.equal(64 * 2 ^ 20 + 256 * 2 ^ 20, tonumber(bytes))
    assert.is_true(tonumber(rss) < 16 * 2 ^ 20, "open grew the RSS by " .. tostring(rss) .. " bytes")
  end)

  it("dequantises as tfjs's decodeWeights at the edges: ties, wrap-around, spans", function()
    -- int32 from uint8: Math.round of q * scale + min (x.5 ties up; the
    -- double just under 0.5 rounds to 0, where floor(x + 0.5) gives 1),
    -- stored into an Int32Array (modulo 2^32); uint16 values and a float16
    -- weight split across shard files at odd offsets.
    local d = H.tmpdir()
    local q8 = string.char(0, 1, 2, 3, 4, 5, 254, 255)
    local q16 = string.pack("<" .. string.rep("I2", 6), 0, 1, 257, 32768, 65534, 65535)
    local h = string.pack("<" .. string.rep("I2", 4), 0x3C00, 0x0001, 0x7BFF, 0x8400)
    local all = q8 .. q8 .. q8 .. q16 .. q16 .. h
    local p = hand_model(d, { ["x1.bin"] = all:sub(1, 13), ["x2.bin"] = all:sub(14, 41),
                              ["x3.bin"] = all:sub(42) },
      { { paths = { "x1.bin", "x2.bin", "x3.bin" }, weights = {
        { name = "ties", shape = { 8 }, dtype = "int32",
          quantization = { dtype = "uint8", scale = 0.5, min = -1.5 } },
        { name = "under", shape = { 8 }, dtype = "int32",
          quantization = { dtype = "uint8", scale = 0.49999999999999994, min = 0 } },
        { name = "wrap", shape = { 2, 4 }, dtype = "int32",
          quantization = { dtype = "uint8", scale = 3e7, min = -2e9 } },
        { name = "u16", shape = { 6 }, dtype = "float32",
          quantization = { dtype = "uint16", scale = 1.2345e-5, min = -0.3 } },
        { name = "u16i", shape = { 3, 2 }, dtype = "int32",
          quantization = { dtype = "uint16", scale = 0.001, min = -32.5 } },
        { name = "h", shape = { 4 }, dtype = "float32", quantization = { dtype = "float16" } } } } })
    local m = graft.open(p)
    tfjs("decode", p, d .. "/ref.json")
    local ref = json.decode(H.read(d .. "/ref.json"))
    for _, name in ipairs({ "ties", "under", "wrap", "u16", "u16i", "h" }) do
      local r = ref[name]
      assert.equal(r.dtype, m[name].dtype, name)
      assert.same(r.shape, m[name].shape, name)
      local want = graft.tensor(r.values, r.dtype):reshape(table.unpack(r.shape))
      assert.is_true(m[name]:equal(want), name)
    end
    assert.equal(0, m.under:totable()[2])
  end)

  it("keeps string weights in graft.meta and refuses their lengths past the shards", function()
    local d = H.tmpdir()
    local s = string.pack("<s4s4s4", "ab", "", "xyz")
    local p = hand_model(d, { ["s.bin"] = s .. floats(1.5) },
      { { paths = { "s.bin" }, weights = { { name = "words", shape = { 3 }, dtype = "string" },
                                          { name = "x", shape = { 1 }, dtype = "float32" } } } })
    local m = graft.open(p)
    assert.same({ "x" }, graft.names(m))
    assert.same({ "ab", "", "xyz" }, graft.meta(m).strings.words)
    assert.same({ 1.5 }, m.x:totable())
    p = hand_model(d, { ["s.bin"] = s }, { { paths = { "s.bin" }, weights = {
      { name = "words", shape = { 4 }, dtype = "string" } } } })
    assert.truthy(H.raises(function() graft.open(p) end):find("words: string lengths run past the shards", 1, true))
  end)

  it("refuses malformed manifests, naming the weight or group", function()
    local d = H.tmpdir()
    local function refuses(weights, want, paths)
      local p = hand_model(d, { ["a.bin"] = floats(1, 2, 3, 4) },
        { { paths = paths or { "a.bin" }, weights = weights } })
      local err = H.raises(function() graft.open(p) end)
      assert.truthy(err:find(want, 1, true), err)
      assert.truthy(err:find("^graft: " .. p:gsub("%p", "%%%0") .. ": "), err)
    end
    local f4 = { { name = "x", shape = { 4 }, dtype = "float32" } }
    refuses(f4, 'shard path ".." is not a file name beside model.json', { ".." })
    refuses(f4, 'shard path "a\\b.bin" is not a file name beside model.json', { "a\\b.bin" })
    refuses(f4, 'shard path "" is not a file name beside model.json', { "" })
    refuses({ { name = "x", shape = { 4 }, dtype = "uint8" } }, 'x: unknown dtype "uint8"')
    refuses({ { name = "x", shape = { 4 }, dtype = "float64" } }, 'x: unknown dtype "float64"')
    refuses({ { name = "x", shape = { 1.5 }, dtype = "float32" } }, "x: dimension 1 is 1.5, not a size")
    refuses({ { name = "x", shape = { 2 ^ 40, 2 ^ 40 }, dtype = "float32" } }, "x: shape too large")
    refuses({ { name = "x", shape = { 2 ^ 26, 2 ^ 26 }, dtype = "float32" } },
      "x: the manifest places it at bytes 0..18014398509481984 but weightsManifest[1]'s 1 shard file(s) hold 16 bytes")
    refuses({ { name = "x", shape = { 2 }, dtype = "float32" }, { name = "x", shape = { 2 }, dtype = "float32" } },
      "x: two weights have this name")
    refuses({ { name = "x", shape = { 16 }, dtype = "int32", quantization = { dtype = "float16" } } },
      "x: float16 quantization needs dtype float32, not int32")
    refuses({ { name = "x", shape = { 16 }, dtype = "bool", quantization = { dtype = "uint8", scale = 1, min = 0 } } },
      "x: dtype bool cannot be quantized")
    refuses({ { name = "x", shape = { 16 }, dtype = "float32", quantization = { dtype = "uint8", min = 0 } } },
      "x: uint8 quantization needs numbers `scale` and `min`")
    local many = {}
    for i = 1, 33 do many[i] = 1 end
    refuses({ { name = "x", shape = many, dtype = "float32" } }, "x: more than 32 dimensions")
    os.execute("mkdir -p " .. H.q(d .. "/sub"))
    refuses(f4, "weightsManifest[1]: shard sub: not a regular file", { "sub" })
  end)
end)
