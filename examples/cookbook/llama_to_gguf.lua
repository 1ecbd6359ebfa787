-- Cookbook (h): a llama-style PyTorch state dict (Hugging Face names:
-- model.layers.N.self_attn.q_proj.weight ...; grouped-query attention with
-- n_head query heads and n_kv_head key/value heads) -> a GGUF file with
-- llama.cpp's tensor names (blk.N.attn_q.weight ...), the llama.* metadata
-- llama.cpp reads, and q/k rows permuted for llama.cpp's RoPE as
-- convert_hf_to_gguf.py does. docs/cookbook/llama_to_gguf.md.
--
--   graft run examples/cookbook/llama_to_gguf.lua SRC OUT.gguf [config=config.json] [outtype=f32|f16]
--
-- SRC: any file graft opens holding the state dict (.bin/.pt, safetensors,
-- a sharded *.safetensors.index.json ...). config: transformers'
-- config.json (default: config.json beside SRC) for the head counts and
-- the other hyper-parameters. outtype f16 stores matrices as float16 and
-- keeps the 1-D norms float32, as llama.cpp's converter does; f32 (the
-- default) stores everything as float32. No tokenizer is written: add the
-- tokenizer.ggml.* keys (graft.save's metadata) before running llama.cpp.

local graft = require "graft"
local json = require "graft.json"
local L = graft.layouts

local src, out = ...
local usage = "usage: graft run examples/cookbook/llama_to_gguf.lua SRC OUT.gguf [config=config.json] [outtype=f32|f16]"
if not (src and out) then error(usage, 0) end
local args = { config = (src:match("^(.*/)") or "") .. "config.json", outtype = "f32" }
for i = 3, select("#", ...) do
  local k, v = select(i, ...):match("^([%w_]+)=(.+)$")
  if args[k] == nil then error("unknown argument " .. select(i, ...) .. "\n" .. usage, 0) end
  args[k] = v
end
if args.outtype ~= "f32" and args.outtype ~= "f16" then error("outtype must be f32 or f16", 0) end

local f = assert(io.open(args.config, "r"))
local cfg = json.decode(f:read("a"))
f:close()
local n_head = math.tointeger(cfg.num_attention_heads)
local n_kv_head = math.tointeger(cfg.num_key_value_heads or cfg.num_attention_heads)

-- Matrices as the chosen outtype, 1-D tensors (norms) float32.
local function store(t)
  if #t.shape >= 2 and args.outtype == "f16" then return t:cast("float16") end
  return t:cast("float32")
end

-- q and k rows go from Hugging Face's rotary layout (each head's two halves
-- apart) to llama.cpp's (adjacent pairs): convert_hf_to_gguf.py's permute,
-- with n_head for q and n_kv_head for k.
local function q_rows(t) return store(L.rope_permute(t, n_head)) end
local function k_rows(t) return store(L.rope_permute(t, n_head, n_kv_head)) end

local layer = "^model%.layers%.(%d+)%."
local rules = {
  { "^model%.embed_tokens%.weight$", "token_embd.weight", store, name = "store" },
  { layer .. "input_layernorm%.weight$", "blk.%1.attn_norm.weight", store, name = "store" },
  { layer .. "self_attn%.q_proj%.weight$", "blk.%1.attn_q.weight", q_rows, name = "rope_permute(n_head)" },
  { layer .. "self_attn%.k_proj%.weight$", "blk.%1.attn_k.weight", k_rows,
    name = "rope_permute(n_head, n_kv_head)" },
  { layer .. "self_attn%.v_proj%.weight$", "blk.%1.attn_v.weight", store, name = "store" },
  { layer .. "self_attn%.o_proj%.weight$", "blk.%1.attn_output.weight", store, name = "store" },
  { layer .. "self_attn%.rotary_emb%.inv_freq$", graft.drop },  -- llama.cpp computes these
  { layer .. "post_attention_layernorm%.weight$", "blk.%1.ffn_norm.weight", store, name = "store" },
  { layer .. "mlp%.gate_proj%.weight$", "blk.%1.ffn_gate.weight", store, name = "store" },
  { layer .. "mlp%.up_proj%.weight$", "blk.%1.ffn_up.weight", store, name = "store" },
  { layer .. "mlp%.down_proj%.weight$", "blk.%1.ffn_down.weight", store, name = "store" },
  { "^model%.norm%.weight$", "output_norm.weight", store, name = "store" },
  { "^lm_head%.weight$", "output.weight", store, name = "store" },
}

local function u32(v) return { type = "uint32", value = math.tointeger(v) } end
local function f32(v) return { type = "float32", value = v + 0.0 } end
local hidden = math.tointeger(cfg.hidden_size)
-- general.file_type: llama_ftype ALL_F32 = 0, MOSTLY_F16 = 1.
local metadata = {
  { key = "general.architecture", type = "string", value = "llama" },
  { key = "general.name", type = "string", value = (src:match("([^/]+)$")) },
  { key = "llama.block_count", type = "uint32", value = u32(cfg.num_hidden_layers).value },
  { key = "llama.context_length", type = "uint32", value = u32(cfg.max_position_embeddings).value },
  { key = "llama.embedding_length", type = "uint32", value = hidden },
  { key = "llama.feed_forward_length", type = "uint32", value = u32(cfg.intermediate_size).value },
  { key = "llama.attention.head_count", type = "uint32", value = n_head },
  { key = "llama.attention.head_count_kv", type = "uint32", value = n_kv_head },
  { key = "llama.rope.dimension_count", type = "uint32", value = hidden // n_head },
  { key = "llama.rope.freq_base", type = "float32", value = f32(cfg.rope_theta or 10000).value },
  { key = "llama.attention.layer_norm_rms_epsilon", type = "float32", value = f32(cfg.rms_norm_eps).value },
  { key = "general.file_type", type = "uint32", value = args.outtype == "f16" and 1 or 0 },
}

local gguf = graft.map(graft.open(src), rules)
graft.save(out, gguf, { format = "gguf", metadata = metadata })
print(("wrote %s: %d tensors (llama, %d heads, %d kv heads, %s)"):format(out, #graft.names(gguf),
  n_head, n_kv_head, args.outtype))
