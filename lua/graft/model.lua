-- graft.model: what graft knows about a model table beyond its contents
-- (names in file order, the format's meta), kept beside the table so that
-- the model stays a plain name -> tensor table; the save-side policy that
-- applies to every format (the table's shape, opts.order, opts.dtype); and
-- closing a model.

local core = require "graft.core"
local util = require "graft.util"

local fail, inner = util.fail, util.inner

local M = {}

-- Keyed weakly by the model table.
local info = setmetatable({}, { __mode = "k" })

function M.remember(m, names, meta)
  info[m] = { names = names, meta = meta }
  return m
end

-- Names in the file's order; sorted for tables built by hand (or where a
-- loaded table has been changed since).
function M.names(m)
  if type(m) ~= "table" then fail("names: expected a table of tensors, got %s", type(m)) end
  local i = info[m]
  local names = {}
  if i then
    for _, n in ipairs(i.names) do
      if m[n] ~= nil then names[#names + 1] = n end
    end
    -- Nothing added since it was opened (names are unique): no need for a
    -- set of 10^6 names to find the extra keys.
    local count = 0
    for _ in pairs(m) do count = count + 1 end
    if count == #names then return names end
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

function M.meta(m)
  local i = info[m]
  return i and i.meta or {}
end

-- ------------------------------------------------------------- closing

local function release_all(t)
  for _, v in pairs(t) do
    if core.is_tensor(v) then getmetatable(v).__close(v) end
  end
end

-- Every tensor of the model, and of the models its meta holds (Keras's
-- optimizer table), released: their mappings are unmapped once no other
-- tensor shares them.
local function close(m)
  release_all(m)
  for _, v in pairs(M.meta(m)) do
    if type(v) == "table" and info[v] then release_all(v) end
  end
end

-- Only __close: indexing and pairs see a plain table.
local closable_mt = { __close = close }

-- A model opened by graft.open: `local m <close> = graft.open(p)`.
function M.closable(m)
  if getmetatable(m) == nil then setmetatable(m, closable_mt) end
  return m
end

M.close = close

-- ----------------------------------------------------- saving policy

function M.check_table(tensors)
  if type(tensors) ~= "table" then fail("save: tensors must be a table") end
  for k, v in pairs(tensors) do
    if type(k) ~= "string" then fail("save: tensor names must be strings (got %s)", type(k)) end
    if not core.is_tensor(v) then fail("save: %q is not a tensor (it is a %s)", k, type(v)) end
    if core.is_released(v) then fail("save: %q is a released tensor", k) end
  end
end

-- opts.order first, in that order; the rest in graft.names order.
function M.ordered_names(tensors, opts)
  if opts.order then
    local names, seen = {}, {}
    for _, n in ipairs(opts.order) do
      if tensors[n] == nil then fail("save: opts.order names %q, which is not in the table", n) end
      if not seen[n] then names[#names + 1] = n; seen[n] = true end
    end
    for _, n in ipairs(M.names(tensors)) do
      if not seen[n] then names[#names + 1] = n end
    end
    return names
  end
  return M.names(tensors)
end

local float_dtypes = { float64 = true, float32 = true, float16 = true, bfloat16 = true,
                       float8_e4m3fn = true, float8_e5m2 = true }

-- opts.dtype casts floating-point tensors only: integer buffers such as
-- position ids or step counters keep their type. Block-quantised tensors
-- (t.block > 1, GGUF's q4_0 ...) are dequantised, to opts.dtype or else
-- float32, for every format that does not keep blocks (keep_blocks).
function M.cast(path, t, dtype, keep_blocks)
  if t.block > 1 and not keep_blocks then
    local ok, c = pcall(t.cast, t, dtype or "float32")
    if not ok then fail("%s: dequantising: %s", path, inner(c)) end
    return c
  end
  if not dtype or not float_dtypes[t.dtype] or t.dtype == dtype then return t end
  local ok, c = pcall(t.cast, t, dtype)
  if not ok then fail("%s: opts.dtype: %s", path, inner(c)) end
  return c
end

function M.apply_dtype(path, tensors, names, dtype, keep_blocks)
  local out = {}
  for _, n in ipairs(names) do out[n] = M.cast(path, tensors[n], dtype, keep_blocks) end
  return out
end

return M
