-- graft.formats.keras_write: writing Keras and HDF5 files for
-- graft.formats.keras (its save comes here): layouts for the C writer
-- (graft.core.write "hdf5"), as current Keras writes them (a table read
-- from a Keras file is written back with its own layer list, weight names
-- and string types), and whole models (a model config from
-- opts.model_config / opts.base, read by keras.config): a Keras 2
-- full-model .h5 (model_config + model_weights) and a Keras 3 .keras zip
-- (metadata.json, config.json, model.weights.h5 through core.zip_write).
-- Variables of nested layers are placed by keras.plan.

local core = require "graft.core"
local json = require "graft.json"
local keras = require "graft.formats.keras"

local S = keras.shared
local fail, array, EMPTY = S.fail, S.array, S.EMPTY
local decode_config, config_of, fill, join = S.decode_config, S.config_of, S.fill, S.join

local M = {}

-- ------------------------------------------------------------- writing

-- Keras writes a list attribute as given when it fits in one object
-- header, else as numpy chunks name0, name1, ... (fixed-length strings),
-- the fewest that each fit, split as numpy's array_split splits.
local LIMIT = 64512

local function list_attr(name, list, style)
  if #list == 0 then return { { name, "float64", EMPTY } } end
  local width = 0
  for _, s in ipairs(list) do width = math.max(width, #s) end
  -- Keras measures np.asarray(list).nbytes: fixed width, whatever the
  -- unsplit attribute is stored as.
  local nbytes = width * #list
  if nbytes <= LIMIT then
    return { { name, style == "fixed" and "S" or "vlen-ascii", array(list) } }
  end
  local n, k = #list, 1
  local function fits(k)
    return math.ceil(n / k) * math.max(width, 1) <= LIMIT
  end
  while not fits(k) do k = k + 1 end
  local out, at = {}, 1
  for i = 0, k - 1 do
    local size = n // k + (i < n % k and 1 or 0)
    local chunk = {}
    for j = at, at + size - 1 do chunk[#chunk + 1] = list[j] end
    at = at + size
    out[#out + 1] = { name .. i, "S" .. math.max(width, 1), array(chunk) }
  end
  return out
end

local function append_all(dst, src)
  for _, v in ipairs(src) do dst[#dst + 1] = v end
end

-- The Keras 2 layer (HDF5 group) of a tensor named without one: the longest
-- of `listed` (opts.layer_names) that prefixes the name as "<layer>/", else
-- the first segment. tf-keras names a layer's variables under the layer's
-- scope, so the group is the first segment also for RNN cells
-- (lstm/lstm_cell/kernel), Bidirectional (bi/forward_lstm/lstm_cell/kernel)
-- and a nested model's layers (encoder/dense/kernel), as graft reads them.
local function layer_of(n, listed)
  local best
  for _, l in ipairs(listed or {}) do
    if n:sub(1, #l + 1) == l .. "/" and #n > #l + 1 and (not best or #l > #best) then best = l end
  end
  return best or n:match("^([^/]+)/.")
end

-- Keras 2 weights file (save_weights layout) for `names` of `tensors`.
-- src: graft.meta of the table (its layers are reused when it is a Keras 2
-- table). Returns the layout and the names in writing order.
function M.layout2(path, tensors, names, opts, src)
  local keep = src and src.format == "keras" and src.layers and not opts.regroup
  local style = opts.strings or (keep and src.strings) or "vlen"
  if style ~= "vlen" and style ~= "fixed" then
    fail("%s: opts.strings must be \"vlen\" or \"fixed\"", path)
  end
  local present = {}
  for _, n in ipairs(names) do present[n] = true end
  local layers, byname, placed = {}, {}, {}
  local function layer(lname, listed)
    local l = byname[lname]
    if not l then
      l = { name = lname, weights = {}, weight_names = {}, listed = listed }
      byname[lname] = l
      layers[#layers + 1] = l
    end
    return l
  end
  if keep then
    for _, sl in ipairs(src.layers) do
      local l = layer(sl.name, sl.listed)
      for i, n in ipairs(sl.weights) do
        if present[n] then
          l.weights[#l.weights + 1] = n
          l.weight_names[#l.weight_names + 1] = sl.weight_names[i]
          placed[n] = true
        end
      end
    end
  end
  for _, lname in ipairs(opts.layer_names or {}) do layer(lname, true) end
  for _, n in ipairs(names) do
    if not placed[n] then
      local lname = layer_of(n, opts.layer_names)
      if not lname then
        fail("%s: tensor %q has no layer: name it \"<layer>/<weight>\"", path, n)
      end
      local l = layer(lname, true)
      l.weights[#l.weights + 1] = n
      l.weight_names[#l.weight_names + 1] = n:find(":%d+$") and n or (n .. ":0")
    end
  end
  local layer_names = {}
  for _, l in ipairs(layers) do
    if l.listed then layer_names[#layer_names + 1] = l.name end
  end
  local root = {}
  append_all(root, list_attr("layer_names", layer_names, style))
  root[#root + 1] = { "backend", "vlen-ascii",
    opts.backend or (keep and src.backend) or "tensorflow" }
  root[#root + 1] = { "keras_version", "vlen-ascii",
    opts.keras_version or (keep and src.keras_version) or "2.15.0" }
  local groups = { { path = "/", attrs = root } }
  -- Keras creates the layer groups sorted by name.
  local sorted = {}
  for _, l in ipairs(layers) do sorted[#sorted + 1] = l end
  table.sort(sorted, function(a, b) return a.name < b.name end)
  local order, dsets = {}, {}
  for _, l in ipairs(sorted) do
    groups[#groups + 1] = { path = l.name, attrs = list_attr("weight_names", l.weight_names, style) }
  end
  local top = opts.top_level_model_weights
  if top == nil then top = (not keep) or src.top_level end
  if top and not byname["top_level_model_weights"] then
    groups[#groups + 1] = { path = "top_level_model_weights",
      attrs = { { "weight_names", "float64", EMPTY } } }
  end
  for _, l in ipairs(layers) do
    for i, n in ipairs(l.weights) do
      order[#order + 1] = n
      dsets[#dsets + 1] = { path = l.name .. "/" .. l.weight_names[i] }
    end
  end
  return { groups = array(groups), datasets = array(dsets) }, order
end

-- Keras 3 saves a layer's sub-layers held in attributes under the
-- attribute's name (an RNN's `cell`, Bidirectional's `forward_layer` and
-- `backward_layer`, a wrapper's `layer`: layers/lstm/cell/vars), and the
-- layers of a nested model under `layers` (layers/encoder/layers/dense).
local KERAS3_ATTRS = { cell = true, forward_layer = true, backward_layer = true, layer = true }

-- "lstm/cell" -> "layers/lstm/cell"; "encoder/dense" -> "layers/encoder/layers/dense".
local function keras3_object_path(lname)
  local out = {}
  for step in lname:gmatch("[^/]+") do
    if #out > 0 and KERAS3_ATTRS[step] then
      out[#out + 1] = step
    else
      out[#out + 1] = "layers/" .. step
    end
  end
  return table.concat(out, "/")
end

-- Keras 3 .weights.h5 for `names`: objects and variable order from a Keras
-- 3 source, else layer = name before the last "/", variables in order.
function M.layout3(path, tensors, names, opts, src)
  local keep = src and src.format == "keras3" and src.objects and not opts.regroup
  local present = {}
  for _, n in ipairs(names) do present[n] = true end
  local groups, dsets, order, placed = {}, {}, {}, {}
  local function object(opath, oname, list)
    local vars = join(opath, "vars")
    local g = { path = vars }
    if oname then g.attrs = { { "name", "vlen-utf8", oname } } end
    groups[#groups + 1] = g
    local i = 0
    for _, n in ipairs(list) do
      if present[n] and not placed[n] then
        local t = tensors[n]
        local d = { path = join(vars, tostring(i)) }
        if t.dtype == "bfloat16" then d.attrs = { { "dtype", "vlen-utf8", "bfloat16" } } end
        dsets[#dsets + 1] = d
        order[#order + 1] = n
        placed[n] = true
        i = i + 1
      end
    end
  end
  if keep then
    for _, o in ipairs(src.objects) do object(o.path, o.name, o.names) end
  end
  local fresh, by = {}, {}
  for _, n in ipairs(names) do
    if not placed[n] then
      local lname = n:match("^(.*)/[^/]+$")
      if not lname then
        fail("%s: tensor %q has no layer: name it \"<layer>/<variable>\"", path, n)
      end
      if not by[lname] then
        by[lname] = {}
        fresh[#fresh + 1] = lname
      end
      table.insert(by[lname], n)
    end
  end
  for _, lname in ipairs(fresh) do
    local opath = keras3_object_path(lname)
    object(opath, lname:match("([^/]*)$"), by[lname])
  end
  if not keep and opts.model_name then
    table.insert(groups, 1, { path = "vars", attrs = { { "name", "vlen-utf8", opts.model_name } } })
  end
  return { groups = array(groups), datasets = array(dsets) }, order
end

-- Generic HDF5: a dataset per tensor at its name ('/' makes groups); a
-- table read from an HDF5 file gets its groups and attributes back.
function M.layout_hdf5(path, tensors, names, opts, src)
  local h5 = src and src.format == "hdf5" and src or nil
  local groups, dsets = {}, {}
  local function attrs_of(p)
    if not (h5 and h5.attrs and h5.attrs[p]) then return nil end
    local out, keys = {}, {}
    for k in pairs(h5.attrs[p]) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local ty = h5.attr_types[p][k]
      local v = h5.attrs[p][k]
      if ty ~= "unsupported" and ty ~= "empty" then
        if type(v) == "table" then v = array(v) end
        out[#out + 1] = { k, ty, v }
      end
    end
    return out
  end
  if h5 and not opts.plain then
    groups[#groups + 1] = { path = "/", attrs = attrs_of("/") }
    for _, g in ipairs(h5.groups or {}) do
      groups[#groups + 1] = { path = g, attrs = attrs_of(g) }
    end
  end
  for _, n in ipairs(names) do
    dsets[#dsets + 1] = { path = n, attrs = (h5 and not opts.plain) and attrs_of(n) or nil }
  end
  return { groups = array(groups), datasets = array(dsets) }, names
end

-- ------------------------------------------------------------- whole models

-- Default versions written when neither the caller nor the source says.
local KERAS2_VERSION, KERAS3_VERSION = "2.15.0", "3.15.1"

-- The model config a whole-model save writes: opts.model_config (table or
-- JSON text), else opts.base's, else the source table's (nil if none).
local function save_config(path, opts, src)
  local cfg = opts.model_config
  if cfg ~= nil and opts.base ~= nil then
    fail("%s: give opts.model_config or opts.base, not both", path)
  end
  if type(cfg) == "string" then return decode_config(path, "opts.model_config", cfg) end
  if type(cfg) == "table" then
    if type(cfg.class_name) ~= "string" then
      fail("%s: opts.model_config is not a Keras model config (no class_name)", path)
    end
    return cfg
  end
  if cfg ~= nil then fail("%s: opts.model_config must be a table or JSON text", path) end
  if opts.base ~= nil then
    if type(opts.base) ~= "string" then fail("%s: opts.base must be a path", path) end
    return config_of(opts.base)
  end
  return nil
end

-- The base's Keras version when it is of the major version `major`.
local function version_of(info, major)
  local v = info and info.keras_version
  if type(v) == "string" and v:match("^(%d+)%.") == major then return v end
  return nil
end

-- A Keras 3 source description (as read3 makes) for layout3: the model's
-- vars group, then each object of plan P given tensors, in model order.
local function objects3(P, cfg)
  local objs = { { path = "", name = cfg.config.name ~= json.null and cfg.config.name or nil,
    names = {} } }
  for _, o in ipairs(P.objects) do
    local list = {}
    for _, s in ipairs(o.slots) do
      if s.tensor then list[#list + 1] = s.tensor end
    end
    if #list > 0 then objs[#objs + 1] = { path = o.k3, name = o.name, names = list } end
  end
  return { format = "keras3", objects = objs }
end

-- ctx.provenance (string -> string) as root attributes, each unless the
-- root already has that attribute (the source's or the user's wins).
local function add_provenance(layout, p)
  if not p then return end
  local root
  for _, g in ipairs(layout.groups) do if g.path == "/" then root = g end end
  if not root then
    root = { path = "/" }
    table.insert(layout.groups, 1, root)
  end
  root.attrs = root.attrs or {}
  local have, keys = {}, {}
  for _, a in ipairs(root.attrs) do have[a[1]] = true end
  for k in pairs(p) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    if not have[k] then root.attrs[#root.attrs + 1] = { k, "vlen-utf8", p[k] } end
  end
end

-- A .keras archive: metadata.json, config.json, model.weights.h5 (stored,
-- in that order, as Keras writes them). The weights go through the HDF5
-- writer into a temporary file beside the target first.
function M.save_zip(path, tensors, names, opts, ctx)
  local src = ctx.source_meta
  local cfg, info = save_config(path, opts, src)
  if not cfg and src and src.format == "keras3" and type(src.config_json) == "string" then
    cfg = decode_config(path, "the source's config.json", src.config_json)
  end
  if not cfg then
    fail("%s: a .keras archive needs a model config: opts.model_config or opts.base "
      .. "(a .keras, a full-model .h5 or a model.to_json() file)", path)
  end
  local P = keras.plan(path, cfg)
  fill(path, P, names)
  local layout, order = M.layout3(path, tensors, names, {}, objects3(P, cfg))
  local md = src and src.format == "keras3" and type(src.metadata) == "table" and src.metadata or {}
  -- metadata.json: Keras writes its version and date here and never reads
  -- the file back when loading, so graft's provenance keys go here too
  -- (where `graft ls` shows an archive's metadata).
  local prov = {}
  for k, v in pairs(ctx.provenance or {}) do
    prov[#prov + 1] = string.format(", %s: %s", json.encode(k), json.encode(v))
  end
  table.sort(prov)
  local metadata = string.format('{"keras_version": %s, "date_saved": %s%s}',
    json.encode(opts.keras_version or version_of(info, "3") or md.keras_version or KERAS3_VERSION),
    json.encode(opts.date_saved or os.date("%Y-%m-%d@%H:%M:%S")), table.concat(prov))
  local tmp = path .. ".graft-weights.h5"
  local ok, err = pcall(function()
    ctx.write(tmp, "hdf5", order, tensors,
      { layout = json.encode(layout), progress = ctx.progress(path) })
    core.zip_write(path, {
      { name = "metadata.json", data = metadata },
      { name = "config.json", data = json.encode(cfg) },
      { name = "model.weights.h5", file = tmp },
    })
  end)
  os.remove(tmp)
  if not ok then error(err, 0) end
end

-- Keras 2 full model (tf-keras model.save to .h5): root attributes
-- model_config (JSON, vlen ASCII), keras_version and backend (vlen UTF-8),
-- training_config only when given; the save_weights layout under
-- model_weights (layer_names as model.layers: a Sequential's InputLayer is
-- not listed).
local function layout_full2(path, tensors, names, opts, cfg, info)
  local P = keras.plan(path, cfg)
  fill(path, P, names)
  local src = { format = "keras", layers = {}, strings = "vlen", top_level = true }
  for _, l in ipairs(P.tops) do
    if not (cfg.class_name == "Sequential" and l.class_name == "InputLayer") then
      -- A layer's weights as tf-keras lists them: trainable, then not.
      local slots = {}
      for _, o in ipairs(P.objects) do
        for _, s in ipairs(o.top == l and o.slots or {}) do
          if s.tensor then slots[#slots + 1] = s end
        end
      end
      for i, s in ipairs(slots) do s.pos = (s.trainable and 0 or #slots) + i end
      table.sort(slots, function(a, b) return a.pos < b.pos end)
      local weights, wn = {}, {}
      for i, s in ipairs(slots) do weights[i], wn[i] = s.tensor, s.k2 .. ":0" end
      src.layers[#src.layers + 1] = { name = l.name, listed = true, weights = weights,
        weight_names = wn }
    end
  end
  local version = opts.keras_version or version_of(info, "2") or KERAS2_VERSION
  local backend = opts.backend or (info and type(info.backend) == "string" and info.backend)
    or "tensorflow"
  local layout, order = M.layout2(path, tensors, names,
    { keras_version = version, backend = backend }, src)
  for _, g in ipairs(layout.groups) do
    g.path = g.path == "/" and "model_weights" or "model_weights/" .. g.path
  end
  for _, d in ipairs(layout.datasets) do d.path = "model_weights/" .. d.path end
  local model_config = { class_name = cfg.class_name, config = cfg.config }
  local root = {
    { "backend", "vlen-utf8", backend },
    { "keras_version", "vlen-utf8", version },
    { "model_config", "vlen-ascii", json.encode(model_config) },
  }
  local tc = opts.training_config
  if tc ~= nil then
    if type(tc) == "table" then tc = json.encode(tc) end
    if type(tc) ~= "string" then fail("%s: opts.training_config must be a table or JSON text", path) end
    root[#root + 1] = { "training_config", "vlen-ascii", tc }
  end
  table.insert(layout.groups, 1, { path = "/", attrs = root })
  return layout, order
end

-- Write through the C HDF5 writer with the layout it takes.
function M.save(path, tensors, names, opts, ctx)
  local format = ctx.format
  if format == "keras_zip" then return M.save_zip(path, tensors, names, opts, ctx) end
  if format == "keras" then
    local cfg, info = save_config(path, opts, ctx.source_meta)
    if cfg then
      local layout, order = layout_full2(path, tensors, names, opts, cfg, info)
      add_provenance(layout, ctx.provenance)
      return ctx.write(path, "hdf5", order, tensors,
        { layout = json.encode(layout), progress = ctx.progress(path) })
    end
    if opts.training_config ~= nil then
      fail("%s: opts.training_config needs a model config (opts.model_config or opts.base)", path)
    end
  end
  local f = format == "keras" and M.layout2 or format == "keras3" and M.layout3
    or M.layout_hdf5
  local layout, order = f(path, tensors, names, opts, ctx.source_meta)
  add_provenance(layout, ctx.provenance)
  ctx.write(path, "hdf5", order, tensors,
    { layout = json.encode(layout), progress = ctx.progress(path) })
end

return M
