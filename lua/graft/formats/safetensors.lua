-- graft.formats.safetensors: safetensors files, and checkpoints sharded
-- over several of them with a *.safetensors.index.json (Hugging Face's
-- layout: read through the index, written with save option
-- max_shard_size). Bytes live in C (src/formats/safetensors.c).

local core = require "graft.core"
local json = require "graft.json"
local util = require "graft.util"

local fail, inner = util.fail, util.inner

local M = { name = "safetensors" }

M.formats = {
  { name = "safetensors", description = "safetensors: a JSON header, then the tensor bytes",
    extensions = { "safetensors" }, read = true, write = true,
    save_options = {
      metadata = "table of string -> string written as the header's __metadata__",
      max_shard_size = "shard into files of at most this many bytes (a number, \"5GB\" "
        .. "or \"500MiB\") plus a .index.json when more than one is needed",
    } },
  { name = "safetensors_index", description = "a sharded checkpoint's *.safetensors.index.json: "
      .. "every shard opened as one table (written by safetensors' max_shard_size)",
    read = true, write = false },
}

function M.detect(head, _, ctx)
  if ctx.stage ~= "bytes" then return nil end
  -- JSON text (an index) has no control bytes; a safetensors header length
  -- always does (it is below 2^56, so its high byte is 0).
  if head:find("^%s*{") and not head:find("[%z\1-\8\14-\31]") then
    return "safetensors_index"
  end
  if #head >= 9 and head:sub(9, 9) == "{" then return "safetensors" end
  return nil
end

-- ------------------------------------------------------------ reading

-- Shard files sit beside their index: a bare file name, never a path.
local bad_shard_name = util.bad_file_name

-- A *.safetensors.index.json: every shard opened, one table, shard order.
local function open_sharded(path, opts, ctx)
  local ok, index = pcall(json.decode, util.read_text(path))
  if not ok then fail("%s: %s", path, inner(index)) end
  if type(index) ~= "table" or type(index.weight_map) ~= "table" then
    fail("%s: not a sharded checkpoint index (no weight_map)", path)
  end
  local shards, order = {}, {}
  for name, shard in pairs(index.weight_map) do
    if type(name) ~= "string" then
      fail("%s: weight_map must be an object of tensor name -> shard file", path)
    end
    if bad_shard_name(shard) then
      fail("%s: tensor %q: bad shard file name %q", path, name, tostring(shard))
    end
    if not shards[shard] then
      shards[shard] = {}
      order[#order + 1] = shard
    end
    shards[shard][name] = true
  end
  table.sort(order)
  local m, names, files = {}, {}, {}
  local sub = {}
  for k, v in pairs(opts) do sub[k] = v end
  sub.format = nil
  for _, shard in ipairs(order) do
    local file = util.dirname(path) .. "/" .. shard
    local ok_open, part = pcall(ctx.open, file, sub)
    if not ok_open then fail("%s: shard %s: %s", path, shard, inner(part)) end
    for _, name in ipairs(ctx.names(part)) do
      if not shards[shard][name] then
        fail("%s: tensor %q is in %s but the index does not list it there", path, name, shard)
      end
      if m[name] then fail("%s: tensor %q appears in two shards", path, name) end
      m[name] = part[name]
      names[#names + 1] = name
    end
    for name in pairs(shards[shard]) do
      if not part[name] then
        fail("%s: index maps %q to %s, which does not hold it", path, name, shard)
      end
    end
    files[#files + 1] = shard
  end
  local meta = { format = "safetensors", sharded = true, shards = files,
                 index_metadata = index.metadata }
  return ctx.remember(m, names, meta)
end

function M.open(path, opts, ctx)
  if ctx.format == "safetensors_index" then return open_sharded(path, opts, ctx) end
  return ctx.remember(ctx.read(path, ctx.format))
end

-- ------------------------------------------------------------ writing

-- Size strings as Hugging Face writes them: "5GB" (10^9), "500MiB" (2^20).
local units = { B = 1, KB = 1e3, MB = 1e6, GB = 1e9, TB = 1e12,
                KIB = 2^10, MIB = 2^20, GIB = 2^30, TIB = 2^40 }
local function parse_size(s)
  if type(s) == "number" then return s end
  local num, unit = tostring(s):upper():match("^%s*([%d%.]+)%s*(%a*)%s*$")
  local mul = units[unit ~= "" and unit or "B"]
  if not num or not mul then fail("save: bad max_shard_size %q", tostring(s)) end
  return math.floor(tonumber(num) * mul)
end

local function shard_name(path, i, n)
  local dir, base = path:match("^(.-)([^/]*)$")
  local stem, ext = base:match("^(.*)(%.[^.]+)$")
  if not stem then stem, ext = base, "" end
  return dir, string.format("%s-%05d-of-%05d%s", stem, i, n, ext)
end

local function write(ctx, path, names, tensors, opts, label)
  ctx.write(path, "safetensors", names, tensors,
    { metadata = opts.metadata, progress = ctx.progress(label) })
end

-- The shard files an existing index at index_path names (valid names
-- only, as open_sharded accepts them); {} when there is none.
local function old_shards(index_path, dir)
  local index = util.json_object(index_path)
  local out, seen = {}, {}
  if not index or type(index.weight_map) ~= "table" then return out end
  for _, shard in pairs(index.weight_map) do
    if not bad_shard_name(shard) and not seen[shard] then
      seen[shard] = true
      out[#out + 1] = dir .. shard
    end
  end
  return out
end

local function save_sharded(path, tensors, names, opts, ctx)
  local limit = parse_size(opts.max_shard_size)
  local shards, cur, size = {}, nil, 0
  local total = 0
  for _, n in ipairs(names) do
    local bytes = tensors[n].nbytes
    total = total + bytes
    if not cur or (size + bytes > limit and #cur > 0) then
      cur = {}
      shards[#shards + 1] = cur
      size = 0
    end
    cur[#cur + 1] = n
    size = size + bytes
  end
  if #shards <= 1 then return write(ctx, path, names, tensors, opts, path) end
  local dir, map, set = nil, {}, {}
  for i, list in ipairs(shards) do
    local d, file = shard_name(path, i, #shards)
    dir = d
    set[i] = { path = d .. file, names = list }
    for _, n in ipairs(list) do map[n] = file end
  end
  local index = { metadata = { total_size = total }, weight_map = map }
  local base = path:match("[^/]*$")
  local index_path = dir .. base .. ".index.json"
  local stale = old_shards(index_path, dir)
  -- One commit for the shards and the index (index last, after the old
  -- one is removed): a reader never sees new shards under an old index.
  core.safetensors_write_set(index_path, json.encode_pretty(index) .. "\n",
    set, tensors, { metadata = opts.metadata, progress = ctx.progress(path) })
  -- Then the old set's shards the new one does not reuse (other counts
  -- give other names: model-00001-of-00003 vs -of-00002).
  local new = {}
  for _, sh in ipairs(set) do new[sh.path] = true end
  util.remove_stale(stale, new)
end

function M.save(path, tensors, names, opts, ctx)
  if opts.max_shard_size then return save_sharded(path, tensors, names, opts, ctx) end
  write(ctx, path, names, tensors, opts, path)
end

return M
