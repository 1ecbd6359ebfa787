-- graft.registry: the formats graft reads and writes, one module per
-- family under lua/graft/formats/, listed below in detection order.
--
-- A family module returns a table:
--   formats     list of the format names it owns, each
--                 { name = "torch", description = "one line",
--                   extensions = { "pt", "pth" },  -- save-side choice, no dot
--                   read = true, write = true,
--                   nested = true,                 -- (optional) save takes
--                                                  -- nested tables, not only
--                                                  -- name -> tensor
--                   keeps_blocks = true,           -- (optional) save stores
--                                                  -- block-quantised tensors
--                                                  -- as they are (others get
--                                                  -- them dequantised)
--                   open_options = { select = "one line", ... },
--                   save_options = { ... } }
--               (options every format takes are in lua/graft/options.lua).
--   detect(head, path, ctx) -> a format name or nil. Called once per
--               stage, ctx.stage being
--                 "path"  head is nil: claim path forms that have no bytes
--                         of their own (directories, checkpoint prefixes);
--                 "bytes" head holds the first 512 bytes: claim by signature;
--                 "late"  no signature matched (and the file is not empty):
--                         claim by file name or a weaker signature.
--               ctx.zip_names(path) lists a zip's members (the C reader).
--   open(path, opts, ctx) -> model table, after ctx.remember(tensors,
--               names, meta); ctx.format is the format, ctx.auto whether it
--               was detected, ctx.open re-enters graft.open.
--   verify(path) (optional) -> number of entries whose checksums it checked
--               without loading tensors, or nil (graft verify then loads
--               every tensor).
--   save(path, tensors, names, opts, ctx): tensors already checked, ordered
--               (names) and cast (opts.dtype) unless the format is nested;
--               ctx.format, ctx.progress(path) (opts.progress as a function
--               or nil), ctx.source_meta (graft.meta of what was passed),
--               ctx.write (graft.core.write), ctx.names, ctx.cast, ctx.open
--               (graft.open), ctx.meta (graft.meta).
-- Bytes live in C: each format's reader and writer is a row of
-- src/formats/format.c, reached through graft.core.read / graft.core.write.
--
-- Adding a format: src/formats/<name>.{c,h} + its row in format.c, one
-- module lua/graft/formats/<family>.lua, and one line in `families` below.

local options = require "graft.options"
local util = require "graft.util"

local M = {}

-- Detection order: within each stage, earlier families claim first.
local families = {
  (require "graft.formats.numpy"),
  -- before tfgraph: a lone TensorProto .pb is told from a GraphDef .pb by
  -- its first fields, and tfgraph claims every other .pb by name
  (require "graft.formats.onnx"),
  (require "graft.formats.tfgraph"),
  (require "graft.formats.tf"),
  (require "graft.formats.keras"),
  -- before safetensors: its index claims any JSON text
  (require "graft.formats.tfjs"),
  (require "graft.formats.safetensors"),
  (require "graft.formats.torch"),
  (require "graft.formats.gguf"),
  -- last: t7 has no magic and claims only in the late stage
  (require "graft.formats.t7"),
}

M.families = families

local list, by_name = {}, {}
for _, fam in ipairs(families) do
  for _, f in ipairs(fam.formats) do
    f.family = fam
    f.open_options = f.open_options or {}
    f.save_options = f.save_options or {}
    f.extensions = f.extensions or {}
    list[#list + 1] = f
    by_name[f.name] = f
  end
end

M.list = list

function M.get(name)
  return by_name[name]
end

local function names_of(pred)
  local out = {}
  for _, f in ipairs(list) do
    if pred(f) then out[#out + 1] = f.name end
  end
  return out
end

-- The entry of a format name the caller gave, or an error listing the
-- known ones (with the closest, for a slip).
function M.named(op, path, name)
  local f = by_name[name]
  if f then return f end
  local known = names_of(function() return true end)
  local near = type(name) == "string" and options.closest(name, known)
  util.fail("%s %s: unknown format %q%s (known: %s)", op, path, tostring(name),
    near and string.format("; did you mean %q?", near) or "", table.concat(known, ", "))
end

-- Formats whose `op` options include key (common options excluded).
function M.taking(op)
  return function(key)
    return names_of(function(f) return f[op .. "_options"][key] ~= nil end)
  end
end

-- ------------------------------------------------------------ detection

local function run(stage, head, path, ctx)
  ctx.stage = stage
  for _, fam in ipairs(families) do
    local name = fam.detect and fam.detect(head, path, ctx)
    if name then return name end
  end
  return nil
end

-- Formats are recognised by their bytes, never by the save extension;
-- path forms first, since a prefix or a directory has no bytes of its own.
function M.detect(path, ctx)
  local found = run("path", nil, path, ctx)
  if found then return found end
  local head = util.head(path, 512)
  found = run("bytes", head, path, ctx)
  if found then return found end
  if #head == 0 then util.fail("%s: empty file", path) end
  found = run("late", head, path, ctx)
  if found then return found end
  local shown = head:sub(1, 8):gsub("[^\32-\126]", function(c)
    return string.format("\\x%02x", c:byte())
  end)
  util.fail("%s: unrecognised format (first bytes \"%s\")", path, shown)
end

-- ------------------------------------------------------------ saving

-- opts.format, else the longest extension any format declares that ends
-- the path (case-insensitive).
function M.for_save(path, opts)
  if opts.format ~= nil then return M.named("save", path, opts.format) end
  local lower, best, len = path:lower(), nil, 0
  for _, f in ipairs(list) do
    for _, ext in ipairs(f.extensions) do
      local suffix = "." .. ext
      if #suffix > len and lower:sub(-#suffix) == suffix then best, len = f, #suffix end
    end
  end
  if not best then
    util.fail("%s: cannot tell the format from the extension; pass opts.format", path)
  end
  return best
end

-- The count of entries whose checksums a family's verify(path) checked
-- without loading tensors, or nil when no family verifies this path.
function M.verify(path)
  for _, fam in ipairs(families) do
    local n = fam.verify and fam.verify(path)
    if n then return n end
  end
  return nil
end

-- ------------------------------------------------------------ listing

-- graft.formats(): a fresh copy of the registry, in detection order.
function M.describe(common)
  local out = {}
  for _, f in ipairs(list) do
    local e = { name = f.name, family = f.family.name, description = f.description,
                read = f.read == true, write = f.write == true, extensions = {},
                open_options = {}, save_options = {} }
    for i, x in ipairs(f.extensions) do e.extensions[i] = x end
    for _, op in ipairs({ "open", "save" }) do
      local dst = e[op .. "_options"]
      if (op == "open" and f.read) or (op == "save" and f.write) then
        for k, d in pairs(common[op]) do dst[k] = d end
        for k, d in pairs(f[op .. "_options"]) do dst[k] = d end
      end
    end
    out[#out + 1] = e
  end
  return out
end

return M
