-- ONNX models and TensorProto files: the real fixtures open as MANIFEST.md
-- states; python-onnx (numpy_helper.to_array, oracle environment) decodes
-- the same values bit for bit for every data type, raw and typed; patched
-- models keep every byte they do not change, pass onnx.checker and run in
-- onnxruntime with torch's outputs; external data written by graft loads
-- in onnx and onnxruntime.
local graft = require "graft"
local H = require "helper"

local GEN = "spec/fixtures/onnx_oracle.py"
local R3 = "onnx/hls4ml-three-layer/"
local CONV = "onnx/onnx-pytorch-converted-test_Conv2d/"
local SQUEEZE = "onnx/onnx-light-squeezenet/"
local NODE = "onnx_tensorproto/onnx-node-"

local function shape(t) return table.concat(t.shape, "x") end

-- What graft holds for tensor t, in the oracle's dump notation.
local function graft_hex(t)
  if t.dtype == "string" then
    local parts = {}
    for i, s in ipairs(H.flat(t:totable())) do parts[i] = H.hex(s) end
    return table.concat(parts, ",")
  end
  return H.hex(t:bytes())
end

-- file -> name -> {type, shape, hex} from the oracle's dump of files.
local function dump(files)
  local out = H.oracle("import runpy, sys\nsys.argv = ['x'] + sys.argv[1:]\n"
    .. "runpy.run_path(" .. string.format("%q", GEN) .. ", run_name='__main__')\n",
    "dump", table.unpack(files))
  local by = {}
  for line in out:gmatch("[^\n]+") do
    local file, name, code, shp, hex = line:match("^(.-)\t(.-)\t(%d+)\t(.-)\t(.*)$")
    by[file] = by[file] or { order = {} }
    by[file][name] = { code = tonumber(code), shape = shp, hex = hex }
    table.insert(by[file].order, name)
  end
  return by
end

-- t's values times k, same dtype.
local function scaled(t, k)
  local function map(v)
    if type(v) == "table" then
      local o = {}
      for i, x in ipairs(v) do o[i] = map(x) end
      return o
    end
    return v * k
  end
  return graft.tensor(map(t:totable()), t.dtype)
end

local function gen(cmd, ...)
  return H.oracle("import runpy, sys\nsys.argv = ['x'] + sys.argv[1:]\n"
    .. "runpy.run_path(" .. string.format("%q", GEN) .. ", run_name='__main__')\n", cmd, ...)
end

-- graft lists tensors in file order (a graph's nodes may come before its
-- initializers); the oracle lists initializers, then Constants.
local function sorted(t)
  local c = { table.unpack(t) }
  table.sort(c)
  return c
end

local function agree(path, ref)
  local m = graft.open(path)
  assert.truthy(ref, path .. ": the oracle dumped nothing")
  assert.same(sorted(ref.order), sorted(graft.names(m)), path)
  for _, n in ipairs(ref.order) do
    local t = m[n]
    assert.equal(ref[n].shape, shape(t), path .. " " .. n .. " shape")
    assert.equal(ref[n].hex, graft_hex(t), path .. " " .. n .. " values")
  end
  return m
end

describe("ONNX real fixtures", function()
  after_each(H.cleanup)

  it("open as MANIFEST.md states", function()
    local m = graft.open(H.real(R3 .. "three_layer_pytorch.onnx"))
    local meta = graft.meta(m)
    assert.equal("onnx", meta.format)
    assert.equal(3, meta.ir_version)
    assert.equal("pytorch", meta.producer_name)
    assert.equal("0.3", meta.producer_version)
    assert.same({ { domain = "", version = 6 } }, meta.opset_import)
    assert.same({ "1", "2", "3", "4", "5", "6", "7", "8" }, graft.names(m))
    local shapes = { "64x16", "64", "32x64", "32", "32x32", "32", "5x32", "5" }
    for i, n in ipairs(graft.names(m)) do
      assert.equal(shapes[i], shape(m[n]))
      assert.equal("float32", m[n].dtype)
      assert.equal("FLOAT", meta.data_types[n])
    end
    -- ir_version 3: the initializers are graph inputs too
    local inputs = {}
    for _, v in ipairs(meta.inputs) do inputs[v.name] = v end
    assert.same({ 64, 16 }, inputs["1"].shape)
    assert.equal("FLOAT", inputs["1"].dtype)

    m = graft.open(H.real(R3 .. "three_layer_keras.onnx"))
    meta = graft.meta(m)
    assert.equal("OnnxMLTools", meta.producer_name)
    assert.same({ "W", "B", "W1", "B1", "W2", "B2", "W3", "B3" }, graft.names(m))
    assert.equal("16x64", shape(m.W))
    assert.equal(7, meta.opset_import[1].version)

    m = graft.open(H.real(SQUEEZE .. "light_squeezenet.onnx"))
    meta = graft.meta(m)
    assert.equal("onnx-caffe2", meta.producer_name)
    assert.equal(9, meta.opset_import[1].version)
    local floats, ints = 0, 0
    for _, n in ipairs(graft.names(m)) do
      if m[n].dtype == "float32" then floats = floats + 1 end
      if m[n].dtype == "int64" and n:match("__SHAPE$") then ints = ints + 1 end
    end
    assert.equal(52, #graft.names(m))
    assert.equal(13, floats)
    assert.equal(39, ints)

    local out = graft.open(H.real(SQUEEZE .. "light_squeezenet_output_0.pb"))
    assert.equal("onnx_tensor", graft.meta(out).format)
    assert.equal("1x1000x1x1", shape(out.tensor))
    local s = out.tensor:stats()
    assert.is_true(math.abs(s.mean - 0.001) < 1e-6)

    m = graft.open(H.real(CONV .. "model.onnx"))
    assert.same({ "1", "2" }, graft.names(m))
    assert.equal("4x3x3x2", shape(m["1"]))
    local x = graft.open(H.real(CONV .. "test_data_set_0/input_0.pb"))
    assert.equal("2x3x7x5", shape(x.tensor))
    assert.equal("2x4x5x4", shape(graft.open(H.real(CONV .. "test_data_set_0/output_0.pb")).tensor))
    -- a TensorFlow GraphDef .pb still opens as one
    for _, g in ipairs({ "tf_graphdef/tf2onnx-regression/frozen.pb", "tf_graphdef/tf2onnx-lstm/frozen.pb" }) do
      assert.equal("graphdef", graft.detect(H.real(g)))
    end
    assert.equal("onnx_tensor", graft.detect(H.real(CONV .. "test_data_set_0/input_0.pb")))
    assert.equal("onnx", graft.detect(H.real(CONV .. "model.onnx")))
  end)

  it("reads the node tests' TensorProtos: bfloat16, float16, float8, int4, bool, string", function()
    local function one(rel)
      local m = graft.open(H.real(NODE .. rel))
      local n = graft.names(m)
      assert.equal(1, #n)
      return m[n[1]], graft.meta(m)
    end
    local t = one("test_cast_FLOAT_to_BFLOAT16/test_data_set_0/output_0.pb")
    assert.equal("bfloat16", t.dtype)
    assert.equal("3x4", shape(t))
    assert.same({ 0.478515625, 0.48046875 }, { H.flat(t:float():totable())[1], H.flat(t:float():totable())[2] })
    t = one("test_cast_FLOAT_to_FLOAT16/test_data_set_0/output_0.pb")
    assert.equal("float16", t.dtype)
    t = one("test_cast_FLOAT_to_FLOAT8E4M3FN/test_data_set_0/output_0.pb")
    assert.equal("float8_e4m3fn", t.dtype)
    assert.equal("2f2f30352f347e007f7e7efe8000fe", H.hex(t:bytes()))
    local meta
    t, meta = one("test_cast_FLOAT_to_INT4/test_data_set_0/output_0.pb")
    assert.equal("int8", t.dtype)
    assert.equal("5x5", shape(t))
    assert.equal("INT4", meta.data_type)
    assert.truthy(meta.notes[1]:find("INT4 read as int8", 1, true))
    -- 87 a9 ...: low nibble first
    assert.same({ 7, -8, -7, -6, -5 }, { table.unpack(H.flat(t:totable()), 1, 5) })
    t = one("test_bitcast_bool_to_uint8/test_data_set_0/input_0.pb")
    assert.equal("bool", t.dtype)
    assert.same({ 1, 0, 1, 0 }, H.flat(t:cast("uint8"):totable()))
    t = one("test_ai_onnx_ml_label_encoder_string_int/test_data_set_0/input_0.pb")
    assert.equal("string", t.dtype)
    assert.same({ "a", "b", "d", "c" }, { table.unpack(H.flat(t:totable()), 1, 4) })
    t = one("test_ai_onnx_ml_label_encoder_string_int/test_data_set_0/output_0.pb")
    assert.equal("int64", t.dtype)
    assert.same({ 0, 1, 42, 2 }, { table.unpack(H.flat(t:totable()), 1, 4) })
  end)

  it("decode every value as python-onnx does (numpy_helper.to_array)", function()
    local files = {
      H.real(R3 .. "three_layer_pytorch.onnx"), H.real(R3 .. "three_layer_keras.onnx"),
      H.real(SQUEEZE .. "light_squeezenet.onnx"), H.real(SQUEEZE .. "light_squeezenet_output_0.pb"),
      H.real(CONV .. "model.onnx"), H.real(CONV .. "test_data_set_0/input_0.pb"),
      H.real(CONV .. "test_data_set_0/output_0.pb"),
    }
    for _, test in ipairs({ "ai_onnx_ml_label_encoder_string_int", "bitcast_bool_to_uint8",
                            "cast_FLOAT_to_BFLOAT16", "cast_FLOAT_to_FLOAT16",
                            "cast_FLOAT_to_FLOAT8E4M3FN", "cast_FLOAT_to_INT4" }) do
      for _, f in ipairs({ "model.onnx", "test_data_set_0/input_0.pb", "test_data_set_0/output_0.pb" }) do
        files[#files + 1] = H.real(NODE .. "test_" .. test .. "/" .. f)
      end
    end
    local ref = dump(files)
    for _, f in ipairs(files) do
      local ok, err = pcall(agree, f, ref[f] or { order = {} })
      assert(ok, err)
    end
  end)

  it("hold the hls4ml Keras weights: three_layer_keras.onnx equals the Keras .h5 bit for bit", function()
    local o = graft.open(H.real(R3 .. "three_layer_keras.onnx"))
    local k = graft.open(H.real("keras_h5/hls4ml-KERAS_3layer-weights-only-keras2.0.0/KERAS_3layer_weights.h5"))
    local pairs_ = { W = "fc1_relu/kernel", B = "fc1_relu/bias", W1 = "fc2_relu/kernel",
                     B1 = "fc2_relu/bias", W2 = "fc3_relu/kernel", B2 = "fc3_relu/bias",
                     W3 = "output_softmax/kernel", B3 = "output_softmax/bias" }
    for on, kn in pairs(pairs_) do
      assert.same(k[kn].shape, o[on].shape, on)
      assert.equal(H.hex(k[kn]:bytes()), H.hex(o[on]:bytes()), on .. " vs " .. kn)
    end
  end)
end)

describe("ONNX data types", function()
  after_each(H.cleanup)

  it("every type, raw_data and typed field, equals numpy_helper.to_array; external data too", function()
    local dir = H.tmpdir()
    gen("types", dir)
    local files = { dir .. "/types.onnx", dir .. "/ext/ext.onnx" }
    local ref = dump(files)
    local m = agree(files[1], ref[files[1]])
    local meta = graft.meta(m)
    assert.same({ "const_out" }, meta.constants)
    assert.equal("int8", m.raw_INT4.dtype)
    assert.equal("uint8", m.typed_FLOAT8E4M3FNUZ.dtype)
    assert.equal("float8_e5m2", m.raw_FLOAT8E5M2.dtype)
    assert.equal("complex64", m.typed_COMPLEX64.dtype)
    local e = agree(files[2], ref[files[2]])
    local em = graft.meta(e)
    assert.equal("ext.bin", em.external.big.location)
    assert.equal(64 * 64 * 4, em.external.big.length)
    assert.is_nil(em.external.small)
  end)
end)

describe("ONNX writing", function()
  after_each(H.cleanup)

  it("patching with the same values reproduces the model byte for byte (raw and typed)", function()
    local dir = H.tmpdir()
    for _, rel in ipairs({ R3 .. "three_layer_pytorch.onnx", R3 .. "three_layer_keras.onnx",
                           SQUEEZE .. "light_squeezenet.onnx" }) do
      local src = H.real(rel)
      local m = graft.open(src)
      local out = dir .. "/same.onnx"
      graft.save(out, m, { base = src })
      assert.equal(H.hex(H.read(src)), H.hex(H.read(out)), rel)
    end
    gen("types", dir)
    local m = graft.open(dir .. "/types.onnx")
    graft.save(dir .. "/types2.onnx", m, { base = dir .. "/types.onnx" })
    assert.equal(H.read(dir .. "/types.onnx"), H.read(dir .. "/types2.onnx"))
  end)

  it("replaces and adds initializers; python-onnx reads the new values, other bytes kept", function()
    local dir = H.tmpdir()
    gen("types", dir)
    local src = dir .. "/types.onnx"
    local m = graft.open(src)
    local new = {
      typed_FLOAT = scaled(m.typed_FLOAT, 2), raw_FLOAT = scaled(m.raw_FLOAT, 3),
      typed_INT4 = graft.tensor({ { -8, 7, 0 }, { 1, -1, 3 } }, "int8"),
      raw_UINT4_5 = graft.tensor({ 15, 0, 1, 2, 3 }, "uint8"),
      -- graft.tensor makes no strings: a real string tensor of 5
      typed_STRING_5 = graft.open(H.real(NODE .. "test_ai_onnx_ml_label_encoder_string_int/"
        .. "test_data_set_0/input_0.pb")).X,
      typed_FLOAT16 = m.typed_FLOAT16:float():cast("float16"),
      const_out = graft.tensor({ 7.5, 8.5 }, "float32"),
      added = graft.tensor({ { 1, 2 }, { 3, 4 } }, "int32"),
    }
    graft.save(dir .. "/out.onnx", new, { base = src })
    local ref = dump({ dir .. "/out.onnx" })[dir .. "/out.onnx"]
    local back = agree(dir .. "/out.onnx", ref)
    assert.equal("added", ref.order[#ref.order - 1]) -- the last initializer
    assert.equal(H.hex(scaled(m.typed_FLOAT, 2):bytes()), H.hex(back.typed_FLOAT:bytes()))
    assert.same({ -8, 7, 0, 1, -1, 3 }, H.flat(back.typed_INT4:totable()))
    assert.same({ 15, 0, 1, 2, 3 }, H.flat(back.raw_UINT4_5:totable()))
    assert.same({ 7.5, 8.5 }, H.flat(back.const_out:totable()))
    assert.same({ 1, 2, 3, 4 }, H.flat(back.added:totable()))
    assert.same({ "a", "b", "d", "c" }, { table.unpack(H.flat(back.typed_STRING_5:totable()), 1, 4) })
    assert.equal(H.hex(m.typed_FLOAT:bytes()), H.hex(graft.open(src).typed_FLOAT:bytes()))
    -- tensors not given are unchanged
    assert.equal(H.hex(m.raw_DOUBLE:bytes()), H.hex(back.raw_DOUBLE:bytes()))
  end)

  it("refuses a wrong dtype or shape, out-of-range 4-bit values, and writing over the base", function()
    local dir = H.tmpdir()
    local src = H.real(R3 .. "three_layer_keras.onnx")
    local m = graft.open(src)
    local err = H.raises(function()
      graft.save(dir .. "/o.onnx", { W = m.W:double() }, { base = src })
    end)
    assert.truthy(err:find('initializer "W": the model holds FLOAT (read as float32), the tensor is float64', 1, true), err)
    err = H.raises(function() graft.save(dir .. "/o.onnx", { W = m.W:t() }, { base = src }) end)
    assert.truthy(err:find("the model has shape [16,64], the tensor [64,16]", 1, true), err)
    err = H.raises(function() graft.save(dir .. "/o.onnx", { W = m.W }) end)
    assert.truthy(err:find("pass opts.base", 1, true), err)
    gen("types", dir)
    err = H.raises(function()
      graft.save(dir .. "/o.onnx", { raw_INT4 = graft.tensor({ { 8, 0, 0 }, { 0, 0, 0 } }, "int8") },
                 { base = dir .. "/types.onnx" })
    end)
    assert.truthy(err:find("element 0 is 8, outside the range of INT4 [-8, 7]", 1, true), err)
    local cp = dir .. "/copy.onnx"
    H.write(cp, H.read(src))
    err = H.raises(function() graft.save(cp, { W = m.W }, { base = cp }) end)
    assert.truthy(err:find("refusing to overwrite", 1, true), err)
    assert.is_nil(io.open(dir .. "/o.onnx"))
  end)

  it("torch recipe: weights from a torch state dict into a torch-exported model; onnxruntime agrees with torch", function()
    local dir = H.tmpdir()
    gen("torch", dir)
    -- the recipe: the state dict's names are the exporter's initializer names
    local sd = graft.open(dir .. "/weights.pt")
    local model = graft.open(dir .. "/model.onnx")
    local ok, report = graft.check(sd, model, { strict = true })
    assert.is_true(ok, require("graft.json").encode(report))
    -- provenance goes to metadata_props: added to the exporter's entry,
    -- then (ext.onnx, patched from patched.onnx) the same keys replaced
    local p1 = graft.provenance.make({ dir .. "/weights.pt" }, GEN)
    local p2 = graft.provenance.make({ dir .. "/weights.pt", dir .. "/model.onnx" })
    graft.save(dir .. "/patched.onnx", sd, { base = dir .. "/model.onnx", provenance = p1 })
    graft.save(dir .. "/ext.onnx", sd, { base = dir .. "/patched.onnx", external_data = "ext.weights",
                                         external_threshold = 0, provenance = p2 })
    -- the CLI records one by default
    local _, err, code = H.graft("convert", dir .. "/weights.pt", dir .. "/cli.onnx",
                                 "--base", dir .. "/model.onnx")
    assert.equal(0, code, err)
    local out = gen("check", dir, dir .. "/patched.onnx", dir .. "/ext.onnx", dir .. "/cli.onnx")
    local by, cur = {}, nil
    for line in out:gmatch("[^\n]+") do
      local m = line:match("^model (.*)$")
      if m then cur = { props = {}, ort = {} }; by[m:match("[^/]*$")] = cur end
      local r = line:match("^maxrel (%S+)")
      if r then cur.rel = tonumber(r) end
      local l = line:match("^locations (.*)$")
      if l then cur.loc = l end
      local kind, k, v = line:match("^(%a+)\t(.-)\t(.*)$")
      if kind == "prop" then cur.props[#cur.props + 1] = k .. "=" .. v end
      if kind == "ort" then cur.ort[k] = v end
    end
    for _, f in ipairs({ "patched.onnx", "ext.onnx", "cli.onnx" }) do
      assert.truthy(by[f] and by[f].rel, out)
      assert.is_true(by[f].rel <= 1e-5, out)
    end
    assert.equal("", by["patched.onnx"].loc)
    assert.equal("ext.weights", by["ext.onnx"].loc)
    local function props(p)
      local l = { "exported_by=onnx_oracle.py" }
      for _, k in ipairs({ "graft.recipe_sha256", "graft.sources", "graft.version" }) do
        if p[k] then l[#l + 1] = k .. "=" .. p[k] end
      end
      return l
    end
    assert.same(sorted(props(p1)), sorted(by["patched.onnx"].props))
    assert.same(sorted(props(p2)), sorted(by["ext.onnx"].props))
    assert.equal("exported_by=onnx_oracle.py", by["ext.onnx"].props[1]) -- kept in place
    for _, f in ipairs({ "patched.onnx", "ext.onnx" }) do
      local want = {}
      for _, kv in ipairs(by[f].props) do
        local k, v = kv:match("^(.-)=(.*)$")
        want[k] = v
      end
      assert.same(want, by[f].ort)
    end
    assert.equal(graft.version, by["cli.onnx"].ort["graft.version"])
    assert.truthy(by["cli.onnx"].ort["graft.sources"]:find('"weights.pt"', 1, true))
    -- graft ls shows the metadata_props
    local ls = H.graft("ls", dir .. "/patched.onnx")
    assert.truthy(ls:find("  exported_by = onnx_oracle.py\n", 1, true), ls)
    assert.truthy(ls:find("  graft.sources = " .. p1["graft.sources"] .. "\n", 1, true), ls)
    local js = require("graft.json").decode(H.graft("ls", dir .. "/cli.onnx", "--json"))
    assert.equal(by["cli.onnx"].ort["graft.sources"], js.metadata["graft.sources"])
    -- the external copy reads back the same through graft
    local e = graft.open(dir .. "/ext.onnx")
    for _, n in ipairs(graft.names(sd)) do
      assert.equal(H.hex(sd[n]:bytes()), H.hex(e[n]:bytes()), n)
    end
    assert.equal("ext.weights", graft.meta(e).external["fc1.weight"].location)
  end)

  it("moves a base's external data into the output (inline, or into a new file)", function()
    local dir = H.tmpdir()
    gen("types", dir)
    local src = dir .. "/ext/ext.onnx"
    local m = graft.open(src)
    graft.save(dir .. "/inline.onnx", { small = graft.tensor({ 1, 2, 3 }, "int64") }, { base = src })
    local i = graft.open(dir .. "/inline.onnx")
    assert.is_nil(graft.meta(i).external)
    assert.equal(H.hex(m.big:bytes()), H.hex(i.big:bytes()))
    graft.save(dir .. "/moved.onnx", {}, { base = src, external_data = "moved.bin" })
    local ref = dump({ dir .. "/inline.onnx", dir .. "/moved.onnx" })
    agree(dir .. "/inline.onnx", ref[dir .. "/inline.onnx"])
    local mv = agree(dir .. "/moved.onnx", ref[dir .. "/moved.onnx"])
    assert.equal("moved.bin", graft.meta(mv).external.big.location)
    assert.equal(0, graft.meta(mv).external.big.offset)
  end)

  it("works with graft ls, show, convert and diff", function()
    local dir = H.tmpdir()
    local src = H.real(R3 .. "three_layer_keras.onnx")
    local function run(args)
      local p = io.popen("LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' lua5.4 bin/graft "
        .. args .. " 2>&1; echo \"rc=$?\"")
      local s = p:read("a")
      p:close()
      return s
    end
    local ls = run("ls " .. H.q(src))
    assert.truthy(ls:find("W1", 1, true), ls)
    assert.truthy(ls:find("rc=0", 1, true), ls)
    local show = run("show " .. H.q(src) .. " W")
    assert.truthy(show:find("rc=0", 1, true), show)
    local conv = run("convert " .. H.q(src) .. " " .. H.q(dir .. "/w.safetensors"))
    assert.truthy(conv:find("rc=0", 1, true), conv)
    local diff = run("diff " .. H.q(src) .. " " .. H.q(dir .. "/w.safetensors"))
    assert.truthy(diff:find("rc=0", 1, true), diff)
  end)
end)
