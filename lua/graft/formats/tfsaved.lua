-- graft.formats.tfsaved: a SavedModel with its variables replaced (the
-- writer of the tfgraph family's "savedmodel" format).
--
-- graft.save(out, tensors, {format = "savedmodel", base = "in_savedmodel"})
-- writes a new SavedModel directory `out`: every file of `base` copied byte
-- for byte (saved_model.pb, fingerprint.pb, assets/, keras_metadata.pb ...)
-- except the variables bundle, which is written anew with the same keys in
-- the same order and shard layout: the tensors named in `tensors` (keys as
-- graft.open(base) gives them) take the new values, the others keep base's.
-- A new value must have its variable's dtype and shape; a name that is no
-- variable of base is an error. The directory is built beside `out` under a
-- temporary name and renamed into place, so `out` appears whole or not at
-- all; an existing `out` is refused.
local core = require "graft.core"
local tf = require "graft.formats.tf"
local util = require "graft.util"

local M = {}

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(p)
  return os.rename(p, p) ~= nil
end

local readable = util.is_file

local function read_all(p)
  local f, err = io.open(p, "rb")
  if not f then fail("%s: cannot open: %s", p, err) end
  local s = f:read("a")
  f:close()
  if not s then fail("%s: cannot read", p) end
  return s
end

-- The variables bundle a SavedModel keeps in variables/ (docs/formats/tfgraph.md#savedmodel-layout):
-- replaced, never copied.
local function is_bundle(rel)
  return rel == "variables/variables.index"
      or rel:match("^variables/variables%.data%-%d%d%d%d%d%-of%-%d%d%d%d%d$") ~= nil
end

-- Entries of base below it: {kind = "d" | "f", rel = path}, directories
-- before what they hold. Anything else (symlinks, devices) is refused.
local function entries(base)
  local p = io.popen("cd " .. q(base) .. " && find . -mindepth 1 -printf '%y %P\\0'")
  local all = p:read("a")
  local ok = p:close()
  if not ok then fail("%s: cannot list the SavedModel directory", base) end
  local list = {}
  for kind, rel in all:gmatch("(%a) ([^%z]*)%z") do
    if kind ~= "d" and kind ~= "f" then
      fail("%s: %s: not a regular file or directory; refusing to copy it", base, rel)
    end
    list[#list + 1] = { kind = kind, rel = rel }
  end
  table.sort(list, function(a, b) return a.rel < b.rel end)
  return list
end

-- New values checked against base's variables; the full table to write.
local function merge(out, base, src, keys, tensors, names)
  local known = {}
  for _, k in ipairs(keys) do known[k] = true end
  for _, n in ipairs(names) do
    if not known[n] then fail("%s: %s: not a variable of the SavedModel %s", out, n, base) end
  end
  local vals = {}
  for _, k in ipairs(keys) do
    local t, b = tensors[k], src[k]
    if t then
      if t.dtype ~= b.dtype then
        fail("%s: %s: dtype %s, the SavedModel's variable is %s", out, k, t.dtype, b.dtype)
      end
      local ts, bs = table.concat(t.shape, ","), table.concat(b.shape, ",")
      if ts ~= bs then
        fail("%s: %s: shape {%s}, the SavedModel's variable is {%s}", out, k, ts, bs)
      end
    end
    vals[k] = t or b
  end
  return vals
end

local function build(tmp, out, base, cmeta, keys, vals, progress, write)
  for _, e in ipairs(entries(base)) do
    local dst = tmp .. "/" .. e.rel
    if e.kind == "d" then
      if not os.execute("mkdir " .. q(dst)) then fail("%s: cannot create %s", out, e.rel) end
    elseif not is_bundle(e.rel) then
      core.write_file(dst, read_all(base .. "/" .. e.rel))
    end
  end
  if not exists(tmp .. "/variables") and not os.execute("mkdir " .. q(tmp .. "/variables")) then
    fail("%s: cannot create variables/", out)
  end
  tf.save(tmp .. "/variables/variables", vals, keys, { checkpoint_state = false },
    { source_meta = cmeta, write = write, progress = function() return progress end })
end

-- names: the order of tensors; ctx: the registry's save context (open,
-- names, meta, progress).
function M.save(out, tensors, names, opts, ctx)
  local base = opts.base
  if type(base) ~= "string" then
    fail("%s: format savedmodel writes a copy of a SavedModel with new variable values: "
      .. "pass opts.base = \"in_savedmodel_dir\"", out)
  end
  base = base:gsub("/saved_model%.pb$", ""):gsub("(.)/+$", "%1")
  out = out:gsub("(.)/+$", "%1")
  if not readable(base .. "/saved_model.pb") then
    fail("%s: base %s is not a SavedModel directory (no saved_model.pb)", out, base)
  end
  if exists(out) then fail("%s: exists; a SavedModel is written as a new directory", out) end
  local src = ctx.open(base, { format = "savedmodel" })
  local keys = ctx.names(src)
  if #keys == 0 then fail("%s: the SavedModel %s has no variables to replace", out, base) end
  local vals = merge(out, base, src, keys, tensors, names)
  local tmp = string.format("%s.graft-tmp-%d-%d", out, os.time(), math.random(1 << 30))
  if not os.execute("mkdir " .. q(tmp)) then fail("%s: cannot create the temporary %s", out, tmp) end
  local ok, err = pcall(build, tmp, out, base, ctx.meta(src).checkpoint, keys, vals,
    ctx.progress(out), ctx.write)
  if ok then
    local r, rerr = os.rename(tmp, out)
    ok, err = r ~= nil, rerr and ("graft: " .. out .. ": cannot rename into place: " .. rerr)
  end
  if not ok then
    os.execute("rm -rf " .. q(tmp))
    error(err, 0)
  end
  return out
end

return M
