-- graft.formats.keras: HDF5 files, and the Keras layouts over them, through
-- the generic HDF5 reader and writer (src/formats/hdf5/).
--
-- Reading: a Keras 2 file (model.save or save_weights, docs/formats/keras.md#keras-2-files) is
-- read in the order `layer_names` and each layer's `weight_names` give;
-- tensors are named "<layer>/<weight>" with the ":0" suffix and the
-- repeated layer prefix dropped ("dense/kernel", nested models
-- "encoder/dense_1/kernel"); optimizer weights go to meta.optimizer, a
-- table of their own. A Keras 3 file (.weights.h5, or the .keras zip) is
-- read from its `<object path>/vars/<i>` datasets; tensors are named by the
-- layer path (the "layers/" steps dropped) and the variable's name where
-- the config or the layer's class tells it ("dense/kernel"), else its index.
-- Every tensor's HDF5 path is kept in meta.paths.
--
-- Writing (layouts for the C HDF5 writer, whole models) is
-- lua/graft/formats/keras_write.lua; this file reads, plans a model
-- config's variables (keras.plan, shared by both) and reads model configs
-- (keras.config).

local core = require "graft.core"
local json = require "graft.json"

local keras = { name = "keras" }

keras.formats = {
  { name = "hdf5", description = "HDF5 file (every dataset a tensor; groups and attributes in graft.meta)",
    extensions = { "hdf5" }, read = true, write = true,
    save_options = { plain = "true: only the datasets, without the source file's groups and attributes" } },
  { name = "keras", description = "Keras 2 HDF5 (model.save / save_weights .h5)",
    extensions = { "h5" }, read = true, write = true,
    save_options = {
      strings = "\"vlen\" or \"fixed\": how name lists are stored (default: as the source file)",
      regroup = "true: lay out layers from the names, not from the source file",
      layer_names = "list of layer names to list first (layers without weights too)",
      backend = "the backend attribute (default: the source's or the base's, else \"tensorflow\")",
      keras_version = "the keras_version attribute (default: the source's or a Keras 2 base's, else \"2.15.0\")",
      top_level_model_weights = "whether to write the empty top_level_model_weights group",
      model_config = "Keras 2 model config (table or JSON text): write a full model (model_config attribute, weights under model_weights) instead of weights only",
      base = "path of a full-model .h5 or a model.to_json() file whose model config to write (a full model, as model_config)",
      training_config = "training_config attribute (table or JSON text) of a full model",
    } },
  { name = "keras3", description = "Keras 3 .weights.h5 (layers/<name>/vars/<i>)",
    extensions = { "weights.h5" }, read = true, write = true,
    save_options = {
      regroup = "true: lay out objects from the names, not from the source file",
      model_name = "name attribute of the top-level vars group",
    } },
  { name = "keras_zip", description = "Keras 3 .keras zip (config.json, metadata.json, model.weights.h5)",
    extensions = { "keras" }, read = true, write = true,
    save_options = {
      model_config = "Keras 3 model config (table or JSON text) for config.json (default: the source .keras's)",
      base = "path of a .keras, full-model .h5 or model.to_json() file whose model config to write",
      keras_version = "metadata.json keras_version (default: a Keras 3 base's or the source's, else \"3.15.1\")",
      date_saved = "metadata.json date_saved (default: now, local time, as \"%Y-%m-%d@%H:%M:%S\")",
    } },
}

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

local EMPTY = setmetatable({}, json.array_mt)

local function array(t) return setmetatable(t, json.array_mt) end

-- ------------------------------------------------------------- reading

-- Path of an object's attribute table: "/" for the root.
local function apath(p) return (p == "" or p == "/") and "/" or p end

local function join(a, b)
  if a == "" or a == "/" then return b end
  return a .. "/" .. b
end

-- Attribute `name` of the object at path as a list of strings, following
-- Keras's split form name0, name1, ... when the plain name is absent. An
-- empty numeric array (a layer without weights) is an empty list; nil when
-- neither form exists.
local function load_list(path, attrs, obj, name)
  local a = attrs[apath(obj)]
  if not a then return nil end
  local parts = {}
  if a[name] ~= nil then
    parts[1] = a[name]
  else
    local i = 0
    while a[name .. i] ~= nil do
      parts[#parts + 1] = a[name .. i]
      i = i + 1
    end
    if i == 0 then return nil end
  end
  local out = {}
  for _, v in ipairs(parts) do
    if type(v) == "string" then v = { v } end
    if type(v) ~= "table" then
      fail("%s: %s: attribute %q is not a list of strings", path, apath(obj), name)
    end
    for _, s in ipairs(v) do
      if type(s) ~= "string" then
        fail("%s: %s: attribute %q holds a %s, not strings", path, apath(obj), name, type(s))
      end
      out[#out + 1] = s
    end
  end
  return out
end

local function has_list(attrs, obj, name)
  local a = attrs[apath(obj)]
  return a and (a[name] ~= nil or a[name .. "0"] ~= nil)
end

local function group_set(meta)
  local g = { ["/"] = true, [""] = true }
  for _, p in ipairs(meta.groups or {}) do g[p] = true end
  return g
end

-- Which Keras layout an HDF5 file's metadata shows: "keras" (Keras 2),
-- "keras3", or nil (generic HDF5).
function keras.classify(meta, names)
  local attrs = meta.attrs or {}
  if has_list(attrs, "/", "layer_names") then return "keras", "" end
  if has_list(attrs, "model_weights", "layer_names") then return "keras", "model_weights" end
  local groups = group_set(meta)
  if groups["layers"] or groups["_layer_checkpoint_dependencies"] then return "keras3" end
  if groups["vars"] then return "keras3" end
  for _, n in ipairs(names or {}) do
    if not n:find("^.-/?vars/%d+$") then return nil end
  end
  if names and #names > 0 then return "keras3" end
  return nil
end

local function decode_json(text)
  if type(text) ~= "string" then return nil end
  local ok, v = pcall(json.decode, text)
  if ok then return v end
  return nil, (tostring(v):gsub("^graft: ", ""))
end

-- "dense/kernel:0" of layer "dense" -> "dense/kernel".
local function weight_name(layer, w)
  local base = w:gsub(":%d+$", "")
  if base:sub(1, #layer + 1) == layer .. "/" then base = base:sub(#layer + 2) end
  return layer .. "/" .. base
end

local function add(out, order, paths, name, t, hpath, path)
  if out[name] then
    fail("%s: two weights are both named %q (HDF5 %s and %s)", path, name, paths[name], hpath)
  end
  out[name] = t
  order[#order + 1] = name
  paths[name] = hpath
end

-- The optimizer group (Keras 2): its weight_names in order.
local function read_optimizer(path, tensors, attrs, groups, remember)
  if not groups["optimizer_weights"] then return nil end
  local names = load_list(path, attrs, "optimizer_weights", "weight_names") or {}
  local out, order, paths = {}, {}, {}
  for _, w in ipairs(names) do
    local hp = "optimizer_weights/" .. w
    local t = tensors[hp]
    if not t then
      fail("%s: optimizer_weights: weight_names lists %q but there is no dataset %q",
        path, w, hp)
    end
    add(out, order, paths, (w:gsub(":%d+$", "")), t, hp, path)
  end
  return remember(out, order, { format = "keras_optimizer", paths = paths })
end

-- Keras 2: tensors (hdf5 path -> tensor), hdf5 meta -> model, names, meta.
function keras.read2(path, tensors, names, h5, root, remember)
  local attrs, groups = h5.attrs or {}, group_set(h5)
  local wroot = root == "" and "/" or root
  local layer_names = load_list(path, attrs, wroot, "layer_names")
  local out, order, paths, layers = {}, {}, {}, {}
  local owner = {}
  local function read_layer(lname, listed)
    local g = join(root, lname)
    if not groups[g] then
      fail("%s: layer_names lists %q but there is no group %q", path, lname, g)
    end
    local wn = load_list(path, attrs, g, "weight_names") or {}
    local layer = { name = lname, weight_names = wn, weights = {}, listed = listed }
    for _, w in ipairs(wn) do
      local hp = join(g, w)
      local t = tensors[hp]
      if not t then
        fail("%s: layer %q: weight_names lists %q but there is no dataset %q", path, lname, w, hp)
      end
      local n = weight_name(lname, w)
      add(out, order, paths, n, t, hp, path)
      layer.weights[#layer.weights + 1] = n
      owner[n] = layer
    end
    layers[#layers + 1] = layer
  end
  for _, lname in ipairs(layer_names) do read_layer(lname, true) end
  local top = join(root, "top_level_model_weights")
  local has_top = groups[top] and not owner[top] or false
  if has_top then
    local wn = load_list(path, attrs, top, "weight_names") or {}
    if #wn > 0 then read_layer("top_level_model_weights", false) end
  end
  local a = attrs[wroot] or {}
  local rattrs = attrs["/"] or {}
  local lt = (h5.attr_types[wroot] or {}).layer_names
  local meta = {
    format = "keras",
    keras_version = a.keras_version or rattrs.keras_version,
    backend = a.backend or rattrs.backend,
    layers = layers,
    layer_names = layer_names,
    paths = paths,
    weights_group = wroot,
    top_level = has_top,
    -- Keras <= 2.8 and split attributes: fixed-length; h5py 3 lists: vlen.
    strings = lt and not lt:match("^S") and "vlen" or "fixed",
    hdf5 = h5,
  }
  if type(rattrs.model_config) == "string" then
    meta.model_config, meta.model_config_error = decode_json(rattrs.model_config)
  end
  if type(rattrs.training_config) == "string" then
    meta.training_config, meta.training_config_error = decode_json(rattrs.training_config)
  end
  meta.optimizer = read_optimizer(path, tensors, attrs, groups, remember)
  return out, order, meta
end

-- Keras's naming.to_snake_case for class names ("Conv2D" -> "conv2d").
local function snake(name)
  local s = name:gsub("(.)(%u%l+)", "%1_%2"):gsub("(%l)(%u)", "%1_%2")
  return s:lower()
end
keras.snake = snake

-- Variable names of common layers in their save order (docs/formats/keras.md#layer-variable-order).
local VARS = {
  dense = { "kernel", "bias" }, einsum_dense = { "kernel", "bias" },
  conv1d = { "kernel", "bias" }, conv2d = { "kernel", "bias" }, conv3d = { "kernel", "bias" },
  conv1d_transpose = { "kernel", "bias" }, conv2d_transpose = { "kernel", "bias" },
  conv3d_transpose = { "kernel", "bias" },
  depthwise_conv1d = { "kernel", "bias" }, depthwise_conv2d = { "kernel", "bias" },
  separable_conv1d = { "depthwise_kernel", "pointwise_kernel", "bias" },
  separable_conv2d = { "depthwise_kernel", "pointwise_kernel", "bias" },
  batch_normalization = { "gamma", "beta", "moving_mean", "moving_variance" },
  layer_normalization = { "gamma", "beta" }, group_normalization = { "gamma", "beta" },
  embedding = { "embeddings" }, prelu = { "alpha" },
  lstm_cell = { "kernel", "recurrent_kernel", "bias" },
  gru_cell = { "kernel", "recurrent_kernel", "bias" },
  simple_rnn_cell = { "kernel", "recurrent_kernel", "bias" },
}

-- Names for n variables of a layer of class key (snake case) with config
-- cfg (may be nil); shapes[i] is the i-th variable's shape.
local function var_names(key, cfg, shapes)
  local full = VARS[key]
  if not full then return nil end
  local names = {}
  cfg = cfg or {}
  if key == "batch_normalization" or key:find("normalization$") then
    if cfg.scale ~= false then names[#names + 1] = "gamma" end
    if cfg.center ~= false then names[#names + 1] = "beta" end
    for i = 3, #full do names[#names + 1] = full[i] end
  elseif full[#full] == "bias" and cfg.use_bias == false then
    for i = 1, #full - 1 do names[i] = full[i] end
  else
    for i, v in ipairs(full) do names[i] = v end
  end
  if #names == #shapes then return names end
  -- Without a config: a kernel and no bias is the common short form.
  if full[#full] == "bias" and #shapes == #full - 1 and not next(cfg) then
    return { table.unpack(full, 1, #full - 1) }
  end
  return nil
end

-- Config of each object path "layers/<snake name>" of a Sequential or
-- Functional model config, as Keras names them (snake-cased class names,
-- de-duplicated with _1, _2, ... in visiting order).
local function config_objects(config)
  local map = {}
  local layers = type(config) == "table" and type(config.config) == "table"
    and config.config.layers
  if type(layers) ~= "table" then return map end
  local seen = {}
  for i, l in ipairs(layers) do
    if type(l) == "table" and type(l.class_name) == "string" then
      local base = snake(l.class_name)
      local n = seen[base]
      seen[base] = (n or 0) + 1
      local name = n and (base .. "_" .. n) or base
      map["layers/" .. name] = { class = base, config = l.config, index = i }
    end
  end
  return map
end

-- "layers/encoder/layers/dense" -> "encoder/dense".
local function layer_path(obj)
  local s = ("/" .. obj):gsub("/layers/", "/"):gsub("/_layer_checkpoint_dependencies/", "/")
  return (s:gsub("^/", ""))
end

-- ------------------------------------------------------------- model plans
-- A model config's variables as Keras 3 and Keras 2 store them
-- (docs/formats/keras.md#nested-layers), shared by the .keras reader
-- (names and order) and the whole-model writers.

-- The layers of a Sequential or Functional config in model order, each
-- { name, class (snake case), config, obj (Keras 3 object name: the
-- snake-cased class, de-duplicated with _1, _2, ... over the container's
-- layers as Keras 3's saver visits them: a Sequential's InputLayer is not
-- one of its `layers` and takes no number) }.
local function model_layers(path, cfg)
  local layers = type(cfg.config) == "table" and cfg.config.layers
  if type(layers) ~= "table" then
    fail("%s: model config %s has no config.layers (only Sequential and Functional "
      .. "models can be written whole)", path, cfg.class_name)
  end
  local out, seen = {}, {}
  for _, l in ipairs(layers) do
    if type(l) ~= "table" or type(l.class_name) ~= "string" or type(l.config) ~= "table" then
      fail("%s: model config: a layer without class_name and config", path)
    end
    local base = snake(l.class_name)
    local obj = base
    if not (cfg.class_name == "Sequential" and l.class_name == "InputLayer") then
      local n = seen[base]
      seen[base] = (n or 0) + 1
      obj = n and (base .. "_" .. n) or base
    end
    out[#out + 1] = { name = type(l.config.name) == "string" and l.config.name or obj,
      class = base, class_name = l.class_name, config = l.config, obj = obj }
  end
  return out
end

-- RNN layers whose one cell (Keras 3 object `cell`; Keras 2 weight scope
-- `<layer>/<cell>`) holds kernel, recurrent_kernel and bias.
local RNN_CELLS = { lstm = "lstm_cell", gru = "gru_cell", simple_rnn = "simple_rnn_cell" }
-- BatchNormalization's statistics: the non-trainable variables Keras 2
-- lists after every trainable one of the same layer (a nested model's
-- weight_names put them last).
local NON_TRAINABLE = { moving_mean = true, moving_variance = true }

-- Variables of a layer of class `class` that owns them (VARS) as its
-- config creates them, nil for a class graft does not know.
local function config_vars(class, cfg)
  local full = VARS[class]
  if not full then return nil end
  local out = {}
  for _, v in ipairs(full) do
    local off = (v == "bias" and cfg.use_bias == false)
      or (v == "gamma" and cfg.scale == false) or (v == "beta" and cfg.center == false)
    if not off then out[#out + 1] = v end
  end
  return out
end

-- A wrapped layer's { class_name, config } as model_layers describes it.
local function sub_layer(path, owner, entry, what)
  if type(entry) ~= "table" or type(entry.class_name) ~= "string" or type(entry.config) ~= "table" then
    fail("%s: model config: layer %q (%s) has no %s layer config", path, owner.name,
      owner.class_name, what)
  end
  local base = snake(entry.class_name)
  return { name = type(entry.config.name) == "string" and entry.config.name or base,
    class = base, class_name = entry.class_name, config = entry.config }
end

-- One object with variables: k3 its Keras 3 path ("layers/lstm/cell"),
-- name its vars group's name attribute, vars its variables (nil: not
-- known, any "<prefix>/<variable>" tensor is taken in the given order);
-- at: where it is (see plan_layer).
local function add_object(P, k3, name, vars, at, trainable)
  local o = { k3 = k3, name = name, top = at.top, k2 = at.k2, trainable = trainable,
    slots = {}, open = vars == nil }
  P.objects[#P.objects + 1] = o
  P.rank[k3] = #P.objects
  -- The Keras 2 name graft reads (top layer + weight name without the
  -- repeated top layer prefix) is a prefix too.
  local rel = at.k2 == at.top.name and "" or at.k2:gsub("^" .. at.top.name:gsub("%p", "%%%0") .. "/", "")
  o.prefixes = { at.a[2], at.a[1], rel == "" and at.top.name or (at.top.name .. "/" .. rel) }
  if o.open then
    for _, p in ipairs(o.prefixes) do P.open[p] = P.open[p] or o end
    return o
  end
  for _, v in ipairs(vars) do
    local s = { object = o, var = v, k2 = at.k2 .. "/" .. v, trainable = trainable and not NON_TRAINABLE[v] }
    o.slots[#o.slots + 1] = s
    s.names = {}
    for i, p in ipairs(o.prefixes) do s.names[i] = p .. "/" .. v end
  end
  return o
end

-- Plan layer l at `at` = { k3 (its Keras 3 object path), a (its tensor-name
-- prefixes: { object names, layer names }), k2 (the Keras 2 weight scope of
-- its variables), top (its top-level layer), trainable }.
local function plan_layer(P, path, l, at)
  local cfg = l.config
  local trainable = at.trainable and cfg.trainable ~= false
  local function sub(step, k2)
    return { k3 = at.k3 .. "/" .. step, a = { at.a[1] .. "/" .. step, at.a[2] .. "/" .. step },
      k2 = k2, top = at.top, trainable = trainable }
  end
  if RNN_CELLS[l.class] then
    local cell = RNN_CELLS[l.class]
    local vars = { "kernel", "recurrent_kernel" }
    if cfg.use_bias ~= false then vars[3] = "bias" end
    add_object(P, at.k3 .. "/cell", cell, vars, sub("cell", at.k2 .. "/" .. cell), trainable)
  elseif l.class == "bidirectional" then
    -- tf-keras renames the halves forward_<layer> and backward_<layer>;
    -- Keras 3's config already holds forward_<layer>.
    local fwd = sub_layer(path, l, cfg.layer, "wrapped")
    local bwd = cfg.backward_layer ~= nil and cfg.backward_layer ~= json.null
      and sub_layer(path, l, cfg.backward_layer, "backward") or fwd
    local base = fwd.name:gsub("^forward_", "")
    local bname = bwd == fwd and base or bwd.name:gsub("^backward_", "")
    plan_layer(P, path, fwd, sub("forward_layer", at.k2 .. "/forward_" .. base))
    plan_layer(P, path, bwd, sub("backward_layer", at.k2 .. "/backward_" .. bname))
  elseif l.class == "time_distributed" then
    -- tf-keras creates the wrapped layer's variables in the wrapper's scope.
    plan_layer(P, path, sub_layer(path, l, cfg.layer, "wrapped"), sub("layer", at.k2))
  elseif type(cfg.layers) == "table" then
    -- A nested model: Keras 3 saves its layers under `layers`; Keras 2
    -- lists their weights in the model's group under their own names.
    for _, k in ipairs(model_layers(path, l)) do
      plan_layer(P, path, k, { k3 = at.k3 .. "/layers/" .. k.obj,
        a = { at.a[1] .. "/" .. k.obj, at.a[2] .. "/" .. k.name }, k2 = k.name, top = at.top,
        trainable = trainable })
    end
  elseif VARS[l.class] then
    add_object(P, at.k3, l.name, config_vars(l.class, cfg), at, trainable)
  elseif l.class == "rnn" or l.class:find("^conv_lstm") or cfg.cell ~= nil or cfg.layer ~= nil then
    at.top.refused = at.top.refused or string.format("%s keeps its variables in a %s graft does "
      .. "not lay out (graft knows LSTM, GRU, SimpleRNN, Bidirectional, TimeDistributed and "
      .. "nested Sequential/Functional models)", l.class_name, l.class == "rnn" and "custom cell"
      or "sub-object")
  else
    add_object(P, at.k3, l.name, nil, at, trainable)
  end
end

-- The plan of a Sequential or Functional config: { tops (model_layers),
-- objects (in model order), rank (Keras 3 path -> position), alias (tensor
-- name -> slot), open (name prefix -> object of unknown variables) }.
function keras.plan(path, cfg)
  local P = { objects = {}, rank = {}, alias = {}, open = {}, tops = model_layers(path, cfg),
    by = {} }
  for _, l in ipairs(P.tops) do
    plan_layer(P, path, l, { k3 = "layers/" .. l.obj, a = { l.obj, l.name }, k2 = l.name, top = l,
      trainable = true })
  end
  -- Layer names before object names (as graft's readers name them: Keras
  -- 2 by layer, Keras 3 by object), first layer first.
  for _, l in ipairs(P.tops) do P.by[l.name] = P.by[l.name] or l end
  for _, l in ipairs(P.tops) do P.by[l.obj] = P.by[l.obj] or l end
  for i = 1, 3 do
    for _, o in ipairs(P.objects) do
      for _, s in ipairs(o.slots) do
        P.alias[s.names[i]] = P.alias[s.names[i]] or s
      end
    end
  end
  return P
end

-- Put each tensor of `names` in its slot of plan P; every tensor must find
-- one, and an object given some of its variables must be given all.
local function fill(path, P, names)
  for _, n in ipairs(names) do
    local s = P.alias[n]
    local prefix, var = n:match("^(.+)/([^/]+)$")
    local o = not s and prefix and P.open[prefix]
    if s then
      if s.tensor then
        fail("%s: %s: the same variable as %s (%s of layer %q)", path, n, s.tensor,
          s.object.k3, s.object.top.name)
      end
      s.tensor = n
    elseif o then
      o.slots[#o.slots + 1] = { object = o, var = var, tensor = n, k2 = o.k2 .. "/" .. var,
        trainable = o.trainable and not NON_TRAINABLE[var] }
    else
      local top = P.by[n:match("^[^/]+")]
      if not top then
        fail("%s: %s: no layer of the model config is named %q (name tensors "
          .. "\"<layer>/<variable>\")", path, n, prefix or n)
      end
      if top.refused then
        fail("%s: %s: layer %q (%s): %s", path, n, top.name, top.class_name, top.refused)
      end
      local want = {}
      for _, ob in ipairs(P.objects) do
        if ob.top == top then
          for _, sl in ipairs(ob.slots) do want[#want + 1] = sl.names[1] end
        end
      end
      fail("%s: %s: layer %q (%s) has no variable of this name (its variables: %s)", path, n,
        top.name, top.class_name, #want > 0 and table.concat(want, ", ") or "none")
    end
  end
  for _, o in ipairs(P.objects) do
    local have, miss = false, nil
    for _, s in ipairs(o.slots) do
      if s.tensor then have = true elseif not miss then miss = s end
    end
    if have and miss then
      fail("%s: layer %q (%s): no tensor for %s's variable %s (name it %q)", path, o.top.name,
        o.top.class_name, o.k3, miss.var, miss.names[1])
    end
  end
end

-- Keras 3: every dataset "<object>/vars/<i>".
function keras.read3(path, tensors, names, h5, remember, config_text, metadata_text)
  local config = decode_json(config_text)
  local objs = config_objects(config)
  -- The config's plan names and orders the variables of sub-objects too
  -- (an RNN's cell, a wrapper's layer, a nested model's layers).
  local plan, prank = {}, {}
  if type(config) == "table" and type(config.class_name) == "string" then
    local ok, P = pcall(keras.plan, path, config)
    if ok then
      for _, o in ipairs(P.objects) do plan[o.k3] = o end
      prank = P.rank
    end
  end
  local objects, byobj = {}, {}
  local function object(obj)
    local o = byobj[obj]
    if not o then
      local va = (h5.attrs or {})[join(obj, "vars")] or {}
      o = { path = obj, name = va.name, vars = {} }
      byobj[obj] = o
      objects[#objects + 1] = o
    end
    return o
  end
  -- Since Keras 3.6 every visited object has a vars group, empty or not.
  for _, g in ipairs(h5.groups or {}) do
    if g == "vars" then object("")
    elseif g:find("/vars$") then object(g:sub(1, -6)) end
  end
  for _, n in ipairs(names) do
    local obj, i = n:match("^(.*)/vars/(%d+)$")
    if not obj then
      i = n:match("^vars/(%d+)$")
      obj = i and ""
    end
    if not obj then
      fail("%s: dataset %q is not at <object>/vars/<index> as Keras 3 writes", path, n)
    end
    local o = object(obj)
    o.vars[#o.vars + 1] = { index = tonumber(i), hpath = n, t = tensors[n] }
  end
  -- Model order where the config gives it; HDF5 order otherwise.
  for i, o in ipairs(objects) do o.pos = i end
  local function rank(o)
    local top = objs[o.path:match("^layers/[^/]+")]
    return top and top.index or math.huge, prank[o.path] or math.huge
  end
  table.sort(objects, function(a, b)
    local ta, ra = rank(a)
    local tb, rb = rank(b)
    if ta ~= tb then return ta < tb end
    if ra ~= rb then return ra < rb end
    return a.pos < b.pos
  end)
  local out, order, paths = {}, {}, {}
  local opt, opt_order, opt_paths = {}, {}, {}
  for _, o in ipairs(objects) do
    o.pos = nil
    table.sort(o.vars, function(a, b) return a.index < b.index end)
    local shapes = {}
    for k, v in ipairs(o.vars) do shapes[k] = v.t.shape end
    local c = objs[o.path]
    local base = o.path:match("([^/]*)$"):gsub("_%d+$", "")
    local parent = o.path:match("([^/]*)/[^/]*$") or ""
    if base == "cell" and parent:find("_layer$") or base == "layer" then
      -- Without a config, a Bidirectional half's cell or a wrapped layer is
      -- known by its vars group's name ("lstm_cell", "dense").
      base = type(o.name) == "string" and o.name:gsub("_%d+$", "") or base
    elseif base == "cell" then
      base = parent:gsub("_%d+$", "") .. "_cell"
    end
    local vn = var_names(c and c.class or base, c and c.config, shapes)
    local po = plan[o.path]
    if po and not po.open and #po.slots == #o.vars then
      vn = {}
      for k, sl in ipairs(po.slots) do vn[k] = sl.var end
    end
    local lp = layer_path(o.path)
    local is_opt = o.path == "optimizer" or o.path:find("^optimizer/")
    o.names = {}
    for k, v in ipairs(o.vars) do
      local vname = vn and vn[k] or tostring(v.index)
      local n = is_opt and (o.path .. "/" .. vname) or (lp == "" and vname or lp .. "/" .. vname)
      if is_opt then
        add(opt, opt_order, opt_paths, n, v.t, v.hpath, path)
      else
        add(out, order, paths, n, v.t, v.hpath, path)
      end
      o.names[k] = n
    end
    o.vars = nil
  end
  local md = decode_json(metadata_text)
  local meta = {
    format = "keras3",
    objects = objects,
    paths = paths,
    config = config,
    config_json = config_text,
    metadata = md,
    keras_version = type(md) == "table" and md.keras_version or nil,
    hdf5 = h5,
  }
  if #opt_order > 0 then
    meta.optimizer = remember(opt, opt_order, { format = "keras_optimizer", paths = opt_paths })
  end
  return out, order, meta
end

-- ------------------------------------------------------------- model configs

-- HDF5's signature sits at 0 or at a power of two from 512 on (a user
-- block before the superblock).
local HDF5_SIG = "\x89HDF\r\n\x1a\n"
local function hdf5_at_userblock(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local size = f:seek("end")
  local off, found = 512, false
  while not found and off + 8 <= size and off <= 2^40 do
    f:seek("set", off)
    found = f:read(8) == HDF5_SIG
    off = off * 2
  end
  f:close()
  return found
end


local function read_all(path)
  local f, err = io.open(path, "rb")
  if not f then fail("%s: %s", path, err) end
  local text = f:read("a")
  f:close()
  return text
end

local function decode_config(path, what, text)
  local ok, v = pcall(json.decode_exact, text)
  if not ok then fail("%s: %s: %s", path, what, (tostring(v):gsub("^graft: ", ""))) end
  if type(v) ~= "table" or type(v.class_name) ~= "string" then
    fail("%s: %s is not a Keras model config (no class_name)", path, what)
  end
  return v
end

-- The model config of a .keras archive (config.json), a Keras 2 full-model
-- HDF5 file (its model_config attribute) or a model.to_json() file, as a
-- Lua table; JSON null is json.null and arrays keep array_mt, so that
-- json.encode gives the same JSON back (keys sorted). Second result: the
-- Keras version that wrote it and its backend, where the file says.
local function config_of(path)
  if type(path) ~= "string" then fail("keras.config: path must be a string") end
  local f, err = io.open(path, "rb")
  if not f then fail("%s: %s", path, err) end
  local head = f:read(8) or ""
  f:close()
  if head:sub(1, 4) == "PK\3\4" or head:sub(1, 4) == "PK\5\6" then
    local _, _, meta = core.read(path, "keras_zip")
    if not meta.config_json then fail("%s: no config.json member", path) end
    local md = decode_json(meta.metadata_json)
    return decode_config(path, "config.json", meta.config_json),
      { keras_version = type(md) == "table" and md.keras_version or nil }
  end
  if head == HDF5_SIG or hdf5_at_userblock(path) then
    local _, _, h5 = core.read(path, "hdf5")
    local root = (h5.attrs or {})["/"] or {}
    local text = root.model_config
    if type(text) ~= "string" then
      fail("%s: no model_config attribute (a weights-only file: take the config from a "
        .. ".keras, a full-model .h5 or a model.to_json() file)", path)
    end
    return decode_config(path, "model_config", text),
      { keras_version = root.keras_version, backend = root.backend }
  end
  local cfg = decode_config(path, "architecture JSON", read_all(path))
  return cfg, { keras_version = cfg.keras_version, backend = cfg.backend }
end

function keras.config(path)
  return (config_of(path))
end

-- What keras_write.lua shares with this file.
keras.shared = { fail = fail, array = array, EMPTY = EMPTY, decode_config = decode_config,
  config_of = config_of, fill = fill, join = join }

-- ------------------------------------------------------------- registry

-- A .keras zip holds model.weights.h5 or config.json (asked before torch
-- and numpy look at a zip). Whether an HDF5 file is a Keras one is decided
-- when it is opened.
function keras.detect(head, path, ctx)
  if ctx.stage == "bytes" then
    if head:sub(1, 8) == HDF5_SIG then return "hdf5" end
    if head:sub(1, 4) == "PK\3\4" or head:sub(1, 4) == "PK\5\6" then
      local ok, members = pcall(ctx.zip_names, path)
      if ok then
        for _, m in ipairs(members) do
          if m == "model.weights.h5" or m == "config.json" then return "keras_zip" end
        end
      end
    end
  elseif ctx.stage == "late" then
    if #head >= 8 and hdf5_at_userblock(path) then return "hdf5" end
  end
  return nil
end

-- graft.open for HDF5 and .keras files: ctx.format is what detection or the
-- caller said; ctx.auto when detected (a generic HDF5 file is then looked
-- at for a Keras layout).
function keras.open(path, _, ctx)
  local format, auto, remember = ctx.format, ctx.auto, ctx.remember
  local tensors, names, h5 = core.read(path, format == "keras_zip" and "keras_zip" or "hdf5")
  local kind, root = keras.classify(h5, names)
  if format == "keras_zip" then
    if kind ~= "keras3" and #names > 0 then
      fail("%s: model.weights.h5 is not in the Keras 3 layout", path)
    end
    kind = "keras3"
  elseif format == "hdf5" and not auto then
    kind = nil
  elseif format == "keras" and kind ~= "keras" then
    fail("%s: not a Keras 2 weights file (no layer_names attribute)", path)
  elseif format == "keras3" and kind ~= "keras3" then
    fail("%s: not a Keras 3 weights file (no layers/.../vars/<i> datasets)", path)
  end
  if kind == "keras" then
    return remember(keras.read2(path, tensors, names, h5, root, remember))
  elseif kind == "keras3" then
    local out, order, meta = keras.read3(path, tensors, names, h5, remember,
      h5.config_json, h5.metadata_json)
    if format == "keras_zip" then meta.container = "zip" end
    return remember(out, order, meta)
  end
  return remember(tensors, names, h5)
end
-- Writing is keras_write.lua's (loaded on first save: it requires this
-- module).
function keras.save(path, tensors, names, opts, ctx)
  return require("graft.formats.keras_write").save(path, tensors, names, opts, ctx)
end

return keras
