-- Cookbook: a BERT checkpoint in google-research/bert's TF1 layout
-- (bert/embeddings/word_embeddings, bert/encoder/layer_<n>/attention/self/
-- query/kernel, ..., bert/pooler/dense/kernel; LayerNorm gamma/beta; Adam
-- slots and global_step) -> a torch state dict with Hugging Face's
-- BertModel names (embeddings.word_embeddings.weight,
-- encoder.layer.<n>.attention.self.query.weight, ..., pooler.dense.weight).
-- docs/cookbook/tf1_bert_to_torch.md explains each rule.
--
--   graft run examples/cookbook/tf1_bert_to_torch.lua CKPT OUT.pt [heads=drop] [prefix=bert.] [template=T.pt]
--
-- heads=drop: drop the pretraining heads (cls/predictions/...,
-- cls/seq_relationship/...) a released checkpoint carries and BertModel
-- has no place for; without it the recipe stops and says so. prefix: put in
-- front of every name (HF's BertFor* models hold the encoder as `bert.`).
-- template: the target's state_dict file, checked (graft.check) before
-- anything is written.
--
-- As a module (dofile): {rules = function(opts), run = function(src, dst,
-- opts [, overrides])}.

local graft = require "graft"

local source = debug.getinfo(1, "S").source
local here = source:match("^@(.*[/\\])") or "./"
local tf1 = dofile(here .. "tf1.lua")

local R = {}
local RECIPE = "tf1_bert_to_torch"
local ACCEPTED = { heads = "drop: drop the cls/ pretraining heads",
                   prefix = "put in front of every torch name (e.g. bert.)",
                   template = "the target's state_dict file to check against" }
local USAGE = "usage: graft run examples/cookbook/tf1_bert_to_torch.lua CKPT OUT.pt [heads=drop] "
  .. "[prefix=bert.] [template=T.pt]"

-- bert/encoder/layer_0/attention/output/LayerNorm/gamma ->
-- encoder.layer.0.attention.output.LayerNorm.weight: scopes become module
-- paths, layer_<n> the ModuleList entry layer.<n>; kernel and gamma are
-- torch's weight, beta its bias.
local LEAF = { kernel = "weight", gamma = "weight", beta = "bias", bias = "bias" }

local function hf_name(prefix)
  return function(name)
    local path, leaf = name:match("^bert/(.*)/([%w_]+)$")
    path = path:gsub("^encoder/layer_(%d+)/", "encoder/layer/%1/"):gsub("/", ".")
    return prefix .. path .. "." .. (LEAF[leaf] or leaf)
  end
end

function R.rules(opts)
  if opts.heads ~= nil and opts.heads ~= "drop" then
    error(string.format("graft: %s: heads=%s: the only choice is heads=drop", RECIPE, opts.heads), 0)
  end
  local prefix = opts.prefix or ""
  local rename = hf_name(prefix)
  local heads = opts.heads == "drop" and { { "^cls/", graft.drop, name = "pretraining head (heads=drop)" } } or {}
  return graft.rules.extend(tf1.drop_training, heads, {
    -- Embedding tables are (vocab, hidden) in both: nn.Embedding.weight.
    { "^bert/embeddings/([%w_]+_embeddings)$", prefix .. "embeddings.%1.weight" },
    -- Dense kernels (in, out) -> nn.Linear weights (out, in). query, key,
    -- value, attention/output/dense and pooler/dense are square: a
    -- missing transpose keeps every shape and only the outputs show it.
    { "^bert/.*/kernel$", rename, "dense_tf_to_torch" },
    { "^bert/.*/bias$", rename },
    -- LayerNorm: gamma, beta -> weight, bias (same layout).
    { "^bert/.*/LayerNorm/gamma$", rename },
    { "^bert/.*/LayerNorm/beta$", rename },
  })
end

-- Without heads=drop, refuse a checkpoint carrying the pretraining heads.
local function vet(ckpt, opts, src)
  if opts.heads ~= nil then return end
  for _, name in ipairs(graft.names(ckpt)) do
    if name:match("^cls/") and not name:match("/adam_[mv]$") then
      error(string.format("graft: %s: %s: %s is a pretraining head, which BertModel has no place for: "
        .. "add heads=drop to drop the cls/ heads", RECIPE, src, name), 0)
    end
  end
end

return tf1.recipe(R, { recipe = RECIPE, accepted = ACCEPTED, usage = USAGE, vet = vet }, source, ...)
