-- graft reads what TensorFlow 2.21 writes, bit-exactly against TensorFlow's
-- own reader. One oracle process (spec/fixtures/gen_tf_oracle.py) writes TF1
-- Saver V2/V1 checkpoints (every dtype, Adam slots, a partitioned
-- variable), a TF2 object-based checkpoint, tf-keras TF-format weights, two
-- SavedModels, a frozen .pb and a .meta, and dumps what
-- tf.train.load_checkpoint(...).get_tensor (checkpoints) and
-- tf.make_ndarray (graph Consts) return; the comparison is here.
local graft = require "graft"
local H = require "helper"
local json = require "graft.json"

describe("TensorFlow-written files (TensorFlow as oracle)", function()
  local dir, oracle

  setup(function()
    dir = H.tmpdir()
    H.oracle(H.read("spec/fixtures/gen_tf_oracle.py"), dir)
    oracle = json.decode(H.read(dir .. "/oracle.json"))
  end)
  teardown(H.cleanup)

  local function sorted_keys(t)
    local k = {}
    for n in pairs(t) do k[#k + 1] = n end
    table.sort(k)
    return k
  end

  -- Every tensor TF reads is in graft's table with the same dtype, shape
  -- and bytes (string elements for string tensors), and graft has no other.
  local function agree(set)
    local m = graft.open(dir .. "/" .. set.path)
    local names = graft.names(m)
    local mine = {}
    for _, n in ipairs(names) do mine[n] = true end
    assert.same(sorted_keys(set.tensors), sorted_keys(mine))
    for name, want in pairs(set.tensors) do
      local t = m[name]
      assert.are.equal(want.dtype, t.dtype, name)
      assert.same(want.shape, t.shape, name)
      if want.strings then
        local got = H.flat(t:totable())
        assert.are.equal(#want.strings, #got, name)
        for i, hex in ipairs(want.strings) do
          assert.are.equal(hex, H.hex(got[i]), name .. "[" .. i .. "]")
        end
      else
        local bytes = H.read(dir .. "/" .. want.bin)
        assert.is_true(bytes == t:bytes(), name .. ": bytes differ from TensorFlow's")
      end
    end
    return m
  end

  it("TF1 Saver V2: every dtype, Adam slots, the partitioned variable reassembled", function()
    local set = oracle.sets.tf1_v2
    for _, d in ipairs({ "float32", "float64", "bfloat16", "float16", "complex64", "complex128",
                         "string", "int8", "int16", "int32", "int64", "uint8", "uint16",
                         "uint32", "uint64", "bool" }) do
      assert.is_truthy(set.tensors["dt_" .. d], d .. " missing from TF's checkpoint")
    end
    assert.same({}, oracle.dtypes_skipped)
    assert.is_truthy(set.tensors["part/emb/Adam_1"])
    local m = agree(set)
    assert.is_truthy(graft.meta(m).partitioned)
  end)

  it("TF1 Saver V1 (one table file): the dtypes V1 saves", function()
    -- TF's V1 writer (SaveSlices) refuses bfloat16, uint32 and uint64.
    local refused = {}
    for _, s in ipairs(oracle.v1_skipped) do refused[#refused + 1] = s.dtype end
    table.sort(refused)
    assert.same({ "bfloat16", "uint32", "uint64" }, refused)
    local m = agree(oracle.sets.tf1_v1)
    assert.are.equal("v1", graft.meta(m).version)
  end)

  it("TF2 tf.train.Checkpoint: object graph and optimizer slots", function()
    local m = agree(oracle.sets.tf2_ckpt)
    local w, slots = graft.tf.split(m)
    assert.is_truthy(w["w"] or w["model/w"])
    local n = 0
    for _, s in pairs(slots) do
      assert.is_truthy(s.m and s.v)
      n = n + 1
    end
    assert.are.equal(2, n)
  end)

  it("tf-keras save_weights in TF format; the current optimizer's slots are slots", function()
    local m = agree(oracle.sets.keras_tf)
    local w, slots, other = graft.tf.split(m)
    -- Keras >= 2.11 optimizers keep m/v in optimizer/_variables/N (full
    -- names Adam/m/conv/kernel), not as slot_variables records.
    local names = {}
    for k in pairs(w) do names[#names + 1] = k end
    table.sort(names)
    assert.same({ "bn/beta", "bn/gamma", "bn/moving_mean", "bn/moving_variance", "conv/bias",
                  "conv/kernel", "dense/bias", "dense/kernel" }, names)
    for _, k in ipairs({ "bn/beta", "bn/gamma", "conv/bias", "conv/kernel", "dense/bias", "dense/kernel" }) do
      assert.is_truthy(slots[k] and slots[k].m and slots[k].v, k)
      assert.same(w[k].shape, slots[k].m.shape)
    end
    assert.is_nil(slots["bn/moving_mean"])
    assert.is_truthy(other["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"])
  end)

  it("TF2 checkpoint sharded by MaxShardSizePolicy: 5 data files, a variable in slices", function()
    local m = agree(oracle.sets.tf2_sharded)
    assert.are.equal(5, graft.meta(m).num_shards)
    assert.is_truthy(graft.meta(m).partitioned["vs/0/.ATTRIBUTES/VARIABLE_VALUE"])
  end)

  -- graft's signatures and variables of a SavedModel are what TF's own
  -- protobuf classes parse (variables compared as a set, by key).
  local function same_savedmodel_meta(m, want)
    local meta = graft.meta(m)
    assert.same(want.signatures, meta.signatures)
    local mine = {}
    for _, v in ipairs(meta.variables) do
      mine[v.key] = { name = v.name, dtype = v.dtype, shape = v.shape, trainable = v.trainable, key = v.key }
    end
    local theirs = {}
    for _, v in ipairs(want.variables) do theirs[v.key] = v end
    assert.same(theirs, mine)
  end

  it("SavedModel from tf.saved_model.save: variables, signatures", function()
    local m = agree(oracle.sets.sm_tf2)
    assert.are.equal("savedmodel", graft.meta(m).format)
    same_savedmodel_meta(m, oracle.sets.sm_tf2.savedmodel)
  end)

  it("SavedModel from tf-keras model.save: variables (slots too), signatures", function()
    local m = agree(oracle.sets.sm_keras)
    assert.are.equal("savedmodel", graft.meta(m).format)
    same_savedmodel_meta(m, oracle.sets.sm_keras.savedmodel)
    assert.is_true(#oracle.sets.sm_keras.savedmodel.variables > 8)
  end)

  it("frozen graph from convert_variables_to_constants_v2", function()
    local m = agree(oracle.sets.frozen)
    assert.are.equal("graphdef", graft.meta(m).format)
  end)

  it(".meta from export_meta_graph: Consts of every dtype", function()
    local m = agree(oracle.sets.meta)
    assert.are.equal("metagraph", graft.meta(m).format)
    local seen = {}
    for _, n in ipairs(graft.names(m)) do seen[m[n].dtype] = true end
    for _, d in ipairs({ "bfloat16", "float16", "complex64", "complex128", "string", "uint64", "bool" }) do
      assert.is_true(seen[d] == true, d)
    end
  end)

  it(".meta variables: names, dtypes, shapes and checkpoint keys as import_meta_graph has them "
    .. "(a partitioned variable's parts keyed by the full name)", function()
    local m = graft.open(dir .. "/tf1.meta")
    local mine = {}
    for _, v in ipairs(graft.meta(m).variables) do
      mine[v.name] = { name = v.name, dtype = v.dtype, shape = v.shape, key = v.key }
    end
    local theirs = {}
    for _, v in ipairs(oracle.sets.meta.variables) do theirs[v.name] = v end
    assert.same(theirs, mine)
    assert.are.equal("part/emb", mine["part/emb/part_1"].key)
    assert.are.equal("part/emb/Adam_1", mine["part/emb/part_2/Adam_1"].key)
    -- every key is one the Saver wrote
    local saved = oracle.sets.tf1_v2.tensors
    for _, v in pairs(mine) do assert.is_truthy(saved[v.key], v.key) end
  end)
end)
