-- graft.torch: the PyTorch-specific policy around graft.core's torch reader.
-- The C reader flattens a checkpoint into dotted names in pickle order
-- ("model.conv1.weight", "optimizer.state.0.exp_avg") and returns the whole
-- unpickled object as meta.tree. This module recognises torch files from
-- their first bytes and applies the open options `select` (keep one
-- sub-dict, its prefix removed) and `strip` (remove a prefix such as
-- DataParallel's "module.").

local M = {}

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

-- Extensions torch files commonly carry; used only when the bytes alone
-- do not decide (a zip whose first member is not torch-like, or a pickle of
-- protocol 0 or 1, which has no PROTO opcode).
M.extensions = { pt = true, pth = true, bin = true, pkl = true, ckpt = true, pt2 = true,
                 pickle = true }

local function has_torch_ext(path)
  local ext = path:match("%.([%w_]+)$")
  return ext ~= nil and M.extensions[ext:lower()] == true
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
function M.is_zip(path, head)
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
function M.is_pickle(path, head)
  local b1, b2 = head:byte(1, 2)
  if b1 == 0x80 and b2 and b2 <= 5 then return true end
  return has_torch_ext(path) and head:find("^[%(}%]c]") ~= nil
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
function M.shape(path, tensors, names, meta, opts)
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

return M
