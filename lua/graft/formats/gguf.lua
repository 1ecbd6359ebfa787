-- GGUF (llama.cpp / ggml): detection, open (metadata shaping) and save
-- policy (which keys, which tensor types, alignment). Bytes are in
-- src/formats/gguf.c and src/tensor/quant.c; docs/formats/gguf.md.

local M = { name = "gguf" }

M.formats = {
  { name = "gguf", description = "llama.cpp / ggml GGUF v2 and v3 (metadata in graft.meta; "
      .. "block-quantised tensors as q4_0 ... q8_k dtypes, dequantised by cast)",
    extensions = { "gguf" }, read = true, write = true, keeps_blocks = true,
    save_options = {
      metadata = "key/values to write: a list of {key, type, value [, item_type]}, or a map "
        .. "updating the source file's (numbers and arrays as {type = ..., value = ...})",
      quantize = "\"q8_0\" or \"q4_0\": quantise float tensors of 2+ dims with whole blocks",
      types = "name -> stored type (a dtype, or \"q8_0\" / \"q4_0\")",
      alignment = "data alignment, a power of two (default: general.alignment, else 32)",
    } },
}

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

-- graft dtypes of ggml's block-quantised types (tensor/quant.h).
M.quant_dtypes = {
  q4_0 = true, q4_1 = true, q5_0 = true, q5_1 = true, q8_0 = true,
  q2_k = true, q3_k = true, q4_k = true, q5_k = true, q6_k = true, q8_k = true,
}

function M.detect(head, _, ctx)
  if ctx.stage == "bytes" and head:sub(1, 4) == "GGUF" then return "gguf" end
  return nil
end

-- meta.kv as the file has it (duplicates kept); meta.metadata key -> value,
-- the first occurrence winning as in gguf-py's GGUFReader.
function M.open(path, opts, ctx)
  local tensors, names, meta = ctx.read(path, "gguf", opts)
  local md = {}
  for _, e in ipairs(meta.kv) do
    if md[e.key] == nil then md[e.key] = e.value end
  end
  meta.metadata = md
  return ctx.remember(tensors, names, meta)
end

local value_types = {
  uint8 = true, int8 = true, uint16 = true, int16 = true, uint32 = true,
  int32 = true, float32 = true, bool = true, string = true, array = true,
  uint64 = true, int64 = true, float64 = true,
}

-- One entry from a map value: {type = ..., value = ...[, item_type]}, or a
-- string / boolean whose type is obvious. Numbers need an explicit type.
local function entry_of(path, key, v)
  local tv = type(v)
  if tv == "string" then return { key = key, type = "string", value = v } end
  if tv == "boolean" then return { key = key, type = "bool", value = v } end
  if tv == "table" and value_types[v.type] then
    return { key = key, type = v.type, value = v.value, item_type = v.item_type }
  end
  fail("%s: opts.metadata[%q]: give numbers and arrays as {type = ..., value = ...}", path, key)
end

-- The kv list to write: opts.metadata as a list is taken whole; as a map
-- it updates (in place) or extends the source file's kv list.
local function kv_list(path, opts, src)
  local md = opts.metadata
  if type(md) == "table" and md[1] ~= nil then
    for i, e in ipairs(md) do
      if type(e) ~= "table" or type(e.key) ~= "string" or not value_types[e.type] then
        fail("%s: opts.metadata[%d] must be {key = ..., type = ..., value = ...}", path, i)
      end
    end
    return md
  end
  -- A source's repeated keys are dropped after the first (the value
  -- meta.metadata shows): gguf-py and llama.cpp refuse a key twice.
  local kv, seen = {}, {}
  for _, e in ipairs(src and src.format == "gguf" and src.kv or {}) do
    if not seen[e.key] then kv[#kv + 1] = e; seen[e.key] = true end
  end
  if md ~= nil then
    if type(md) ~= "table" then fail("%s: opts.metadata must be a table", path) end
    local keys = {}
    for k in pairs(md) do
      if type(k) ~= "string" then fail("%s: opts.metadata keys must be strings", path) end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local e, found = entry_of(path, k, md[k]), false
      for i, old in ipairs(kv) do
        if old.key == k then kv[i] = e; found = true end
      end
      if not found then kv[#kv + 1] = e end
    end
  end
  return kv
end

-- Alignment: opts.alignment, else the kv list's general.alignment, else 32;
-- the kv list is made to say it whenever it is not 32.
local function alignment(path, opts, kv)
  local at
  for i, e in ipairs(kv) do
    if e.key == "general.alignment" and not at then at = i end
  end
  local a = opts.alignment or (at and kv[at].value) or 32
  if math.type(a) ~= "integer" or a <= 0 or a & (a - 1) ~= 0 or a > 0xffffffff then
    fail("%s: alignment %s is not a power of two", path, tostring(a))
  end
  if at then
    if kv[at].value ~= a then
      local copy = {}
      for i, e in ipairs(kv) do copy[i] = e end
      copy[at] = { key = "general.alignment", type = "uint32", value = a }
      kv = copy
    end
  elseif a ~= 32 then
    local copy = {}
    for i, e in ipairs(kv) do copy[i] = e end
    copy[#copy + 1] = { key = "general.alignment", type = "uint32", value = a }
    kv = copy
  end
  return a, kv
end

local quant_targets = { q8_0 = true, q4_0 = true }
local float_dtypes = { float64 = true, float32 = true, float16 = true, bfloat16 = true }

-- Stored type per tensor: opts.types[name] first; else opts.quantize for
-- real tensors of 2+ dims whose rows hold whole 32-element blocks (1-D
-- norms and biases stay as they are, as llama.cpp's converters do).
local function tensor_types(path, tensors, names, opts)
  local q = opts.quantize
  if q ~= nil and not quant_targets[q] then
    fail("%s: opts.quantize must be \"q8_0\" or \"q4_0\"", path)
  end
  local types, out = {}, {}
  for _, n in ipairs(names) do
    local t = tensors[n]
    local want = opts.types and opts.types[n]
    if want == nil and q and float_dtypes[t.dtype] and t.ndim >= 2 and t.shape[t.ndim] % 32 == 0 then
      want = q
    end
    if want and not quant_targets[want] and want ~= t.dtype then
      local ok, c = pcall(t.cast, t, want)
      if not ok then fail("%s: %s: opts.types: %s", path, n, tostring(c):gsub("^graft: ", "")) end
      t = c
      want = nil
    end
    out[n] = t
    if want then types[n] = want end
  end
  return out, types
end

function M.save(path, tensors, names, opts, ctx)
  local kv = kv_list(path, opts, ctx.source_meta)
  local align
  align, kv = alignment(path, opts, kv)
  local out, types = tensor_types(path, tensors, names, opts)
  ctx.write(path, "gguf", names, out,
    { header = { kv = kv, types = types, alignment = align }, progress = ctx.progress(path) })
end

return M
