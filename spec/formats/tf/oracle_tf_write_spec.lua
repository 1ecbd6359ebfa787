-- What graft writes for TensorFlow, loaded by TensorFlow 2.21 and checked on
-- outputs (values it reads back, predictions). Two oracle processes
-- (spec/fixtures/oracle_tf_write.py): `make` writes the templates graft
-- starts from, `check` loads every file graft wrote and reports, per check,
-- the list of disagreements.
--   g_dtypes/ckpt  every dtype graft writes to a bundle, 3 shards, views,
--                  a 0-d and an empty tensor: tf.train.load_checkpoint and a
--                  TF1 Saver.restore
--   g_keras/w      a tf-keras model's own save_weights checkpoint, weights
--                  replaced by short name (object graph carried over):
--                  model.load_weights + assert_existing_objects_matched
--   g_frozen.pb    the frozen graph with its two Consts patched: run
--   g_sm, g_ksm    SavedModels with variables replaced: serving signature
local graft = require "graft"
local H = require "helper"
local json = require "graft.json"

local DTYPES = { "float32", "float64", "bfloat16", "float16", "float8_e4m3fn", "float8_e5m2",
                 "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "bool", "complex64", "complex128" }

-- Deterministic pseudo-random numbers in [-1, 1).
local seed = 12345
local function rand()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 1073741824 - 1
end

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

local function random_float32(shape)
  local v = {}
  for i = 1, numel(shape) do v[i] = rand() end
  return graft.tensor(v, "float64", shape):float():contiguous()
end

local INT_RANGE = {
  int8 = { -128, 127 }, int16 = { -32768, 32767 }, int32 = { -2147483648, 2147483647 },
  uint8 = { 0, 255 }, uint16 = { 0, 65535 },
  uint32 = { 0, 4294967295 }, bool = { 0, 1 },
}

local function values_of(dt, shape)
  local n = numel(shape)
  if dt:find("^complex") then
    local fmt = dt == "complex64" and "<f" or "<d"
    local parts = {}
    for i = 1, 2 * n do parts[i] = string.pack(fmt, rand() * 100) end
    return graft.tensor(table.concat(parts), dt, shape)
  end
  if dt == "uint64" or dt == "int64" then
    -- 64-bit patterns over the whole range, extremes first
    local parts = {}
    for i = 1, n do parts[i] = string.pack("<i8", math.floor(rand() * 2^62) * 4 + i) end
    parts[1] = string.pack("<i8", dt == "uint64" and -1 or math.mininteger)
    parts[2] = string.pack("<i8", dt == "uint64" and 0 or math.maxinteger)
    return graft.tensor(table.concat(parts), dt, shape)
  end
  local v = {}
  local r = INT_RANGE[dt]
  for i = 1, n do
    if r then
      v[i] = r[1] + math.floor((rand() + 1) / 2 * (r[2] - r[1]))
    else
      v[i] = rand() * 3
    end
  end
  if r and n >= 2 then v[1], v[2] = r[1], r[2] end
  local wide = r and "int64" or "float64"
  return graft.tensor(v, wide, shape):cast(dt):contiguous()
end

describe("graft's TensorFlow writers, loaded by TensorFlow (TensorFlow as oracle)", function()
  local dir, result

  local expect, bins = {}, 0
  local function expect_tensor(name, t)
    local e = { dtype = t.dtype, shape = t.shape }
    if t.dtype == "string" then
      e.strings = {}
      for i, s in ipairs(H.flat(t:totable())) do e.strings[i] = H.hex(s) end
    else
      bins = bins + 1
      e.bin = "expect/" .. bins .. ".bin"
      H.write(dir .. "/" .. e.bin, t:bytes())
    end
    expect[name] = e
  end

  local function write_dtypes()
    os.execute("mkdir -p " .. H.q(dir .. "/expect") .. " " .. H.q(dir .. "/g_dtypes") .. " " .. H.q(dir .. "/g_keras"))
    local t = {}
    for _, dt in ipairs(DTYPES) do t["dt/" .. dt] = values_of(dt, { 3, 4 }) end
    t["dt/string"] = graft.open(dir .. "/strs/s").s
    -- views and edge shapes are streamed from their views
    t["view/transposed"] = values_of("float32", { 4, 5 }):t()
    t["view/narrowed"] = values_of("int16", { 6, 3 }):narrow(1, 2, 3)
    t["view/cast"] = values_of("float64", { 2, 3 }):half()
    t["edge/scalar"] = graft.tensor(7.25)
    t["edge/empty"] = graft.zeros({ 0, 3 }, "int32")
    for name, v in pairs(t) do expect_tensor(name, v) end
    graft.save(dir .. "/g_dtypes/ckpt", t, { format = "tf", num_shards = 3 })
    H.write(dir .. "/expect.json", json.encode(expect))
  end

  local KERAS = { "conv/kernel", "conv/bias", "bn/gamma", "bn/beta", "bn/moving_mean",
                  "bn/moving_variance", "dense/kernel", "dense/bias" }

  -- The template's weights replaced by short name; returns the new values
  -- by short name.
  local function replace_keras(m, new)
    local keys = graft.names(m)
    local short = graft.tf.short_names(graft.meta(m), keys)
    local done = 0
    for _, k in ipairs(keys) do
      local s = short[k]
      if new[s] then
        assert.same(new[s].shape, m[k].shape)
        m[k] = new[s]
        done = done + 1
      end
    end
    assert.are.equal(#KERAS, done)
  end

  local function write_keras()
    local m = graft.open(dir .. "/kt/w")
    local w = graft.tf.split(m)
    local new = {}
    for _, s in ipairs(KERAS) do new[s] = random_float32(w[s].shape) end
    -- moving_variance must stay positive
    local mv = H.flat(new["bn/moving_variance"]:totable())
    for i, v in ipairs(mv) do mv[i] = math.abs(v) + 0.5 end
    new["bn/moving_variance"] = graft.tensor(mv, "float32")
    replace_keras(m, new)
    graft.save(dir .. "/g_keras/w", m, { format = "tf" })
    graft.save(dir .. "/keras_new.npz", new)
    return new
  end

  local function write_frozen()
    local f = graft.open(dir .. "/frozen.pb")
    local new, patch = {}, {}
    for _, n in ipairs(graft.names(f)) do
      local key = #f[n].shape == 2 and "w" or "b"
      new[key] = random_float32(f[n].shape)
      patch[n] = new[key]
    end
    graft.save(dir .. "/g_frozen.pb", patch, { base = dir .. "/frozen.pb" })
    graft.save(dir .. "/frozen_new.npz", new)
  end

  local function write_savedmodels(keras_new)
    local sm = graft.open(dir .. "/sm")
    local new = { w = random_float32({ 3, 2 }), b = random_float32({ 2 }) }
    graft.save(dir .. "/g_sm", { ["w/.ATTRIBUTES/VARIABLE_VALUE"] = new.w,
                                  ["b/.ATTRIBUTES/VARIABLE_VALUE"] = new.b },
               { format = "savedmodel", base = dir .. "/sm" })
    assert.are.equal(3, #graft.names(sm))
    graft.save(dir .. "/sm_new.npz", new)
    local ksm = graft.open(dir .. "/ksm")
    replace_keras(ksm, keras_new)
    graft.save(dir .. "/g_ksm", ksm, { format = "savedmodel", base = dir .. "/ksm" })
  end

  setup(function()
    dir = H.tmpdir()
    local script = H.read("spec/fixtures/oracle_tf_write.py")
    H.oracle(script, "make", dir)
    write_dtypes()
    local keras_new = write_keras()
    write_frozen()
    write_savedmodels(keras_new)
    result = json.decode(H.oracle(script, "check", dir))
  end)
  teardown(H.cleanup)

  it("a graft checkpoint of every dtype, 3 shards: tf.train.load_checkpoint reads it all equal", function()
    assert.are.equal(3, #H.ls(dir .. "/g_dtypes") - 2)  -- 3 data shards + .index + checkpoint
    assert.same({}, result.dtypes)
  end)

  it("TF1 Saver.restore into a graph with those variables: the session's values are graft's", function()
    assert.same({}, result.saver_refused)
    assert.same({}, result.saver)
  end)

  it("a checkpoint from a tf-keras model's own save_weights: load_weights matches every object, "
    .. "predictions use the new values", function()
    assert.same({}, result.keras)
  end)

  it("a patched frozen .pb: TensorFlow imports and runs it with the new weights", function()
    assert.same({}, result.frozen)
  end)

  it("a SavedModel with variables replaced: tf.saved_model.load serves the new weights", function()
    assert.same({}, result.savedmodel)
    assert.same({}, result.keras_sm)
    -- every file but the variables bundle is the base's, byte for byte
    for _, pair in ipairs({ { "sm", "g_sm" }, { "ksm", "g_ksm" } }) do
      local p = io.popen("cd " .. H.q(dir .. "/" .. pair[1]) .. " && find . -type f | sort")
      for rel in p:lines() do
        if not rel:find("^%./variables/variables%.") then
          assert.is_true(H.read(dir .. "/" .. pair[1] .. "/" .. rel) == H.read(dir .. "/" .. pair[2] .. "/" .. rel), rel)
        end
      end
      p:close()
    end
  end)

  it("refuses what would not be the same SavedModel, and leaves nothing behind", function()
    local base = dir .. "/sm"
    local w = graft.open(base)["w/.ATTRIBUTES/VARIABLE_VALUE"]
    local err = H.raises(function()
      graft.save(dir .. "/bad1", { ["w/.ATTRIBUTES/VARIABLE_VALUE"] = w:double() },
                 { format = "savedmodel", base = base })
    end)
    assert.matches("bad1: w/.ATTRIBUTES/VARIABLE_VALUE: dtype float64, the SavedModel's variable is float32", err, 1, true)
    err = H.raises(function()
      graft.save(dir .. "/bad2", { nope = w }, { format = "savedmodel", base = base })
    end)
    assert.matches("bad2: nope: not a variable of the SavedModel", err, 1, true)
    err = H.raises(function() graft.save(dir .. "/g_sm", {}, { format = "savedmodel", base = base }) end)
    assert.matches("g_sm: exists", err, 1, true)
    err = H.raises(function() graft.save(dir .. "/bad3", {}, { format = "savedmodel" }) end)
    assert.matches("opts.base", err, 1, true)
    for _, n in ipairs(H.ls(dir)) do
      assert.is_nil(n:find("^bad") or n:find("graft%-tmp"), n)
    end
  end)
end)
