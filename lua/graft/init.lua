-- graft: open deep-learning weight files as Lua tables of tensors, write
-- them back in any format. This module is the user's vocabulary: format
-- detection, names and metadata bookkeeping, save policy (dtype, order,
-- sharding), rename/transform rules and checks. Bytes live in graft.core.

local core = require "graft.core"
local json = require "graft.json"
local torch = require "graft.torch"
local tf = require "graft.tf"
local tfgraph = require "graft.tfgraph"
local keras = require "graft.keras"
local onnx = require "graft.formats.onnx"

local graft = {}

graft.version = core.version
graft.tensor = core.tensor
graft.zeros = core.zeros
graft.cat = core.cat
graft.stack = core.stack
graft.is_tensor = core.is_tensor
graft.core = core
graft.tf = tf

-- Names and metadata of loaded models, keyed weakly by the model table so
-- that the model itself stays a plain name -> tensor table.
local info = setmetatable({}, { __mode = "k" })

-- Errors carry no Lua position: the message is the contract
-- ("graft: <file>: <what is wrong>").
local function fail(fmt, ...)
  error("graft: " .. string.format(fmt, ...), 0)
end

-- io.open's message repeats the path ("p: No such file or directory").
local function open_error(path, err)
  err = tostring(err)
  if err:sub(1, #path + 2) == path .. ": " then err = err:sub(#path + 3) end
  fail("%s: cannot open: %s", path, err)
end

-- A message from a nested graft call without its "graft: " prefix (nor
-- the Lua position luaL_error puts before it).
local function inner(msg)
  return (tostring(msg):gsub("^[^\n]-:%d+: graft: ", ""):gsub("^graft: ", ""))
end

local function file_head(path, n)
  local f, err = io.open(path, "rb")
  if not f then open_error(path, err) end
  local ok, head, err2 = pcall(f.read, f, n)
  f:close()
  if not ok or (head == nil and err2) then
    fail("%s: cannot read: %s", path, tostring(ok and err2 or head):gsub("^.-: ", ""))
  end
  return head or ""
end

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

-- Names of the members of a zip, from its central directory (nil when it
-- cannot be read this simply, e.g. ZIP64).
local function zip_names(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local size = f:seek("end")
  local tail = math.min(size, 65557)
  f:seek("set", size - tail)
  local b = f:read(tail) or ""
  local at, eocd = 1, nil
  while true do
    local i = b:find("PK\5\6", at, true)
    if not i then break end
    eocd, at = i, i + 1
  end
  local names
  if eocd and #b >= eocd + 21 then
    local n, cd_size, cd_off = string.unpack("<I2I4I4", b, eocd + 10)
    if cd_off + cd_size <= size and cd_size < 2^24 then
      f:seek("set", cd_off)
      local cd = f:read(cd_size) or ""
      names = {}
      local p = 1
      for _ = 1, n do
        if p + 46 > #cd + 1 or cd:sub(p, p + 3) ~= "PK\1\2" then break end
        local nl, el, cl = string.unpack("<I2I2I2", cd, p + 28)
        names[cd:sub(p + 46, p + 45 + nl)] = true
        p = p + 46 + nl + el + cl
      end
    end
  end
  f:close()
  return names
end

-- Formats are recognised by their first bytes, never by the extension;
-- directories and TF checkpoint path forms (a prefix, its .index or .data-*
-- files) first, since a prefix has no bytes of its own.
function graft.detect(path)
  local dirformat = tfgraph.detect_dir(path) or tf.detect(path)
  if dirformat then return dirformat end
  local head = file_head(path, 512)
  if head:sub(1, 6) == "\x93NUMPY" then return "npy" end
  if head:sub(1, 8) == HDF5_SIG then return "hdf5" end
  if head:sub(1, 4) == "PK\3\4" or head:sub(1, 4) == "PK\5\6" then
    local names = zip_names(path)
    if names and (names["model.weights.h5"] or names["config.json"]) then return "keras_zip" end
  end
  if head:sub(1, 4) == "PK\3\4" and torch.is_zip(path, head) then return "torch" end
  if head:sub(1, 4) == "PK\3\4" or head:sub(1, 4) == "PK\5\6" then return "npz" end
  if onnx.detect(head, path, { stage = "bytes" }) then return "onnx" end
  -- JSON text (an index) has no control bytes; a safetensors header length
  -- always does (it is below 2^56, so its high byte is 0).
  if head:find("^%s*{") and not head:find("[%z\1-\8\14-\31]") then
    return "safetensors_index"
  end
  if #head >= 9 and head:sub(9, 9) == "{" then return "safetensors" end
  if torch.is_pickle(path, head) then return "torch" end
  if #head == 0 then fail("%s: empty file", path) end
  local pbformat = onnx.detect(head, path, { stage = "late" }) or tfgraph.detect_name(path)
  if pbformat then return pbformat end
  if #head >= 8 and hdf5_at_userblock(path) then return "hdf5" end
  local shown = head:sub(1, 8):gsub("[^\32-\126]", function(c)
    return string.format("\\x%02x", c:byte())
  end)
  fail("%s: unrecognised format (first bytes \"%s\")", path, shown)
end

local function remember(m, names, meta)
  info[m] = { names = names, meta = meta }
  return m
end

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function read_text(path)
  local f, err = io.open(path, "rb")
  if not f then open_error(path, err) end
  local ok, s, err2 = pcall(f.read, f, "a")
  f:close()
  if not ok or not s then
    fail("%s: cannot read: %s", path, tostring(ok and err2 or s):gsub("^.-: ", ""))
  end
  return s
end

-- Shard files sit beside their index: a bare file name, never a path.
local function bad_shard_name(shard)
  return type(shard) ~= "string" or shard == "" or shard == "."
    or shard:find("/", 1, true) or shard:find("\\", 1, true)
    or shard:find("..", 1, true) or shard:find("%z")
end

-- A *.safetensors.index.json: every shard opened, one table, shard order.
local function open_sharded(path, opts)
  local ok, index = pcall(json.decode, read_text(path))
  if not ok then fail("%s: %s", path, inner(index)) end
  if type(index) ~= "table" or type(index.weight_map) ~= "table" then
    fail("%s: not a sharded checkpoint index (no weight_map)", path)
  end
  local shards, order = {}, {}
  for name, shard in pairs(index.weight_map) do
    if type(name) ~= "string" then
      fail("%s: weight_map must be an object of tensor name -> shard file", path)
    end
    if bad_shard_name(shard) then
      fail("%s: tensor %q: bad shard file name %q", path, name, tostring(shard))
    end
    if not shards[shard] then
      shards[shard] = {}
      order[#order + 1] = shard
    end
    shards[shard][name] = true
  end
  table.sort(order)
  local m, names, files = {}, {}, {}
  local sub = {}
  for k, v in pairs(opts or {}) do sub[k] = v end
  sub.format = nil
  for _, shard in ipairs(order) do
    local file = dirname(path) .. "/" .. shard
    local ok_open, part = pcall(graft.open, file, sub)
    if not ok_open then fail("%s: shard %s: %s", path, shard, inner(part)) end
    for _, name in ipairs(graft.names(part)) do
      if not shards[shard][name] then
        fail("%s: tensor %q is in %s but the index does not list it there", path, name, shard)
      end
      if m[name] then fail("%s: tensor %q appears in two shards", path, name) end
      m[name] = part[name]
      names[#names + 1] = name
    end
    for name in pairs(shards[shard]) do
      if not part[name] then
        fail("%s: index maps %q to %s, which does not hold it", path, name, shard)
      end
    end
    files[#files + 1] = shard
  end
  local meta = { format = "safetensors", sharded = true, shards = files,
                 index_metadata = index.metadata }
  return remember(m, names, meta)
end

function graft.open(path, opts)
  if type(path) ~= "string" then fail("open: path must be a string") end
  opts = opts or {}
  local format = opts.format or graft.detect(path)
  if format == "safetensors_index" then return open_sharded(path, opts) end
  if format == "tf" then return remember(tf.open(path)) end
  if tfgraph.formats[format] then return remember(tfgraph.open(path, format)) end
  if keras.reads[format] then return keras.open(path, format, opts.format == nil, remember) end
  if format == "onnx" or format == "onnx_tensor" then
    return onnx.open(path, opts, { format = format, read = core.read, remember = remember })
  end
  local tensors, names, meta = core.read(path, format, opts)
  if format == "torch" or format == "pickle" then
    tensors, names, meta = torch.shape(path, tensors, names, meta, opts)
  end
  return remember(tensors, names, meta)
end

-- Names in the file's order; sorted for tables built by hand (or where a
-- loaded table has been changed since).
function graft.names(m)
  if type(m) ~= "table" then fail("names: expected a table of tensors, got %s", type(m)) end
  local i = info[m]
  local names = {}
  if i then
    for _, n in ipairs(i.names) do
      if m[n] ~= nil then names[#names + 1] = n end
    end
    local seen = {}
    for _, n in ipairs(names) do seen[n] = true end
    local extra = {}
    for k in pairs(m) do
      if not seen[k] then extra[#extra + 1] = k end
    end
    table.sort(extra)
    for _, n in ipairs(extra) do names[#names + 1] = n end
    return names
  end
  for k in pairs(m) do names[#names + 1] = k end
  table.sort(names)
  return names
end

function graft.meta(m)
  local i = info[m]
  return i and i.meta or {}
end

-- ---------------------------------------------------------------- saving

local ext_formats = {
  safetensors = "safetensors", npy = "npy", npz = "npz", index = "tf",
  pt = "torch", pth = "torch", bin = "torch",
  h5 = "keras", hdf5 = "hdf5", keras = "keras_zip",
}

ext_formats.pb = "graphdef"
ext_formats.onnx = "onnx"

local function format_for(path, opts)
  local f = opts.format
  if not f and path:lower():match("%.weights%.h5$") then f = "keras3" end
  if not f then
    local ext = path:match("%.([%w_]+)$")
    f = ext and ext_formats[ext:lower()]
    if not f then
      fail("%s: cannot tell the format from the extension; pass opts.format", path)
    end
  end
  if f == "npz" and opts.compress then f = "npz_compressed" end
  return f
end

-- Size strings as Hugging Face writes them: "5GB" (10^9), "500MiB" (2^20).
local units = { B = 1, KB = 1e3, MB = 1e6, GB = 1e9, TB = 1e12,
                KIB = 2^10, MIB = 2^20, GIB = 2^30, TIB = 2^40 }
local function parse_size(s)
  if type(s) == "number" then return s end
  local num, unit = tostring(s):upper():match("^%s*([%d%.]+)%s*(%a*)%s*$")
  local mul = units[unit ~= "" and unit or "B"]
  if not num or not mul then fail("save: bad max_shard_size %q", tostring(s)) end
  return math.floor(tonumber(num) * mul)
end

local function check_table(tensors)
  if type(tensors) ~= "table" then fail("save: tensors must be a table") end
  for k, v in pairs(tensors) do
    if type(k) ~= "string" then fail("save: tensor names must be strings (got %s)", type(k)) end
    if not core.is_tensor(v) then fail("save: %q is not a tensor (it is a %s)", k, type(v)) end
  end
end

local function ordered_names(tensors, opts)
  if opts.order then
    local names, seen = {}, {}
    for _, n in ipairs(opts.order) do
      if tensors[n] == nil then fail("save: opts.order names %q, which is not in the table", n) end
      if not seen[n] then names[#names + 1] = n; seen[n] = true end
    end
    for _, n in ipairs(graft.names(tensors)) do
      if not seen[n] then names[#names + 1] = n end
    end
    return names
  end
  return graft.names(tensors)
end

local float_dtypes = { float64 = true, float32 = true, float16 = true, bfloat16 = true,
                       float8_e4m3fn = true, float8_e5m2 = true }

-- opts.dtype casts floating-point tensors only: integer buffers such as
-- position ids or step counters keep their type.
local function apply_dtype(path, tensors, names, dtype)
  if not dtype then return tensors end
  local out = {}
  for _, n in ipairs(names) do
    local t = tensors[n]
    if float_dtypes[t.dtype] and t.dtype ~= dtype then
      local ok, c = pcall(t.cast, t, dtype)
      if not ok then fail("%s: opts.dtype: %s", path, inner(c)) end
      t = c
    end
    out[n] = t
  end
  return out
end

local function progress_bar(label)
  if not core.isatty(2) then return nil end
  local last = -1
  return function(done, total)
    local pct = total > 0 and math.floor(done * 100 / total) or 100
    if pct == last then return end
    last = pct
    local width = 30
    local fill = math.floor(pct * width / 100)
    io.stderr:write(string.format("\r%s [%s%s] %3d%% %.1f/%.1f MiB", label,
      string.rep("#", fill), string.rep(".", width - fill), pct,
      done / 2^20, total / 2^20))
    if done >= total then io.stderr:write("\n") end
  end
end

local function progress_fn(opts, path)
  if type(opts.progress) == "function" then return opts.progress end
  if opts.progress then return progress_bar(path:match("[^/]*$")) end
  return nil
end

local function shard_name(path, i, n)
  local dir, base = path:match("^(.-)([^/]*)$")
  local stem, ext = base:match("^(.*)(%.[^.]+)$")
  if not stem then stem, ext = base, "" end
  return dir, string.format("%s-%05d-of-%05d%s", stem, i, n, ext)
end

local function save_sharded(path, tensors, names, opts, format)
  local limit = parse_size(opts.max_shard_size)
  local shards, cur, size = {}, nil, 0
  local total = 0
  for _, n in ipairs(names) do
    local bytes = tensors[n].nbytes
    total = total + bytes
    if not cur or (size + bytes > limit and #cur > 0) then
      cur = {}
      shards[#shards + 1] = cur
      size = 0
    end
    cur[#cur + 1] = n
    size = size + bytes
  end
  if #shards <= 1 then
    return core.write(path, format, names, tensors, opts.metadata, progress_fn(opts, path))
  end
  local dir, map = nil, {}
  for i, list in ipairs(shards) do
    local d, file = shard_name(path, i, #shards)
    dir = d
    core.write(d .. file, format, list, tensors, opts.metadata, progress_fn(opts, file))
    for _, n in ipairs(list) do map[n] = file end
  end
  local index = { metadata = { total_size = total }, weight_map = map }
  local base = path:match("[^/]*$")
  core.write_file(dir .. base .. ".index.json", json.encode_pretty(index) .. "\n")
end

-- ---------------------------------------------------------- torch files

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

local function torch_keys(t, opts)
  local all_strings = true
  for k in pairs(t) do
    if type(k) ~= "string" then
      all_strings = false
      if math.type(k) ~= "integer" then
        fail("save: dict keys must be strings or integers (got %s)", type(k))
      end
    end
  end
  if all_strings then return opts and ordered_names(t, opts) or graft.names(t) end
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) ~= type(b) then return type(a) == "number" end
    return a < b
  end)
  return keys
end

local function save_torch(path, tensors, opts)
  local names, flat, casts, used, visiting = {}, {}, {}, {}, {}
  local function leaf(t, name)
    if casts[t] then return casts[t] end
    local c = t
    if opts.dtype and float_dtypes[t.dtype] and t.dtype ~= opts.dtype then
      local ok, r = pcall(t.cast, t, opts.dtype)
      if not ok then fail("%s: opts.dtype: %s", path, inner(r)) end
      c = r
    end
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
    if core.is_tensor(v) then return leaf(v, name) end
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
      for _, k in ipairs(torch_keys(v, keyopts)) do
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
  core.write(path, "torch", names, flat, nil, progress_fn(opts, path), tree)
end

function graft.save(path, tensors, opts)
  opts = opts or {}
  if type(path) ~= "string" then fail("save: path must be a string") end
  if type(tensors) == "table" and format_for(path, opts) == "torch" then
    return save_torch(path, tensors, opts)
  end
  check_table(tensors)
  local format = format_for(path, opts)
  local names = ordered_names(tensors, opts)
  local out = apply_dtype(path, tensors, names, opts.dtype)
  if opts.max_shard_size then
    if format ~= "safetensors" then fail("save: max_shard_size is for safetensors") end
    return save_sharded(path, out, names, opts, format)
  end
  if format == "tf" then
    local src = info[tensors] and info[tensors].meta
    return tf.save(path, out, names, opts, src, progress_fn(opts, path))
  end
  if format == "graphdef" then
    return tfgraph.save(path, out, names, opts, progress_fn(opts, path))
  end
  if format == "onnx" then
    return onnx.save(path, out, names, opts, { format = format, open = graft.open, meta = graft.meta,
      names = graft.names, progress = function(p) return progress_fn(opts, p) end,
      write = function(p, f, n, t, input) core.write(p, f, n, t, input.metadata, input.progress) end })
  end
  if keras.writes[format] then
    return keras.write(path, format, out, names, opts, graft.meta(tensors), progress_fn(opts, path))
  end
  core.write(path, format, names, out, opts.metadata, progress_fn(opts, path))
end

-- ---------------------------------------------------- mapping and checks

graft.keep = setmetatable({}, { __tostring = function() return "graft.keep" end })
graft.drop = setmetatable({}, { __tostring = function() return "graft.drop" end })

-- Named layout changes for recipes (numpy's transpose(3,2,0,1) is
-- permute(4,3,1,2) here).
graft.layouts = {
  t = function(t) return t:t() end,
  hwio_to_oihw = function(t) return t:permute(4, 3, 1, 2) end,
  oihw_to_hwio = function(t) return t:permute(3, 4, 2, 1) end,
  hwoi_to_oihw = function(t) return t:permute(3, 4, 1, 2) end,
  dense_tf_to_torch = function(t) return t:t() end,
  dense_torch_to_tf = function(t) return t:t() end,
}

local function apply_transform(name, t, f)
  if f == nil then return t end
  if type(f) == "string" then
    local lf = graft.layouts[f]
    if not lf then fail("map: unknown layout %q for %q", f, name) end
    f = lf
  end
  if type(f) ~= "function" then fail("map: transform for %q must be a function or a layout name", name) end
  local ok, r = pcall(f, t, name)
  if not ok then fail("map: %s: %s", name, inner(r)) end
  if not core.is_tensor(r) then fail("map: transform of %q returned %s", name, type(r)) end
  return r
end

local function new_name(name, t, pat, target)
  if target == graft.keep then return name end
  local ok, new
  if type(target) == "function" then
    ok, new = pcall(target, name, t)
  elseif type(target) == "string" then
    ok, new = pcall(string.gsub, name, pat, target)
  else
    fail("map: rule %q: target must be a string, a function, graft.keep or graft.drop", pat)
  end
  if not ok then fail("map: %s: rule %q: %s", name, pat, inner(new)) end
  if type(new) ~= "string" then
    fail("map: %s: rule %q gave no name (%s)", name, pat, type(new))
  end
  return new
end

-- The first rule whose pattern matches `name`, or nil.
local function find_rule(rules, name)
  for i, rule in ipairs(rules) do
    local pat = type(rule) == "table" and rule[1]
    if type(pat) ~= "string" then fail("map: rule %d: {pattern, target [, transform]} with a string pattern", i) end
    local ok, hit = pcall(string.find, name, pat)
    if not ok then fail("map: rule %d: bad pattern %q: %s", i, pat, inner(hit)) end
    if hit then return rule end
  end
  return nil
end

-- rules: ordered list of {pattern, target [, transform]}; the first rule
-- whose Lua pattern matches a name decides. target: a replacement string
-- (string.gsub syntax), a function(name, tensor) -> new name, graft.keep
-- or graft.drop. A name no rule matches is an error.
function graft.map(m, rules, opts)
  opts = opts or {}
  if type(rules) ~= "table" then fail("map: rules must be a list of {pattern, target [, transform]}") end
  local out, order, from = {}, {}, {}
  for _, name in ipairs(graft.names(m)) do
    local t = m[name]
    local rule = find_rule(rules, name)
    local new, transform
    if rule then
      if rule[2] ~= graft.drop then
        new, transform = new_name(name, t, rule[1], rule[2]), rule[3]
      end
    elseif opts.keep_unmatched then
      new = name
    else
      fail("map: no rule matches %q (add a rule, graft.keep or graft.drop)", name)
    end
    if new then
      if from[new] then fail("map: %q and %q both map to %q", from[new], name, new) end
      from[new] = name
      out[new] = apply_transform(name, t, transform)
      order[#order + 1] = new
    end
  end
  return remember(out, order, { format = "map" })
end

-- template: a model table, or name -> {shape = {...}, dtype = "..."}.
function graft.check(out, template, opts)
  opts = opts or {}
  local report = { missing = {}, unexpected = {}, shape = {}, dtype = {} }
  if type(out) ~= "table" or type(template) ~= "table" then
    fail("check: expected two tables (model, template)")
  end
  local function spec(name, v)
    if core.is_tensor(v) or type(v) == "table" then return v.shape, v.dtype end
    fail("check: template entry %q must be a tensor or {shape, dtype}", name)
  end
  for _, name in ipairs(graft.names(template)) do
    local want_shape, want_dtype = spec(name, template[name])
    local t = out[name]
    if not t then
      report.missing[#report.missing + 1] = name
    else
      if want_shape and table.concat(t.shape, ",") ~= table.concat(want_shape, ",") then
        report.shape[#report.shape + 1] = string.format("%s: {%s} vs template {%s}",
          name, table.concat(t.shape, ","), table.concat(want_shape, ","))
      end
      if want_dtype and t.dtype ~= want_dtype then
        report.dtype[#report.dtype + 1] = string.format("%s: %s vs template %s",
          name, t.dtype, want_dtype)
      end
    end
  end
  for _, name in ipairs(graft.names(out)) do
    if template[name] == nil then report.unexpected[#report.unexpected + 1] = name end
  end
  local ok = #report.missing == 0 and #report.shape == 0 and #report.dtype == 0
    and (not opts.strict or #report.unexpected == 0)
  return ok, report
end

return graft
