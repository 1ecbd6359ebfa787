-- graft.formats.tf (graft.tf): TensorFlow checkpoint policy. Bytes live in graft.core (the
-- table, bundle and V1 readers/writers); this module turns what the user
-- passes into a bundle prefix, reads and writes `checkpoint` state files,
-- and gives TF2 object-based checkpoints short names.
--
-- Path forms that open a checkpoint (docs/formats/tf.md#path-forms):
--   a directory          its `checkpoint` state file names the latest prefix;
--                        without one, a SavedModel's variables/variables or
--                        the only *.index in it
--   a prefix P           P.index exists
--   P.index, P.data-00000-of-00001
--   a V1 checkpoint file (a table whose header is SavedTensorSlices)

local core = require "graft.core"
local model = require "graft.model"
local util = require "graft.util"

local tf = { name = "tf" }

tf.formats = {
  { name = "tf", description = "TensorFlow checkpoint (tensor bundle: PREFIX.index + "
      .. "PREFIX.data-*; opened from a prefix, either file, a directory or a V1 file)",
    extensions = { "index" }, read = true, write = true,
    save_options = {
      num_shards = "number of .data-* files (default: the source bundle's layout, else 1)",
      shards = "table of name -> 0-based shard index",
      checkpoint_state = "false: leave the directory's `checkpoint` file alone (default: update it)",
    } },
  { name = "tf_v1", description = "TensorFlow V1 checkpoint file (SavedTensorSlices table)",
    read = true, write = false },
}

local MAGIC = "\x57\xfb\x80\x8b\x24\x75\x47\xdb"

local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

local is_file = util.is_file

-- fopen succeeds on a directory on Linux; reading it fails with EISDIR.
local function is_dir(p)
  local f = io.open(p, "rb")
  if not f then return false end
  local _, err, code = f:read(0)
  f:close()
  return code == 21 or (err and err:find("Is a directory", 1, true)) ~= nil
end

local function dirname(p)
  return p:match("^(.*)/[^/]*$") or "."
end

local function basename(p)
  return p:match("([^/]*)$")
end

local function tail_magic(p)
  local f = io.open(p, "rb")
  if not f then return false end
  local size = f:seek("end")
  local ok = false
  if size and size >= 48 then
    f:seek("set", size - 8)
    ok = f:read(8) == MAGIC
  end
  f:close()
  return ok
end

local function strip_suffix(p)
  local prefix = p:match("^(.*)%.index$")
  if prefix then return prefix end
  return p:match("^(.*)%.data%-%d%d%d%d%d%-of%-%d%d%d%d%d$")
end

-- ------------------------------------------------------- state files

-- Text-format string escapes: \n \t \r \" \' \\ \ooo \xhh.
local function unescape(s)
  return (s:gsub("\\(x%x%x?)", function(h) return string.char(tonumber(h:sub(2), 16)) end)
    :gsub("\\([0-7][0-7]?[0-7]?)", function(o) return string.char(tonumber(o, 8) % 256) end)
    :gsub("\\(.)", { n = "\n", t = "\t", r = "\r", ['"'] = '"', ["'"] = "'", ["\\"] = "\\" }))
end

local function escape(s)
  return (s:gsub('[%c"\\\128-\255]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\%03o", c:byte())
  end))
end

-- A CheckpointState text proto: model_checkpoint_path (string),
-- all_model_checkpoint_paths (repeated string),
-- all_model_checkpoint_timestamps (repeated double),
-- last_preserved_timestamp (double). Unknown fields are an error.
function tf.parse_state(text, where)
  local st = { all_model_checkpoint_paths = {}, all_model_checkpoint_timestamps = {} }
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    local l = line:gsub("^%s+", ""):gsub("%s+$", "")
    if l ~= "" and not l:find("^#") then
      local key, rest = l:match("^([%w_]+)%s*:%s*(.-)$")
      local str = rest and (rest:match('^"(.*)"$') or rest:match("^'(.*)'$"))
      if key == "model_checkpoint_path" and str then
        st.model_checkpoint_path = unescape(str)
      elseif key == "all_model_checkpoint_paths" and str then
        table.insert(st.all_model_checkpoint_paths, unescape(str))
      elseif key == "all_model_checkpoint_timestamps" and tonumber(rest) then
        table.insert(st.all_model_checkpoint_timestamps, tonumber(rest))
      elseif key == "last_preserved_timestamp" and tonumber(rest) then
        st.last_preserved_timestamp = tonumber(rest)
      else
        fail("%s: line %d: not a CheckpointState field: %s", where, lineno, l)
      end
    end
  end
  return st
end

function tf.format_state(st)
  local out = {}
  if st.model_checkpoint_path then
    out[#out + 1] = string.format('model_checkpoint_path: "%s"', escape(st.model_checkpoint_path))
  end
  for _, p in ipairs(st.all_model_checkpoint_paths or {}) do
    out[#out + 1] = string.format('all_model_checkpoint_paths: "%s"', escape(p))
  end
  for _, t in ipairs(st.all_model_checkpoint_timestamps or {}) do
    out[#out + 1] = string.format("all_model_checkpoint_timestamps: %.17g", t)
  end
  if st.last_preserved_timestamp then
    out[#out + 1] = string.format("last_preserved_timestamp: %.17g", st.last_preserved_timestamp)
  end
  return table.concat(out, "\n") .. "\n"
end

local function read_text(p)
  local f, err = io.open(p, "rb")
  if not f then fail("%s: cannot open: %s", p, tostring(err):gsub("^.-: ", "")) end
  local s = f:read("a")
  f:close()
  if not s then fail("%s: cannot read", p) end
  return s
end

-- The prefix a state file names (relative paths are relative to its
-- directory, as tf.train.latest_checkpoint takes them).
local function state_prefix(dir, file)
  local st = tf.parse_state(read_text(file), file)
  local p = st.model_checkpoint_path
  if not p or p == "" then fail("%s: no model_checkpoint_path", file) end
  if p:sub(1, 1) ~= "/" then p = dir .. "/" .. p end
  return p, st
end

-- ------------------------------------------------------- resolving

local function only_index(dir)
  local found
  local p = io.popen("ls -A '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  for name in p:lines() do
    local prefix = name:match("^(.*)%.index$")
    if prefix then
      if found then fail("%s: several checkpoints and no `checkpoint` file; name one", dir) end
      found = prefix
    end
  end
  p:close()
  return found and dir .. "/" .. found
end

-- kind ("v2" | "v1"), the prefix (v2) or file (v1), the parsed state file
-- (when one was read), or nil when path is not a TF checkpoint form.
function tf.resolve(path)
  local stripped = strip_suffix(path)
  if stripped and is_file(stripped .. ".index") then return "v2", stripped end
  if is_file(path .. ".index") then return "v2", path end
  if is_dir(path) then
    local dir = path:gsub("/+$", "")
    if dir == "" then dir = "/" end
    if is_file(dir .. "/checkpoint") then
      local p, st = state_prefix(dir, dir .. "/checkpoint")
      if is_file(p .. ".index") then return "v2", p, st end
      if is_file(p) then return "v1", p, st end
      fail("%s: the `checkpoint` file names %s, which has no %s.index", dir, p, basename(p))
    end
    if is_file(dir .. "/variables/variables.index") then return "v2", dir .. "/variables/variables" end
    local p = only_index(dir)
    if p then return "v2", p end
    return nil
  end
  if is_file(path) and tail_magic(path) and not stripped then return "v1", path end
  return nil
end

-- "tf" when path is one of the forms above, else nil (cheap: stats and at
-- most the last 8 bytes of one file). Asked before any bytes are read.
function tf.detect(_, path, ctx)
  if ctx.stage ~= "path" then return nil end
  local ok, kind = pcall(tf.resolve, path)
  if ok then return kind and "tf" or nil end
  return "tf"   -- a TF form with a problem: let open report it
end

-- The checkpoint at one of the path forms: tensors, names, meta.
function tf.read(path)
  local kind, target, state = tf.resolve(path)
  if not kind then
    if strip_suffix(path) then
      fail("%s: no %s.index beside it", path, basename(strip_suffix(path)))
    end
    fail("%s: not a TensorFlow checkpoint (no %s.index, no `checkpoint` file)", path, basename(path))
  end
  -- A V2 bundle opens through its compact index: tensors are made when
  -- first used, meta.entries records when read (an index of 10^6 entries
  -- costs ~200 bytes an entry).
  local tensors, names, meta
  if kind == "v2" then tensors, names, meta = core.tf_open(target)
  else tensors, names, meta = core.read(target, "tf_v1") end
  meta.format = "tf"
  meta.prefix = kind == "v2" and target or nil
  meta.file = kind == "v1" and target or nil
  meta.checkpoint_state = state
  return tensors, names, meta
end

-- A V2 bundle's per-entry crc32c, checked without materialising tensors.
function tf.verify(path)
  local kind, target = tf.resolve(path)
  if kind == "v2" then return core.tf_verify(target) end
  return nil
end

function tf.open(path, _, ctx)
  if ctx.format == "tf_v1" then return ctx.remember(ctx.read(path, "tf_v1")) end
  return ctx.remember(tf.read(path))
end

-- ------------------------------------------------------- short names

local ATTR = "/.ATTRIBUTES/VARIABLE_VALUE"

local function strip_output(n)
  return (n:gsub(":%d+$", ""))
end

-- Every variable under an optimizer node, at any depth, is the optimizer's.
-- A Keras >= 2.11 optimizer keeps its slots there too, in the list
-- `_variables`, with no slot_variables records: such a variable named
-- "<optimizer>/<slot>/<full name of a model variable>" (Adam/m/dense/kernel)
-- is that variable's slot.
function tf.optimizer_subtree(nodes, opt_nodes, key_of, full_of, slots, other)
  local model_key = {}
  for _, k in pairs(key_of) do
    if full_of[k] then model_key[full_of[k]] = k end
  end
  local seen, stack = {}, {}
  for id in pairs(opt_nodes) do stack[#stack + 1] = id end
  while #stack > 0 do
    local id = table.remove(stack)
    if not seen[id] then
      seen[id] = true
      for _, c in ipairs(nodes[id + 1] and nodes[id + 1].children or {}) do
        stack[#stack + 1] = c.node_id
      end
    end
  end
  for id in pairs(seen) do
    local k = key_of[id]
    if k and not slots[k] then
      local slot, var = (full_of[k] or ""):match("^[^/]+/([^/]+)/(.+)$")
      local vk = var and model_key[var]
      if vk and not seen[vk] and vk ~= k then
        slots[k] = { variable = vk, slot = slot }
      else
        other[k] = true
      end
    end
  end
end

-- For a TF2 object-based checkpoint (meta.object_graph present):
--   names[key]  = short name: the variable's own name (SerializedTensor
--                 full_name, e.g. "dense/kernel") when it is unique, else the
--                 key without "/.ATTRIBUTES/VARIABLE_VALUE";
--   slots[key]  = {variable = key of the slot's variable, slot = "m"}
--                 for optimizer slot variables;
--   optimizer[key] = true for the optimizer's own variables (iter,
--                 learning_rate...) and for everything under keras_api/,
--                 save_counter and the object graph itself.
-- For other checkpoints names[key] = key and nothing is a slot.
function tf.short_names(meta, keys)
  local names, slots, other = {}, {}, {}
  local og = meta.object_graph
  if not og then
    for _, k in ipairs(keys) do names[k] = k end
    return names, slots, other
  end
  local nodes = og.nodes
  local key_of, full_of = {}, {}
  for id, node in ipairs(nodes) do
    for _, a in ipairs(node.attributes) do
      if a.name == "VARIABLE_VALUE" then
        key_of[id - 1] = a.checkpoint_key
        full_of[a.checkpoint_key] = a.full_name ~= "" and strip_output(a.full_name) or nil
      end
    end
  end
  -- Slot variables hang off the optimizer nodes; the optimizers' own
  -- subtrees hold hyperparameters.
  local opt_nodes = {}
  for id, node in ipairs(nodes) do
    if #node.slot_variables > 0 then opt_nodes[id - 1] = true end
    for _, s in ipairs(node.slot_variables) do
      local sk, vk = key_of[s.slot_variable_node_id], key_of[s.original_variable_node_id]
      if sk and vk then slots[sk] = { variable = vk, slot = s.slot_name } end
    end
  end
  local root = nodes[1]
  for _, c in ipairs(root and root.children or {}) do
    if c.local_name == "optimizer" then opt_nodes[c.node_id] = true end
  end
  tf.optimizer_subtree(nodes, opt_nodes, key_of, full_of, slots, other)
  local count = {}
  for _, k in ipairs(keys) do
    local f = full_of[k]
    if f then count[f] = (count[f] or 0) + 1 end
  end
  for _, k in ipairs(keys) do
    if k == "_CHECKPOINTABLE_OBJECT_GRAPH" or k:find("^save_counter/") or k:find("^keras_api/") then
      other[k] = true
    end
    local f = full_of[k]
    if f and count[f] == 1 and not slots[k] then
      names[k] = f
    elseif k:sub(-#ATTR) == ATTR then
      names[k] = k:sub(1, -#ATTR - 1)
    else
      names[k] = k
    end
  end
  return names, slots, other
end

-- A loaded TF2 checkpoint as three tables: weights (short name -> tensor),
-- slots (short name of the variable -> {slot name -> tensor}) and other
-- (key -> tensor: optimizer hyperparameters, save_counter, keras_api
-- metrics, the object graph). Keys without a short name stay as they are.
function tf.split(m)
  local keys = model.names(m)
  local names, slots, other = tf.short_names(model.meta(m), keys)
  local weights, slot_t, rest = {}, {}, {}
  for _, k in ipairs(keys) do
    local s = slots[k]
    if s then
      local v = names[s.variable] or s.variable
      slot_t[v] = slot_t[v] or {}
      slot_t[v][s.slot] = m[k]
    elseif other[k] then
      rest[k] = m[k]
    else
      local short = names[k]
      if weights[short] then short = k end
      weights[short] = m[k]
    end
  end
  return weights, slot_t, rest
end

-- ------------------------------------------------------- saving

local function prefix_of(path)
  if is_dir(path) or path:sub(-1) == "/" then return (path:gsub("/+$", "")) .. "/ckpt" end
  return strip_suffix(path) or path
end

-- Shard per tensor: opts.shards (name -> 0-based shard), else num_shards
-- contiguous runs of about equal bytes, else the layout of the source
-- bundle (src_meta.entries) when it had several shards.
local function plan_shards(names, tensors, opts, src_meta)
  if opts.shards then
    local n = opts.num_shards or 1
    for _, name in ipairs(names) do
      local s = opts.shards[name] or 0
      if s + 1 > n then n = s + 1 end
    end
    return n, opts.shards
  end
  local n = opts.num_shards
  if not n and src_meta and src_meta.format == "tf" and (src_meta.num_shards or 1) > 1
      and src_meta.entries then
    local map, ok = {}, true
    for _, name in ipairs(names) do
      local e = src_meta.entries[name]
      if not e then ok = false break end
      map[name] = e.shard_id
    end
    if ok then return src_meta.num_shards, map end
  end
  n = n or 1
  if math.type(n) ~= "integer" or n < 1 then fail("save: num_shards must be a positive integer") end
  local total = 0
  for _, name in ipairs(names) do total = total + tensors[name].nbytes end
  local map, acc = {}, 0
  for _, name in ipairs(names) do
    map[name] = total > 0 and math.min(n - 1, acc * n // total) or 0
    acc = acc + tensors[name].nbytes
  end
  return n, map
end

local function update_state(prefix)
  local dir = dirname(prefix)
  local file = dir .. "/checkpoint"
  local st = { all_model_checkpoint_paths = {} }
  if is_file(file) then
    local ok, old = pcall(tf.parse_state, read_text(file), file)
    if ok then st = old end
  end
  local rel = basename(prefix)
  local keep = {}
  for _, p in ipairs(st.all_model_checkpoint_paths or {}) do
    if p ~= rel and p ~= prefix then keep[#keep + 1] = p end
  end
  keep[#keep + 1] = rel
  st.model_checkpoint_path = rel
  st.all_model_checkpoint_paths = keep
  -- Timestamps no longer line up with the path list; TF treats them as
  -- optional.
  st.all_model_checkpoint_timestamps = nil
  st.last_preserved_timestamp = nil
  core.write_file(file, tf.format_state(st))
end

-- The .data files of a bundle of n shards at prefix, in shard order.
local function data_files(prefix, n)
  local out = {}
  for i = 0, n - 1 do out[#out + 1] = string.format("%s.data-%05d-of-%05d", prefix, i, n) end
  return out
end

-- The .data files of a checkpoint already at prefix (its index says how
-- many); {} when there is none or it does not open.
local function old_data_files(prefix)
  if not is_file(prefix .. ".index") then return {} end
  local ok, _, _, meta = pcall(core.read, prefix, "tf")
  local n = ok and type(meta) == "table" and math.tointeger(meta.num_shards)
  return data_files(prefix, n or 0)
end

-- opts: num_shards, shards, checkpoint_state (default true), progress.
function tf.save(path, tensors, names, opts, ctx)
  local prefix = prefix_of(path)
  local n, map = plan_shards(names, tensors, opts, ctx.source_meta)
  local stale = old_data_files(prefix)
  ctx.write(prefix, "tf", names, tensors,
    { plan = { num_shards = n, shard_of = map }, progress = ctx.progress(path) })
  -- The old checkpoint's data files a new shard count does not overwrite
  -- (other counts give other names: .data-00000-of-00003 vs -of-00001).
  local new = {}
  for _, f in ipairs(data_files(prefix, n)) do new[f] = true end
  util.remove_stale(stale, new)
  if opts.checkpoint_state ~= false then update_state(prefix) end
  return prefix
end

return tf
