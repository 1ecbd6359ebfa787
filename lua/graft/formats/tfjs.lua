-- graft.formats.tfjs: TensorFlow.js models (docs/formats/tfjs.md): a
-- model.json (format, modelTopology, weightsManifest) and the .bin shards
-- beside it. Each manifest group lists its shard files (concatenated in
-- order) and its weights (name, shape, dtype, optional quantization), laid
-- end to end in that byte stream. Layers and graph models read alike;
-- writing makes a layers model from tensors plus a Keras model config,
-- sharded as tfjs-converter shards.
--
-- Bytes: src/formats/tfjs.c reads the manifest and maps the shards (weights
-- are views on them, quantised ones dequantised lazily as tfjs's
-- decodeWeight does); the writer here assembles the JSON and cuts the
-- tensors' bytes into shards.

local json = require "graft.json"
local util = require "graft.util"

local fail, inner = util.fail, util.inner

local M = { name = "tfjs" }

M.formats = {
  { name = "tfjs", description = "TensorFlow.js model.json (layers or graph model) with its .bin weight shards",
    extensions = { "json" }, read = true, write = true,
    save_options = {
      model_config = "the Keras model config (a table or JSON text) written as modelTopology",
      base = "a Keras .h5/.keras or a tfjs model.json whose model config is used",
      shard_size = "bytes per .bin shard (default 4194304, tfjs-converter's 4 MB)",
      generated_by = "the generatedBy field (default: the config's keras_version)",
    } },
}

-- JSON text whose first keys are tfjs's (converters write "format" or
-- "modelTopology" first; hand-made manifests may lead with weightsManifest).
function M.detect(head, path, ctx)
  if ctx.stage == "path" then return nil end
  local name = (path or ""):match("[^/]*$")
  if ctx.stage == "late" then
    if name == "model.json" then return "tfjs" end
    return nil
  end
  if not head:find("^%s*{") or head:find("[%z\1-\8\14-\31]") then return nil end
  if head:find('"modelTopology"%s*:') or head:find('"weightsManifest"%s*:')
      or head:find('^%s*{%s*"format"%s*:%s*"[%w%-]*model"') then
    return "tfjs"
  end
  if name == "model.json" and not head:find('"weight_map"', 1, true) then return "tfjs" end
  return nil
end

-- ------------------------------------------------------------ reading

-- The weights are src/formats/tfjs.c's (format "tfjs" of graft.core.read):
-- it checks the manifest against the shard files and maps them; no weight
-- data is read at open. Here: the document's own fields for graft.meta.
function M.open(path, _, ctx)
  local ok, doc = pcall(json.decode, util.read_text(path))
  if not ok then fail("%s: %s", path, inner(doc)) end
  if type(doc) ~= "table" or type(doc.weightsManifest) ~= "table" then
    fail("%s: not a TensorFlow.js model.json (no weightsManifest)", path)
  end
  local m, names, cmeta = ctx.read(path, "tfjs")
  local meta = { format = "tfjs", model_format = doc.format, modelTopology = doc.modelTopology,
                 generatedBy = doc.generatedBy, convertedBy = doc.convertedBy,
                 signature = doc.signature, userDefinedMetadata = doc.userDefinedMetadata,
                 modelInitializer = doc.modelInitializer, trainingConfig = doc.trainingConfig,
                 shards = cmeta.shards, groups = cmeta.groups, strings = cmeta.strings,
                 quantization = {} }
  -- The C reader accepted the manifest: every group and weight is well formed.
  for _, group in ipairs(doc.weightsManifest) do
    for _, w in ipairs(group.weights) do
      if m[w.name] and type(w.quantization) == "table" and w.quantization ~= json.null then
        meta.quantization[w.name] = w.quantization
      end
    end
  end
  return ctx.remember(m, names, meta)
end

-- ------------------------------------------------------------ writing

-- The raw text of key's value in the JSON object `text` (top level), so a
-- config is written back verbatim: decoding to Lua loses JSON nulls
-- (`batch_input_shape: [null, 8]`), which tfjs needs.
local function skip_string(text, i)
  -- text:sub(i, i) == '"'; returns the index after the closing quote.
  i = i + 1
  while true do
    local c = text:find('["\\]', i)
    if not c then return nil end
    if text:sub(c, c) == '"' then return c + 1 end
    i = c + 2
  end
end

local function value_end(text, i)
  local depth = 0
  repeat
    local c = text:find('[%[%]{}",]', i)
    if not c then return nil end
    local ch = text:sub(c, c)
    if ch == '"' then
      i = skip_string(text, c)
      if not i then return nil end
    elseif ch == "[" or ch == "{" then depth, i = depth + 1, c + 1
    elseif ch == "]" or ch == "}" then
      if depth == 0 then return c end
      depth, i = depth - 1, c + 1
    else
      if depth == 0 then return c end
      i = c + 1
    end
  until depth == 0 and text:find("^%s*[,}%]]", i)
  return i
end

local function raw_value(text, key)
  local i = text:find("{") + 1
  while true do
    local k0 = text:find('"', i, true)
    if not k0 then return nil end
    local k1 = skip_string(text, k0)
    if not k1 then return nil end
    local v0 = text:find("[^%s:]", k1)
    local v1 = value_end(text, v0)
    if not v1 then return nil end
    if json.decode(text:sub(k0, k1 - 1)) == key then
      return (text:sub(v0, v1 - 1):gsub("%s+$", ""))
    end
    i = text:find(",", v1, true)
    if not i then return nil end
    i = i + 1
  end
end

-- The model config as JSON text: Keras's tfjs converter writes it as
-- modelTopology (keras_version and backend beside class_name/config).
local function config_from_base(path, base, ctx)
  local ok, src = pcall(ctx.open, base)
  if not ok then fail("save %s: base %s: %s", path, base, inner(src)) end
  local meta = ctx.meta(src)
  local h5 = meta.hdf5 or {}
  local gen = meta.keras_version and ("keras v" .. meta.keras_version)
  if meta.format == "tfjs" then
    return raw_value(util.read_text(base), "modelTopology"), meta.generatedBy
  elseif meta.format == "keras" then
    local a = (h5.attrs or {})["/"] or {}
    if type(a.model_config) == "string" then return a.model_config, gen end
  elseif meta.format == "keras3" and type(h5.config_json) == "string" then
    return h5.config_json, gen
  end
  fail("save %s: base %s has no Keras model config", path, base)
end

-- (text, decoded table, generatedBy) of the config to write.
local function model_config(path, opts, ctx)
  local text, gen = opts.model_config, nil
  if opts.base then
    if text then fail("save %s: give model_config or base, not both", path) end
    text, gen = config_from_base(path, opts.base, ctx)
  end
  if type(text) == "table" then text = json.encode(text) end
  if type(text) ~= "string" then
    fail("save %s: format tfjs needs model_config (a Keras model config) or base", path)
  end
  local ok, cfg = pcall(json.decode, text)
  if not ok then fail("save %s: model_config is not JSON: %s", path, inner(cfg)) end
  if type(cfg) ~= "table" or type(cfg.class_name) ~= "string" then
    fail("save %s: model_config is not a Keras model config (no class_name)", path)
  end
  return text, cfg, gen
end

-- Layer names in the order the config lists them (nested models inline).
local function layer_order(cfg, out)
  out = out or {}
  local c = type(cfg.config) == "table" and cfg.config or {}
  local layers = c.layers
  if type(layers) ~= "table" then return out end
  for _, l in ipairs(layers) do
    if type(l) == "table" then
      local name = type(l.config) == "table" and l.config.name or l.name
      if type(name) == "string" then out[#out + 1] = name end
      if type(l.config) == "table" and type(l.config.layers) == "table" then
        layer_order(l, out)
      end
    end
  end
  return out
end

-- Tensor names ordered layer by layer as the config lists the layers,
-- keeping the given order within a layer; names of no listed layer last.
local function weight_order(cfg, names)
  local rank = {}
  for i, l in ipairs(layer_order(cfg)) do rank[l] = rank[l] or i end
  local keyed = {}
  for i, n in ipairs(names) do
    local r = rank[n:match("^([^/]*)/")] or math.huge
    keyed[i] = { r, i, n }
  end
  table.sort(keyed, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local out = {}
  for i, k in ipairs(keyed) do out[i] = k[3] end
  return out
end

local tfjs_dtype = { float32 = "float32", int32 = "int32", bool = "bool", complex64 = "complex64" }

-- The shard files an existing tfjs model.json at path names (bare file
-- names beside it, util.bad_file_name), to remove once a new set with
-- other names is in place; {} when there is none or it is not tfjs's.
local function old_shards(path, dir)
  local doc = util.json_object(path)
  local out = {}
  if not doc or type(doc.weightsManifest) ~= "table" then return out end
  for _, g in ipairs(doc.weightsManifest) do
    for _, p in ipairs(type(g) == "table" and type(g.paths) == "table" and g.paths or {}) do
      if not util.bad_file_name(p) then
        out[#out + 1] = dir .. "/" .. p
      end
    end
  end
  return out
end

function M.save(path, tensors, names, opts, ctx)
  local text, cfg, gen = model_config(path, opts, ctx)
  local shard = opts.shard_size or 4 * 1024 * 1024
  if math.type(shard) ~= "integer" or shard < 1 then
    fail("save %s: shard_size must be a positive integer", path)
  end
  local order = weight_order(cfg, names)
  local specs, total = {}, 0
  for i, n in ipairs(order) do
    local t = tensors[n]
    local dt = tfjs_dtype[t.dtype]
    if not dt then
      fail("save %s: %s: tfjs has no dtype %s (float32, int32, bool, complex64; "
        .. "cast it, e.g. {dtype = \"float32\"})", path, n, t.dtype)
    end
    specs[i] = { name = n, shape = setmetatable(t.shape, json.array_mt), dtype = dt }
    total = total + t.nbytes
  end
  -- tfjs-converter cuts the group's byte stream into shard_size pieces
  -- (a weight may span two files): group1-shard<i>of<n>.bin. Streamed one
  -- tensor at a time: memory holds one tensor's bytes and one shard.
  local count = math.max(1, (total + shard - 1) // shard)
  local dir, paths = util.dirname(path), {}
  local stale = old_shards(path, dir)
  -- Shards and model.json go to temporary names first, then in place as one
  -- set (util.commit_set): a failed save leaves the old model whole.
  local parts, tmp_json = {}, path .. ".graft-tmp"
  local pending, room = {}, shard
  local function flush()
    local file = string.format("group1-shard%dof%d.bin", #paths + 1, count)
    local final = dir .. "/" .. file
    parts[#parts + 1] = { final .. ".graft-tmp", final }
    ctx.write_file(parts[#parts][1], table.concat(pending))
    paths[#paths + 1] = file
    pending, room = {}, shard
  end
  local ok, err = pcall(function()
    for _, n in ipairs(order) do
      local b = tensors[n]:contiguous():bytes()
      local pos = 1
      while #b - pos + 1 >= room do
        pending[#pending + 1] = b:sub(pos, pos + room - 1)
        pos = pos + room
        flush()
      end
      if pos <= #b then
        pending[#pending + 1] = b:sub(pos)
        room = room - (#b - pos + 1)
      end
    end
    if #paths < count then flush() end
    local gen_by = opts.generated_by or gen
      or (cfg.keras_version and ("keras v" .. cfg.keras_version)) or "graft"
    local manifest = setmetatable({ { paths = setmetatable(paths, json.array_mt),
                                      weights = setmetatable(specs, json.array_mt) } },
                                  json.array_mt)
    -- Written by hand so the config text goes in verbatim.
    ctx.write_file(tmp_json, string.format(
      '{"format": "layers-model", "generatedBy": %s, "convertedBy": "graft", '
      .. '"modelTopology": %s, "weightsManifest": %s}',
      json.encode(gen_by), text, json.encode(manifest)))
  end)
  if not ok then
    for _, p in ipairs(parts) do os.remove(p[1]) end
    os.remove(tmp_json)
    error(err, 0)
  end
  util.commit_set(parts, { tmp_json, path }, stale)
end

return M
