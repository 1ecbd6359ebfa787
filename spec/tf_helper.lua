-- Hand-built TensorFlow bundles for specs: protobuf encoding of
-- BundleHeaderProto / BundleEntryProto (field numbers of docs/formats/tf.md#bundle-header,
-- docs/formats/tf.md#bundle-entries, docs/formats/tf.md#small-protos) and a bundle writer that takes raw entries, so specs can make
-- what graft's writer never would (partitioned variables, broken files).
local core = require "graft.core"
local H = require "helper"

local T = {}

function T.varint(v)
  local out = {}
  repeat
    local b = v & 0x7F
    v = v >> 7
    if v ~= 0 then b = b | 0x80 end
    out[#out + 1] = string.char(b)
  until v == 0
  return table.concat(out)
end

local function tag(field, wt) return T.varint(field << 3 | wt) end
local function vfield(field, v) return tag(field, 0) .. T.varint(v) end
local function lfield(field, s) return tag(field, 2) .. T.varint(#s) .. s end

T.DT = { float = 1, double = 2, int32 = 3, string = 7, int64 = 9, variant = 21 }

function T.shape(dims)
  local s = {}
  for _, d in ipairs(dims) do s[#s + 1] = lfield(2, d ~= 0 and vfield(1, d) or "") end
  return table.concat(s)
end

-- slices: list of {start = {...}, length = {...}} (length -1 = full dim).
function T.slice(sl)
  local ext = {}
  for d = 1, #sl.start do
    local e = ""
    if sl.length[d] >= 0 then
      e = (sl.start[d] ~= 0 and vfield(1, sl.start[d]) or "") .. vfield(2, sl.length[d])
    end
    ext[#ext + 1] = lfield(1, e)
  end
  return table.concat(ext)
end

-- e: {dtype, shape = {...}, shard, offset, size, crc (masked), slices}
function T.entry(e)
  local s = { vfield(1, e.dtype or 1), lfield(2, T.shape(e.shape or {})) }
  if (e.shard or 0) ~= 0 then s[#s + 1] = vfield(3, e.shard) end
  if (e.offset or 0) ~= 0 then s[#s + 1] = vfield(4, e.offset) end
  if (e.size or 0) ~= 0 then s[#s + 1] = vfield(5, e.size) end
  if e.crc then s[#s + 1] = tag(6, 5) .. string.pack("<I4", e.crc) end
  for _, sl in ipairs(e.slices or {}) do s[#s + 1] = lfield(7, T.slice(sl)) end
  return table.concat(s)
end

function T.header(num_shards, big)
  return vfield(1, num_shards) .. (big and vfield(2, 1) or "") .. lfield(3, vfield(1, 1))
end

function T.crc(bytes)
  return core.testing.crc32c_mask(core.testing.crc32c(bytes))
end

-- Entry for raw bytes of `data` placed at `offset` of shard `shard`.
function T.plain(dtype, shape, data, offset, shard)
  return T.entry({ dtype = dtype, shape = shape, shard = shard, offset = offset,
                   size = #data, crc = T.crc(data) })
end

-- A DT_STRING entry's bytes (docs/formats/tf.md#string-tensors): varint lengths, the masked
-- crc of the lengths (each as u32 LE), the bytes. Returns bytes, entry crc.
function T.strings(list)
  local lens, lc = {}, 0
  for i, s in ipairs(list) do
    lens[i] = T.varint(#s)
    lc = core.testing.crc32c(string.pack("<I4", #s), lc)
  end
  local m = string.pack("<I4", core.testing.crc32c_mask(lc))
  local body = table.concat(list)
  local c = core.testing.crc32c(body, core.testing.crc32c(m, lc))
  return table.concat(lens) .. m .. body, core.testing.crc32c_mask(c)
end

-- Write prefix.index from {key -> value} (sorted here) and the shards
-- (list of byte strings, shard 0 first). Returns the prefix.
function T.write(dir, entries, shards, opts)
  opts = opts or {}
  local keys = {}
  for k in pairs(entries) do keys[#keys + 1] = k end
  table.sort(keys)
  local values = {}
  for i, k in ipairs(keys) do values[i] = entries[k] end
  local prefix = dir .. "/ckpt"
  if not opts.no_header then
    table.insert(keys, 1, "")
    table.insert(values, 1, T.header(opts.num_shards or #shards, opts.big))
  end
  H.write(prefix .. ".index", core.testing.tftable_build(keys, values, opts.table))
  for i, bytes in ipairs(shards) do
    H.write(prefix .. string.format(".data-%05d-of-%05d", i - 1, opts.num_shards or #shards), bytes)
  end
  return prefix
end

return T
