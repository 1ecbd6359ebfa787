-- Cookbook (h): a llama-style torch state dict (GQA) -> GGUF, run as the
-- docs say (graft run examples/cookbook/llama_to_gguf.lua SRC OUT.gguf
-- [outtype=f16]) and proven in the oracle environment
-- (spec/fixtures/cookbook/llama_to_gguf.py): gguf-py's GGUFReader reads the
-- file; names are those of gguf-py's own llama tensor map; q/k equal
-- convert_hf_to_gguf.py's `permute` (written in the oracle from its
-- definition) of the source exactly; a forward pass computed as llama.cpp
-- computes llama (RoPE on adjacent pairs) on the GGUF tensors gives the
-- Hugging Face model's logits within 1e-5 relative. Two broken recipes
-- (no permute; k permuted with n_head instead of n_kv_head) are caught.
local json = require "graft.json"
local H = require "helper"
local C = require "cookbook.cookbook"

local GEN = "llama_to_gguf"
local RECIPE = "examples/cookbook/llama_to_gguf.lua"

-- The recipe text with `from` replaced by `to` (exactly once).
local function variant(dir, name, from, to)
  local text, n = H.read(RECIPE):gsub(from, to)
  assert(n == 1, name .. ": the broken variant did not apply")
  H.write(dir .. "/" .. name .. ".lua", text)
  return dir .. "/" .. name .. ".lua"
end

describe("cookbook (h): llama torch state dict -> GGUF with llama.cpp's names and RoPE permute", function()
  local dir, results

  setup(function()
    dir = C.make(GEN)
    local runs = {
      { "f32", RECIPE },
      { "f16", RECIPE, "outtype=f16" },
      { "no_permute", variant(dir, "no_permute", "store%(L%.rope_permute%(t, n_head%)%)", "store(t)") },
      { "k_with_n_head", variant(dir, "k_with_n_head", "L%.rope_permute%(t, n_head, n_kv_head%)",
        "L.rope_permute(t, n_head)") },
    }
    local files = {}
    for _, r in ipairs(runs) do
      local path = dir .. "/" .. r[1] .. ".gguf"
      local out, err, code = H.graft("run", r[2], dir .. "/llama.pt", path, r[3])
      assert(code == 0, err)
      assert(out:find("wrote " .. path .. ": 21 tensors (llama, 8 heads, 2 kv heads", 1, true), out)
      files[#files + 1] = path
    end
    results = C.json_lines(C.gen(GEN, "check", dir, table.unpack(files)),
      function(r) return r.gguf:match("([^/]+)%.gguf$") end)
  end)
  teardown(H.cleanup)

  it("gguf-py reads llama.cpp's tensor names and llama metadata", function()
    for _, k in ipairs({ "f32", "f16" }) do
      local r = results[k]
      assert.is_nil(r.error, r.error)
      assert.is_true(r.names_ok, json.encode(r))
      assert.is_true(r.meta_ok, json.encode(r))
    end
    assert.are.same({ F32 = 21 }, results.f32.dtypes)
    -- f16: the 16 matrices float16, the 5 norms float32 (llama.cpp's policy)
    assert.are.same({ F16 = 16, F32 = 5 }, results.f16.dtypes)
  end)

  it("q/k are convert_hf_to_gguf.py's permute of the source, every other tensor the source", function()
    assert.are.equal(0, results.f32.permute_max_abs)
    assert.are.equal(0, results.f16.permute_max_abs)
  end)

  it("llama.cpp's forward pass on the GGUF tensors gives the HF model's logits within 1e-5", function()
    for _, k in ipairs({ "f32", "f16" }) do
      local r = results[k]
      assert.is_true(r.max_rel <= 1e-5, k .. ": " .. tostring(r.max_rel))
      assert.is_true(r.ok, json.encode(r))
    end
  end)

  it("--dry-run shows every output's name, dtype and shape and writes nothing", function()
    local path = dir .. "/dry.gguf"
    local out, err, code = H.graft("run", RECIPE, dir .. "/llama.pt", path, "outtype=f16", "--dry-run")
    assert(code == 0, err)
    for _, line in ipairs({
      "model.layers.1.self_attn.k_proj.weight float32 {16,64} -> blk.1.attn_k.weight float16 {16,64}"
        .. "  [rope_permute(n_head, n_kv_head)]",
      "model.layers.0.input_layernorm.weight float32 {64} -> blk.0.attn_norm.weight float32 {64}  [store]",
      "model.layers.0.self_attn.rotary_emb.inv_freq float32 {4} -> (dropped)",
      "would write " .. path .. ": 21 tensors (dry run: nothing written)",
    }) do
      assert.truthy(out:find(line, 1, true), line .. "\n" .. out)
    end
    assert.is_false(H.exists(path))
  end)

  it("a recipe without the permute, or permuting k with n_head, is caught", function()
    for _, k in ipairs({ "no_permute", "k_with_n_head" }) do
      local r = results[k]
      assert.is_nil(r.error, r.error)
      assert.is_false(r.ok, json.encode(r))
      assert.is_true(r.permute_max_abs > 0.01, json.encode(r))
      assert.is_true(r.max_rel > 1e-2, json.encode(r))
    end
  end)
end)
