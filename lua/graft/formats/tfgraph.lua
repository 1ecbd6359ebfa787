-- graft.formats.tfgraph: TensorFlow graphs. Frozen GraphDef `.pb` files (Const
-- nodes as tensors), MetaGraphDef `.meta` files and SavedModel directories
-- (variables from variables/variables.*, signatures and variable facts in
-- graft.meta), and patching the Consts of a frozen graph.
-- Bytes live in C (src/formats/tf/graph.c); this module finds the files.

local core = require "graft.core"

local M = { name = "tfgraph" }

M.formats = {
  { name = "graphdef", description = "TensorFlow frozen GraphDef .pb (Const nodes as tensors); "
      .. "written as a patched copy of a graph",
    extensions = { "pb" }, read = true, write = true,
    save_options = { base = "the frozen .pb whose Consts are replaced (required)" } },
  { name = "metagraph", description = "TensorFlow MetaGraphDef .meta (Const nodes as tensors)",
    read = true, write = false },
  { name = "savedmodel", description = "TensorFlow SavedModel directory (variables as tensors; "
      .. "signatures in graft.meta); written as a copy of a SavedModel with new variable values",
    read = true, write = true,
    save_options = { base = "the SavedModel directory copied, its variables replaced (required)" } },
}

local function readable(p)
  local f = io.open(p, "rb")
  if not f then return false end
  -- a directory opens on Linux but cannot be read
  local ok, r = pcall(f.read, f, 0)
  f:close()
  return ok and r ~= nil
end

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

local function inner(msg)
  return (tostring(msg):gsub("^[^\n]-:%d+: graft: ", ""):gsub("^graft: ", ""))
end

-- A directory holding saved_model.pb is a SavedModel (asked before the
-- first bytes are read, since a directory has none). Protobuf files carry
-- no magic number: when no format's first bytes matched, the name decides.
function M.detect(_, path, ctx)
  if ctx.stage == "path" then
    if readable(path .. "/saved_model.pb") then return "savedmodel" end
  elseif ctx.stage == "late" then
    if path:match("saved_model%.pb$") then return "savedmodel" end
    if path:match("%.pb$") then return "graphdef" end
    if path:match("%.meta$") then return "metagraph" end
  end
  return nil
end

-- A SavedModel's variables are a TF checkpoint (with its object-graph meta).
local tf = require "graft.formats.tf"
local read_checkpoint = tf.read

local function savedmodel_dir(path)
  if path:match("saved_model%.pb$") then
    return path:match("^(.*)/[^/]*$") or "."
  end
  return path
end

-- A SavedModel: the checkpoint in variables/ (keys as they are) as the
-- tensors; graft.meta gets the serving meta graph's signatures, variables
-- (name, dtype, shape and checkpoint key), tags and versions, and the
-- checkpoint's own meta as meta.checkpoint (its fields also at the top
-- level where the graph's meta has no field of that name).
function M.open_savedmodel(path)
  local dir = savedmodel_dir(path)
  local _, _, meta = core.read(dir .. "/saved_model.pb", "savedmodel_pb")
  local prefix = dir .. "/variables/variables"
  local tensors, names = {}, {}
  if readable(prefix .. ".index") then
    local ok, t, n, cmeta = pcall(read_checkpoint, prefix)
    if not ok then fail("%s: variables: %s", path, inner(t)) end
    tensors, names, meta.checkpoint = t, n, cmeta
    -- the checkpoint's facts (num_shards, entries, object_graph, ...) are
    -- also at the top, where the graph has not said the same thing
    meta.skipped = nil -- no Consts are read from a SavedModel's graph
    for k, v in pairs(cmeta) do
      if meta[k] == nil then meta[k] = v end
    end
  end
  meta.format = "savedmodel"
  meta.directory = dir
  return tensors, names, meta
end

function M.open(path, _, ctx)
  if ctx.format == "savedmodel" then return ctx.remember(M.open_savedmodel(path)) end
  return ctx.remember(ctx.read(path, ctx.format))
end

-- graft.save(path, tensors, {format = "graphdef", base = "frozen.pb"}):
-- base with the Consts named in tensors replaced, every other byte kept.
function M.save(path, tensors, names, opts, ctx)
  if ctx.format == "savedmodel" then
    return require("graft.formats.tfsaved").save(path, tensors, names, opts, ctx)
  end
  if type(opts.base) ~= "string" then
    fail("%s: format graphdef writes a patched copy of a graph: pass opts.base = \"frozen.pb\"", path)
  end
  ctx.write(path, "graphdef", names, tensors, { base = opts.base, progress = ctx.progress(path) })
end

return M
