-- Cookbook (f): a BERT checkpoint in google-research/bert's TF1 layout
-- (one encoder layer, pretraining heads, adam_m/adam_v slots,
-- global_step) -> Hugging Face BertModel names in torch, through the one
-- documented command; proven by a torch BertModel's sequence and pooled
-- outputs against TF's (oracle environment).
-- spec/fixtures/cookbook/tf1_bert_to_torch.py makes the checkpoint and
-- checks graft's outputs.
local H = require "helper"
local C = require "cookbook.cookbook"

local RECIPE = "examples/cookbook/tf1_bert_to_torch.lua"
local GEN = "tf1_bert_to_torch"

-- A recipe that extends the cookbook's with override rules (Lua source).
local function variant(dir, file, overrides)
  local path = dir .. "/" .. file
  H.write(path, string.format([[
local graft = require "graft"
local base = dofile(%q)
local src, dst = ...
base.run(src, dst, { heads = "drop", template = %q }, { %s })
]], H.ROOT .. "/" .. RECIPE, dir .. "/template.pt", overrides))
  return path
end

describe("cookbook tf1_bert_to_torch", function()
  local dir, ckpt
  setup(function()
    dir = C.make(GEN)
    ckpt = dir .. "/model.ckpt"
  end)
  teardown(H.cleanup)

  it("gives a torch BertModel TF's outputs; an untransposed square kernel is caught", function()
    local out = C.graft_ok("run", RECIPE, ckpt, dir .. "/bert.pt", "heads=drop",
      "template=" .. dir .. "/template.pt")
    assert.truthy(out:find("23 tensors, checked against", 1, true), out)

    -- Broken: the query kernel copied as (in, out); (32, 32) either way, so
    -- graft.check passes it and only the outputs differ.
    local broken = variant(dir, "untransposed.lua", [[
{ "^bert/encoder/layer_0/attention/self/query/kernel$", "encoder.layer.0.attention.self.query.weight" } ]])
    C.graft_ok("run", broken, ckpt, dir .. "/untransposed.pt")
    out = C.graft_ok("check", dir .. "/untransposed.pt", dir .. "/template.pt")
    assert.truthy(out:find("ok: 23 tensors match the template", 1, true), out)

    C.assert_outputs(GEN, dir, "bert.pt", { "untransposed.pt" })
  end)

  it("names a typo'd target name against the template and writes nothing", function()
    local broken = variant(dir, "typo.lua", [[
{ "^bert/encoder/layer_0/attention/self/key/kernel$", "encoder.layer.0.attention.self.kye.weight",
  "dense_tf_to_torch" } ]])
    local _, err, code = H.graft("run", broken, ckpt, dir .. "/typo.pt")
    assert.are.equal(2, code)
    assert.truthy(err:find("misspelt: encoder.layer.0.attention.self.kye.weight -> "
      .. "encoder.layer.0.attention.self.key.weight?", 1, true), err)
    assert.truthy(err:find("does not fit the template", 1, true), err)
    assert.falsy(H.exists(dir .. "/typo.pt"))
  end)

  it("drops adam_m, adam_v and global_step; stops at the pretraining heads unless heads=drop", function()
    local out = C.graft_ok("run", RECIPE, "--dry-run", ckpt, dir .. "/x.pt", "heads=drop", "prefix=bert.")
    assert.truthy(out:find("bert/encoder/layer_0/output/dense/kernel float32 {64,32} -> "
      .. "bert.encoder.layer.0.output.dense.weight float32 {32,64}  [dense_tf_to_torch]", 1, true), out)
    assert.truthy(out:find("bert/embeddings/word_embeddings float32 {50,32} -> "
      .. "bert.embeddings.word_embeddings.weight float32 {50,32}\n", 1, true), out)
    for _, n in ipairs({ "global_step", "bert/pooler/dense/kernel/adam_m", "bert/embeddings/LayerNorm/gamma/adam_v",
                         "cls/seq_relationship/output_weights" }) do
      assert.truthy(out:find("\n" .. n:gsub("%p", "%%%0") .. " [^\n]*%(dropped%)"), n .. "\n" .. out)
    end
    local kept = select(2, out:gsub("\nbert/[^\n]* %-> bert%.", ""))
    assert.are.equal(23, kept)
    _, err, code = H.graft("run", RECIPE, ckpt, dir .. "/x.pt")
    assert.are.equal(2, code)
    assert.truthy(err:find("is a pretraining head, which BertModel has no place for: add heads=drop", 1, true), err)
    assert.falsy(H.exists(dir .. "/x.pt"))
  end)
end)
