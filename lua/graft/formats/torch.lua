-- graft.formats.torch: PyTorch files (torch.save zip archives, legacy
-- pickles) around graft.core's torch reader and writer
-- (src/formats/torch/). The C reader flattens a checkpoint into dotted
-- names in pickle order ("model.conv1.weight", "optimizer.state.0.exp_avg")
-- and returns the whole unpickled object as meta.tree. This module
-- recognises torch files from their first bytes, applies the open options
-- `select` (keep one sub-dict, its prefix removed) and `strip` (remove a
-- prefix such as DataParallel's "module."), and turns a (possibly nested)
-- Lua table into the object torch.save would have pickled.

local util = require "graft.util"
local json = require "graft.json"

local fail = util.fail

local M = { name = "torch" }

local open_options = {
  select = "keep the entries under this dotted key (\"model\"), the prefix removed",
  strip = "remove this prefix from every name (\"module.\")",
}

M.formats = {
  { name = "torch", description = "PyTorch torch.save file (zip, legacy or 0.1.x tar)",
    extensions = { "pt", "pth", "bin" }, read = true, write = true, nested = true,
    open_options = open_options },
  { name = "pickle", description = "a plain Python pickle of tensors and containers",
    read = true, write = false, open_options = open_options },
}

-- Extensions torch files commonly carry; used only when the bytes alone
-- do not decide (a zip whose first member is not torch-like, or a pickle of
-- protocol 0 or 1, which has no PROTO opcode).
local torch_exts = { pt = true, pth = true, bin = true, pkl = true, ckpt = true,
                     pt2 = true, pickle = true }

local function has_torch_ext(path)
  local ext = path:match("%.([%w_]+)$")
  return ext ~= nil and torch_exts[ext:lower()] == true
end

-- Name of the first member of a zip from its local header, or nil.
local function first_member(head)
  if #head < 30 or head:sub(1, 4) ~= "PK\3\4" then return nil end
  local n = string.unpack("<I2", head, 27)
  return head:sub(31, 30 + n)
end

-- Members torch.save and torch.jit.save put first, all inside one folder.
local torch_members = { "^[^/]+/data%.pkl$", "^[^/]+/data/%d+$", "^[^/]+/constants%.pkl$",
                        "^[^/]+/version$", "^[^/]+/byteorder$", "^[^/]+/%.data/",
                        "^[^/]+/code/", "^[^/]+/%.format_version$",
                        -- torch.export.save (.pt2) archives
                        "^[^/]+/data/weights/", "^[^/]+/data/constants/",
                        "^[^/]+/archive_format$", "^[^/]+/models/" }

-- Whether a zip (head: its first 512 bytes or all of it) is a torch
-- archive: its first member is one torch writes, or the extension is a
-- torch one and the member is not an .npy.
local function is_zip(path, head)
  local name = first_member(head)
  if not name then return false end
  for _, pat in ipairs(torch_members) do
    if name:find(pat) then return true end
  end
  return has_torch_ext(path) and not name:find("%.npy$")
end

-- Whether a file no other format claimed is a torch file or a pickle: it
-- starts with the pickle PROTO opcode, or (protocol 0 and 1 pickles have
-- none) its extension is a torch one and it starts with an opcode such a
-- pickle starts with (MARK, EMPTY_DICT, EMPTY_LIST, GLOBAL).
local function is_pickle(path, head)
  local b1, b2 = head:byte(1, 2)
  if b1 == 0x80 and b2 and b2 <= 5 then return true end
  return has_torch_ext(path) and head:find("^[%(}%]c]") ~= nil
end

-- torch <= 0.1.9 saved a POSIX tar whose members are sys_info, pickle,
-- tensors and storages: claimed when the first member is one of them.
local tar_members = { sys_info = true, pickle = true, tensors = true, storages = true }

local function is_tar(head)
  if #head < 512 or head:sub(258, 262) ~= "ustar" then return false end
  return tar_members[head:sub(1, 100):match("^[^%z]*")] == true
end

local function starts(s, prefix)
  return s:sub(1, #prefix) == prefix
end

-- Keep the tensors under `sel` ("model", "model.encoder"), renamed without
-- the prefix; a name equal to sel (one tensor selected) keeps its last part.
local function select(path, tensors, names, sel)
  if type(sel) ~= "string" or sel == "" then fail("%s: opts.select must be a non-empty string", path) end
  local out, order = {}, {}
  local prefix = sel .. "."
  for _, n in ipairs(names) do
    local new
    if n == sel then new = sel:match("([^.]*)$")
    elseif starts(n, prefix) then new = n:sub(#prefix + 1) end
    if new then
      if out[new] then fail("%s: select %q: two tensors would be named %q", path, sel, new) end
      out[new] = tensors[n]
      order[#order + 1] = new
    end
  end
  return out, order
end

local function top_keys(tree)
  local keys = {}
  if type(tree) == "table" then
    for k in pairs(tree) do keys[#keys + 1] = tostring(k) end
  end
  table.sort(keys)
  return table.concat(keys, ", ")
end

-- Is `sel` a key path of the tree (dict keys may themselves hold dots)?
local function in_tree(node, sel)
  if type(node) ~= "table" then return false end
  if node[sel] ~= nil then return true end
  local i = 0
  while true do
    i = sel:find(".", i + 1, true)
    if not i then return false end
    local k, rest = sel:sub(1, i - 1), sel:sub(i + 1)
    local child = node[k]
    if child == nil and k:match("^%d+$") then child = node[tonumber(k) + 1] end
    if child ~= nil and in_tree(child, rest) then return true end
  end
end

local function strip(path, tensors, names, prefix)
  if type(prefix) ~= "string" or prefix == "" then fail("%s: opts.strip must be a non-empty string", path) end
  local out, order = {}, {}
  for _, n in ipairs(names) do
    local new = starts(n, prefix) and n:sub(#prefix + 1) or n
    if new == "" then new = n end
    if out[new] then fail("%s: strip %q: two tensors would be named %q", path, prefix, new) end
    out[new] = tensors[n]
    order[#order + 1] = new
  end
  return out, order
end

-- Apply opts.select and opts.strip to what core.read returned.
local function shape(path, tensors, names, meta, opts)
  if opts.select ~= nil then
    local sel = opts.select
    tensors, names = select(path, tensors, names, sel)
    if #names == 0 and not in_tree(meta.tree, sel) then
      fail("%s: select %q: no such entry (top-level keys: %s)", path, tostring(sel), top_keys(meta.tree))
    end
    meta.select = sel
  end
  if opts.strip ~= nil then
    tensors, names = strip(path, tensors, names, opts.strip)
    meta.strip = opts.strip
  end
  return tensors, names, meta
end

-- A torch archive is a zip whose members say so (after Keras's .keras zip
-- and before numpy's .npz, which claims any zip); a pickle has no magic
-- beyond its PROTO opcode, so safetensors (whose header length may start
-- with 0x80) is asked first.
function M.detect(head, path, ctx)
  if ctx.stage ~= "bytes" then return nil end
  if head:sub(1, 4) == "PK\3\4" and is_zip(path, head) then return "torch" end
  if is_pickle(path, head) then return "torch" end
  if is_tar(head) then return "torch" end
  return nil
end

function M.open(path, opts, ctx)
  local tensors, names, meta = ctx.read(path, ctx.format)
  return ctx.remember(shape(path, tensors, names, meta, opts))
end

-- ------------------------------------------------------------ writing

-- A torch file pickles one Python object: a state dict (every value a
-- tensor: an OrderedDict, names in graft.names order) or a checkpoint of
-- nested tables ({model = {...}, epoch = 10}): tables with keys 1..n become
-- lists, other tables dicts (string or integer keys), numbers int or float,
-- strings str, booleans bool. core.write gets the tensors under dotted names
-- (list items 0-based; these names only label errors and progress) and an
-- ordered tree: {kind = "dict", k1, v1, ...} / {kind = "list", v1, ...}.
local function is_sequence(t)
  local count, max = 0, 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    count = count + 1
    if k > max then max = k end
  end
  return count > 0 and max == count
end

local function torch_keys(t, opts, ctx)
  local all_strings = true
  for k in pairs(t) do
    if type(k) ~= "string" then
      all_strings = false
      if math.type(k) ~= "integer" then
        fail("save: dict keys must be strings or integers (got %s)", type(k))
      end
    end
  end
  if all_strings then return opts and ctx.ordered_names(t, opts) or ctx.names(t) end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) ~= type(b) then return type(a) == "number" end
    return a < b
  end)
  return keys
end

function M.save(path, tensors, _, opts, ctx)
  local names, flat, casts, used, visiting = {}, {}, {}, {}, {}
  local function leaf(t, name)
    if casts[t] then return casts[t] end
    local c = ctx.cast(path, t, opts.dtype)
    casts[t] = c
    local n, k = name, 1
    while used[n] do k = k + 1; n = name .. "#" .. k end
    used[n] = true
    names[#names + 1] = n
    flat[n] = c
    return c
  end
  local function join(prefix, key)
    return prefix == "" and tostring(key) or prefix .. "." .. tostring(key)
  end
  local function node(v, name, depth, keyopts)
    if ctx.is_tensor(v) then return leaf(v, name) end
    local ty = type(v)
    if ty == "number" or ty == "string" or ty == "boolean" then return v end
    if ty ~= "table" then fail("save: %q: cannot write a %s to a torch file", name, ty) end
    if visiting[v] then fail("save: %q: the table contains itself", name) end
    if depth >= 100 then fail("save: %q: tables nested deeper than 100 levels", name) end
    visiting[v] = true
    local out
    if is_sequence(v) then
      out = { kind = "list" }
      for i = 1, #v do out[i] = node(v[i], join(name, i - 1), depth + 1) end
    else
      out = { kind = "dict" }
      for _, k in ipairs(torch_keys(v, keyopts, ctx)) do
        out[#out + 1] = k
        out[#out + 1] = node(v[k], join(name, k), depth + 1)
      end
    end
    visiting[v] = nil
    return out
  end
  local tree = node(tensors, "", 0, opts)
  -- An empty table is an empty state dict (an OrderedDict), not a dict.
  if next(tensors) == nil then tree = nil end
  ctx.write(path, "torch", names, flat, { tree = tree, progress = ctx.progress(path),
    provenance = ctx.provenance and json.encode(ctx.provenance) or nil })
end

return M
