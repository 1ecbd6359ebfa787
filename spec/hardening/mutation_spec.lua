-- A real file of each family, mutated (bit flips, byte sets, truncation,
-- length-like fields bumped: spec/fixtures/mutate.lua) a bounded number of
-- times, opened and fully read, each batch in its own process under a
-- memory cap and a time bound (issue 13): every outcome is success or a
-- Lua error; never a signal, a hang or memory past the cap.
local H = require "helper"

local R = "../shared/fixtures/real/"
local CASES = {
  { "npy", "npy/candle-tests/test.npy", 80 },
  { "npz", "npz/numpy-pr21994-savez/py3-arr-savez-compressed.npz", 80 },
  { "safetensors", "safetensors/candle-jfk-codes-i64/jfk-codes.safetensors", 80 },
  { "torch zip", "pytorch/candle-zip-tests/test.pt", 80 },
  { "torch legacy", "pytorch/torchserve-pr418-legacy-iris-state_dict/iris.pt", 80 },
  { "tf checkpoint index", "tf_ckpt_v2/tf2onnx-regression/model.index", 80,
    "tf_ckpt_v2/tf2onnx-regression/model.data-00000-of-00001" },
  { "tf checkpoint data", "tf_ckpt_v2/tf2onnx-regression/model.data-00000-of-00001", 40,
    "tf_ckpt_v2/tf2onnx-regression/model.index" },
  { "frozen graph", "tf_graphdef/hls4ml-3layer/3layer.pb", 80 },
  { "meta graph", "tf_meta/session_bundle_half_plus_two/00000123/export.meta", 80 },
  { "keras h5", "keras_h5/hls4ml-FashionMNIST-qkeras-keras2.9/FashionMNIST.h5", 150 },
  { "keras (hdf5 named .keras)", "keras_h5/hls4ml-dense-streaming-hdf5-named-dot-keras/keras_model.keras", 150 },
  { "gguf", "gguf/iree-gguf-testdata/multiple.gguf", 80 },
  { "onnx", "onnx/hls4ml-three-layer/three_layer_keras.onnx", 80 },
}

-- Sanitizer builds reserve terabytes of address space: no ulimit -v there.
local sanitized = (os.getenv("LD_PRELOAD") or ""):find("asan") ~= nil

describe("mutated real files", function()
  after_each(H.cleanup)

  for i, c in ipairs(CASES) do
    local label, main, count, side = c[1], c[2], c[3], c[4]
    it(label .. ": " .. count .. " mutations give success or a clear error, never a signal or a hang", function()
      local dir = H.tmpdir()
      local args = { "1000" .. i, tostring(count), dir, H.real(main) }
      if side then args[#args + 1] = H.real(side) end
      for k, a in ipairs(args) do args[k] = H.q(a) end
      local cmd = string.format("%s GRAFT_HDF5_TIMEOUT=5 timeout -s KILL 300 lua5.4 "
        .. "spec/fixtures/mutate.lua %s 2>&1; echo \"exit $?\"",
        sanitized and "" or "ulimit -v 8000000;", table.concat(args, " "))
      local out = io.popen("sh -c " .. H.q(cmd)):read("a")
      local lines, last = 0, nil
      for l in out:gmatch("[^\n]+") do
        if l:find("^ok ") or l:find("^err ") then
          lines = lines + 1
          assert.matches("^ok %d+$", l:find("^ok ") and l or "ok 0")
          if l:find("^err ") then assert.matches("^err %d+ graft: ", l) end
        end
        last = l
      end
      assert.are.equal("exit 0", last, out:sub(-2000))
      assert.are.equal(count, lines)
    end)
  end

  it("tools/mutate-campaign counts a campaign's outcomes (a short one here)", function()
    H.real("MANIFEST.md")
    local out = io.popen("sh -c " .. H.q("nice tools/mutate-campaign h5 14 3 2>/dev/null; echo \"exit $?\"")):read("a")
    local ok, errs, sigs, hangs = out:match("ok (%d+)  lua error (%d+) %(libhdf5 contained %d+%)  signal (%d+)  hang (%d+)")
    assert.is_truthy(ok, out)
    assert.are.equal(14, tonumber(ok) + tonumber(errs))
    assert.are.equal("0 0", sigs .. " " .. hangs)
    assert.matches("family h5: 14 mutations of 7 files", out, 1, true)
    assert.matches("exit 0\n$", out)
  end)
end)
