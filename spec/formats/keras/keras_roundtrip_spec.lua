-- Rewriting the weights of every real Keras file with graft: h5py must see
-- the same structure in graft's file as in the original (groups, attribute
-- names, types and values, dataset paths, shapes, dtypes, order), dumped by
-- spec/fixtures/h5_structure.py and diffed line by line; and the same
-- values. A full-model file's weights compare with its model_weights group
-- (graft writes the weights, as save_weights does).
local graft = require "graft"
local H = require "helper"

local DUMP = H.read("spec/fixtures/h5_structure.py")

local CASES = {
  { "keras_h5/hls4ml-KERAS_3layer-weights-only-keras2.0.0/KERAS_3layer_weights.h5", "keras" },
  { "keras_h5/hls4ml-FashionMNIST-qkeras-keras2.9/FashionMNIST_weights.h5", "keras" },
  { "keras_h5/hls4ml-FashionMNIST-qkeras-keras2.9/FashionMNIST.h5", "keras", "model_weights" },
  { "keras_h5/genomic-gaps-full-model-keras2.2.4tf/best_single.hdf5", "keras", "model_weights" },
  { "keras_h5/hls4ml-dense-streaming-hdf5-named-dot-keras/keras_model.keras", "keras", "model_weights" },
  { "keras3/keras-pre_pr22362-weights-extracted/model.weights.h5", "keras3" },
}

local function diff(a, b)
  local la, lb = {}, {}
  for l in a:gmatch("[^\n]+") do la[#la + 1] = l end
  for l in b:gmatch("[^\n]+") do lb[#lb + 1] = l end
  for i = 1, math.max(#la, #lb) do
    if la[i] ~= lb[i] then
      return string.format("line %d:\n  original: %s\n  graft:    %s", i, tostring(la[i]), tostring(lb[i]))
    end
  end
  return nil
end

describe("rewriting real Keras weights", function()
  teardown(H.cleanup)

  for _, c in ipairs(CASES) do
    local rel, format, group = c[1], c[2], c[3]
    it(rel .. " keeps its h5py-visible structure and values", function()
      local src = H.real(rel)
      local m = graft.open(src)
      local out = H.tmpdir() .. (format == "keras3" and "/out.weights.h5" or "/out.h5")
      graft.save(out, m)
      local want = H.py(DUMP, src, group)
      local got = H.py(DUMP, out)
      assert.is_nil(diff(want, got))
      assert.equal(want, got)
      local back = graft.open(out)
      assert.same(graft.names(m), graft.names(back))
      for _, n in ipairs(graft.names(m)) do
        assert.equal(H.hex(m[n]:bytes()), H.hex(back[n]:bytes()), n)
      end
    end)
  end

  it("writes the .keras archive's weights as the .weights.h5 Keras 3 saves", function()
    local m = graft.open(H.real("keras3/keras-pre_pr22362_nested_container/pre_pr22362_nested_container.keras"))
    local out = H.tmpdir() .. "/model.weights.h5"
    graft.save(out, m)
    assert.equal(H.py(DUMP, H.real("keras3/keras-pre_pr22362-weights-extracted/model.weights.h5")),
      H.py(DUMP, out))
  end)
end)
