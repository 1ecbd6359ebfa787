-- graft: open deep-learning weight files as Lua tables of tensors, write
-- them back in any format. This module is the facade: it re-exports the
-- user's vocabulary and runs graft.detect / open / save over the format
-- registry (lua/graft/registry.lua). Formats live in lua/graft/formats/,
-- policy in the small modules below, bytes in graft.core.

local core = require "graft.core"
local registry = require "graft.registry"
local options = require "graft.options"
local model = require "graft.model"
local progress = require "graft.progress"
local map = require "graft.map"
local check = require "graft.check"
local util = require "graft.util"
local provenance = require "graft.provenance"

local fail = util.fail

local graft = {}

graft.version = core.version
graft.tensor = core.tensor
graft.zeros = core.zeros
graft.ones = core.ones
graft.full = core.full
graft.cat = core.cat
graft.stack = core.stack
graft.is_tensor = core.is_tensor
graft.core = core
graft.tf = require "graft.formats.tf"
graft.keras = require "graft.formats.keras"

graft.names = model.names
graft.meta = model.meta
graft.close = model.close
graft.keep = map.keep
graft.drop = map.drop
graft.layouts = require "graft.layouts"
graft.layout = graft.layouts.layout
graft.map = map.map
graft.provenance = provenance
graft.rules = map.rules

-- The registry: name, family, description, extensions, read, write, and
-- every open and save option (common ones included) with a description.
function graft.formats()
  return registry.describe(options.common)
end

function graft.detect(path)
  return registry.detect(path, { zip_names = core.zip_names })
end

function graft.open(path, opts)
  if type(path) ~= "string" then fail("open: path must be a string") end
  opts = opts or {}
  if type(opts) ~= "table" then fail("open %s: opts must be a table", path) end
  local f
  if opts.format ~= nil then f = registry.named("open", path, opts.format)
  else f = registry.get(graft.detect(path)) end
  options.check("open", path, f, opts, registry.taking("open"))
  provenance.opened(path)
  local ctx = { format = f.name, auto = opts.format == nil, open = graft.open,
                read = core.read, remember = model.remember, names = model.names,
                meta = model.meta }
  return model.closable(f.family.open(path, opts, ctx))
end

local function writable()
  local out = {}
  for _, f in ipairs(registry.list) do
    if f.write then out[#out + 1] = f.name end
  end
  return table.concat(out, ", ")
end

-- Formats whose `metadata` save option is a string -> string map where a
-- provenance is recorded.
local keeps_provenance = { safetensors = true, gguf = true }

-- opts with opts.provenance folded into opts.metadata (user keys win) for
-- formats that keep it, and the provenance (or nil) for a format module to
-- record its own way (ctx.provenance: HDF5 root attributes).
local function with_provenance(path, f, opts)
  local p = opts.provenance
  if p == nil then p = provenance.default() end
  if p == nil then return opts, nil end
  if p ~= false and type(p) ~= "table" then
    fail("save %s: opts.provenance must be a table or false", path)
  end
  local out = {}
  for k, v in pairs(opts) do out[k] = v end
  out.provenance = nil
  if p and keeps_provenance[f.name] and (opts.metadata == nil or opts.metadata[1] == nil) then
    out.metadata = provenance.merge(opts.metadata, p)
  end
  return out, p or nil
end

function graft.save(path, tensors, opts)
  opts = opts or {}
  if type(path) ~= "string" then fail("save: path must be a string") end
  if type(opts) ~= "table" then fail("save %s: opts must be a table", path) end
  local f = registry.for_save(path, opts)
  options.check("save", path, f, opts, registry.taking("save"))
  if not f.write then
    fail("save %s: format %s cannot be written (writable: %s)", path, f.name, writable())
  end
  local prov
  opts, prov = with_provenance(path, f, opts)
  local ctx = { format = f.name, source_meta = model.meta(tensors), write = core.write,
                write_file = core.write_file, names = model.names,
                ordered_names = model.ordered_names, cast = model.cast,
                is_tensor = core.is_tensor, open = graft.open, meta = model.meta,
                progress = function(p) return progress.fn(opts, p) end,
                provenance = prov }
  if f.nested and type(tensors) == "table" then
    return f.family.save(path, tensors, nil, opts, ctx)
  end
  model.check_table(tensors)
  local names = model.ordered_names(tensors, opts)
  local out = model.apply_dtype(path, tensors, names, opts.dtype, f.keeps_blocks)
  return f.family.save(path, out, names, opts, ctx)
end

-- graft.check(out, template [, opts]): either may be a path graft opens.
function graft.check(out, template, opts)
  return check.check(out, template, opts, { open = graft.open })
end

return graft
