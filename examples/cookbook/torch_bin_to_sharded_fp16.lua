-- Cookbook (g): a PyTorch `.bin` (torch.save of a state dict, as
-- transformers' pytorch_model.bin) -> a float16 safetensors checkpoint
-- sharded as Hugging Face writes it: OUT/model-00001-of-0000N.safetensors
-- ... plus OUT/model.safetensors.index.json (one plain OUT/model.safetensors
-- when everything fits in one shard). Every shard's __metadata__ says
-- format "pt", as transformers' save_pretrained writes and its loader
-- checks. docs/cookbook/torch_bin_to_sharded_fp16.md.
--
--   graft run examples/cookbook/torch_bin_to_sharded_fp16.lua SRC OUT [max_shard_size=5GB]
--
-- SRC: any file graft opens holding the state dict (a .bin/.pt, .safetensors,
-- .npz ...). OUT: a directory (created if missing). max_shard_size as
-- transformers takes it: "5GB" (10^9 bytes each, its default), "500MiB", or
-- a number of bytes. The shards and the index are committed as one set.

local graft = require "graft"

local src, out = ...
if not (src and out) then
  error("usage: graft run examples/cookbook/torch_bin_to_sharded_fp16.lua SRC OUT [max_shard_size=5GB]", 0)
end
local opts = { max_shard_size = "5GB" }
for i = 3, select("#", ...) do
  local k, v = select(i, ...):match("^([%w_]+)=(.+)$")
  if k ~= "max_shard_size" then error("unknown argument " .. select(i, ...) .. " (max_shard_size=SIZE)", 0) end
  opts[k] = v:match("^%d+$") and math.tointeger(tonumber(v)) or v
end

-- Floating tensors become float16 (a lazy cast, done while writing);
-- integer buffers (position_ids, num_batches_tracked) stay as they are.
local FLOAT = { float64 = true, float32 = true, bfloat16 = true, float16 = true }
local function to_float16(t)
  if FLOAT[t.dtype] then return t:cast("float16") end
  return t
end

local rules = {
  { ".", graft.keep, to_float16, name = "float16 (floats only)" },
}

local half = graft.map(graft.open(src), rules)
os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")
graft.save(out .. "/model.safetensors", half,
  { max_shard_size = opts.max_shard_size, metadata = { format = "pt" } })
print(("wrote %s/model.safetensors (%d tensors, float16, shards of at most %s)"):format(
  out, #graft.names(half), tostring(opts.max_shard_size)))
