-- Inputs the fuzz targets (fuzz/, make fuzz-all) found, kept as specs so
-- they stay fixed. Run under `make asan` they prove the absence of the
-- undefined behaviour each one triggered.
local graft = require "graft"
local H = require "helper"

describe("fuzz regressions", function()
  after_each(H.cleanup)

  it("onnxtensor: an empty tensor whose other dims multiply past int64 has in-range strides", function()
    -- dims 0, 965807752347648000 and 32 (found by fuzz/onnxtensor.c:
    -- signed overflow computing contiguous strides in tensor.c)
    local p = H.tmpdir() .. "/input_0.pb"
    H.write(p, H.unhex("0803a804100a20272020202000076cb52020202020202020202020202020202032"
      .. "c939007e007c0805100842047b6a0428"))
    local ok, m = pcall(graft.open, p, { format = "onnx_tensor" })
    if ok then
      for _, n in ipairs(graft.names(m)) do
        assert.are.equal(0, m[n].numel)
        assert.are.equal(0, m[n].nbytes)
        if m[n].dtype ~= "string" then assert.are.equal("", m[n]:contiguous():bytes()) end
      end
    else
      assert.matches("^graft: " .. p:gsub("%p", "%%%0") .. ": ", m)
    end
  end)
end)
