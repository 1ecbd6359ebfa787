-- Cookbook (g): a torch .bin -> sharded float16 safetensors, run as the
-- docs say (graft run examples/cookbook/torch_bin_to_sharded_fp16.lua SRC
-- OUT max_shard_size=...) and proven by torch: safetensors.torch.load_file
-- of every shard the index names, load_state_dict(strict=True), forward
-- pass equal to the float16-rounded source model's within 1e-5 relative
-- (spec/fixtures/cookbook/torch_bin_to_sharded_fp16.py). A recipe that
-- casts only the weights (biases and norms left float32) is caught.
local json = require "graft.json"
local H = require "helper"
local C = require "cookbook.cookbook"

local GEN = "torch_bin_to_sharded_fp16"
local RECIPE = "examples/cookbook/torch_bin_to_sharded_fp16.lua"

describe("cookbook (g): torch .bin -> sharded float16 safetensors", function()
  local dir, results

  setup(function()
    dir = C.make(GEN)
    -- the recipe as documented; then a broken copy that casts only *.weight
    local out, err, code = H.graft("run", RECIPE, dir .. "/pytorch_model.bin", dir .. "/out",
      "max_shard_size=24KB")
    assert(code == 0, err)
    assert(out:find("wrote " .. dir .. "/out/model.safetensors (38 tensors", 1, true), out)
    local text, n = H.read(RECIPE):gsub('if FLOAT%[t%.dtype%] then', 'if FLOAT[t.dtype] and name:find("%%.weight$") then')
    assert(n == 1, "the broken variant did not apply")
    text = text:gsub("local function to_float16%(t%)", "local function to_float16(t, name)")
    H.write(dir .. "/broken.lua", text)
    _, err, code = H.graft("run", dir .. "/broken.lua", dir .. "/pytorch_model.bin", dir .. "/broken",
      "max_shard_size=24KB")
    assert(code == 0, err)
    results = C.json_lines(C.gen(GEN, "check", dir, dir .. "/out", dir .. "/broken"),
      function(r) return r.out:match("[^/]+$") end)
  end)
  teardown(H.cleanup)

  it("writes HF's shard names and index, every float tensor float16", function()
    assert.are.same({ "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors", "model.safetensors.index.json" }, H.ls(dir .. "/out"))
    local r = results.out
    assert.is_nil(r.error)
    assert.are.same({ "model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
      "model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors" }, r.shards)
    assert.are.same({ float16 = 37, int64 = 1 }, r.dtypes)
  end)

  it("torch loads the shards (strict) and computes the float16-rounded model's logits within 1e-5", function()
    local r = results.out
    assert.is_true(r.ok, json.encode(r))
    assert.is_true(r.max_rel <= 1e-5, tostring(r.max_rel))
  end)

  it("a recipe casting only the weights is caught, naming a float32 tensor", function()
    local r = results.broken
    assert.is_string(r.error)
    assert.truthy(r.error:find("is torch.float32, not float16", 1, true), r.error)
    assert.truthy(r.error:find("^ValueError: model%-%d+%-of%-%d+%.safetensors: [%w_.]+%.bias is"), r.error)
  end)
end)
