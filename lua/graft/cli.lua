-- graft.cli: the `graft` command (docs/cli.md). One function per command,
-- registered in `commands` with its usage and the options it takes; the
-- parser refuses any other option, naming it (and the closest one taken).
--   graft ls FILE [--open K=V,...] [--json]
--   graft show FILE NAME [--open K=V,...] [--json]
--   graft convert IN OUT [--open K=V,...] [--dtype D] [--map RECIPE] [--format F] [--no-provenance]
--                 [--json] [--OPTION VALUE ...]
--   graft diff A B [--open K=V,...] [--map RECIPE] [--atol X] [--json]
--   graft check FILE TEMPLATE [--open K=V,...] [--map RECIPE] [--json]
--   graft run RECIPE.lua [--dry-run] [ARGS...]   (graft run --json RECIPE ... for a JSON summary)
--   graft verify FILE [--open K=V,...] [--json]
--   graft formats [--json]
-- --open passes open options (graft formats lists each format's) to
-- graft.open for the files read: diff and check give them to both files.
-- Exit status: 0 done (diff: same), 1 diff: different (verify: a check
-- failed), 2 usage or bad input.

local graft = require "graft"
local json = require "graft.json"
local registry = require "graft.registry"
local options = require "graft.options"
local progress = require "graft.progress"
local provenance = require "graft.provenance"
local core = require "graft.core"

local cli = {}

-- Option kinds: flag (no value), number>=0, string.
local commands = {
  ls = { usage = "graft ls FILE [--open K=V,...] [--json]", npos = { 1, 1 }, need = "a FILE",
         opts = { json = "flag", open = "string" } },
  show = { usage = "graft show FILE NAME [--open K=V,...] [--json]", npos = { 2, 2 },
           need = "FILE NAME", opts = { json = "flag", open = "string" } },
  convert = { usage = "graft convert IN OUT [--open K=V,...] [--dtype D] [--map RECIPE] [--format F]"
                .. " [--no-provenance] [--json] [--OPTION VALUE ...]\n"
                .. "  (--OPTION: any save option of OUT's format, see graft formats)",
              npos = { 2, 2 }, need = "IN OUT",
              opts = { json = "flag", map = "string", ["no-provenance"] = "flag", open = "string" },
              save_options = true },
  diff = { usage = "graft diff A B [--open K=V,...] [--map RECIPE] [--atol X] [--json]",
           npos = { 2, 2 }, need = "A B",
           opts = { json = "flag", map = "string", atol = "number>=0", open = "string" } },
  check = { usage = "graft check FILE TEMPLATE [--open K=V,...] [--map RECIPE] [--json]",
            npos = { 2, 2 }, need = "FILE TEMPLATE",
            opts = { json = "flag", map = "string", open = "string" } },
  run = { usage = "graft run RECIPE.lua [ARGS...]\n       graft run RECIPE.lua --dry-run [ARGS...]",
          extra = "  --dry-run: every graft.map prints its plan; graft.save writes nothing\n"
            .. "  graft run --json RECIPE.lua [ARGS...]: a JSON summary on stdout after the "
            .. "recipe's own output\n  (options before RECIPE.lua are graft's, after it the "
            .. "recipe's, but --dry-run)", npos = { 1, math.huge }, need = "RECIPE.lua",
          opts = { json = "flag", ["dry-run"] = "flag" }, rest = true },
  verify = { usage = "graft verify FILE [--open K=V,...] [--json]", npos = { 1, 1 },
             need = "a FILE", opts = { json = "flag", open = "string" } },
  formats = { usage = "graft formats [--json]", npos = { 0, 0 },
              opts = { json = "flag" } },
}
local order = { "ls", "show", "convert", "diff", "check", "run", "verify", "formats" }

local function usage_text()
  local lines = {}
  for i, c in ipairs(order) do
    lines[i] = (i == 1 and "usage: " or "       ") .. commands[c].usage
  end
  lines[#lines + 1] = "exit status: 0 done (diff: same), 1 different / check failed, "
    .. "2 usage or bad input; graft COMMAND --help for one command"
  return table.concat(lines, "\n")
end

-- A usage error: exit 2, message names the command.
local function usage_error(cmd, fmt, ...)
  error({ usage = true, msg = "graft: " .. cmd .. ": " .. string.format(fmt, ...)
    .. "\nusage: " .. commands[cmd].usage }, 0)
end

local function human(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end

local function arr(t) return setmetatable(t, json.array_mt) end

-- The save options of every format, as CLI option names (underscores as
-- dashes), each taking a value: one no format takes is refused here with
-- the closest; one OUT's format does not take is refused by graft.save,
-- which names the formats that do.
local function save_option_names()
  local names = {}
  for _, d in ipairs(graft.formats()) do
    for k in pairs(d.save_options) do names[k:gsub("_", "-")] = "string" end
  end
  names.order, names.progress, names.provenance = nil, nil, nil
  return names
end

local function closest(key, taken)
  local list = {}
  for k in pairs(taken) do list[#list + 1] = k end
  table.sort(list)
  return options.closest(key, list), list
end

-- A --some-option VALUE of convert is the save option some_option: "true"
-- and "false" are booleans, whole numbers integers, anything else a string.
-- graft.save checks it against the output format's options.
local function save_value(v)
  if type(v) ~= "string" then return v end
  if v == "true" then return true end
  if v == "false" then return false end
  if v:match("^%d+$") then return math.tointeger(tonumber(v)) end
  return v
end

-- --open K=V[,K=V...] -> graft.open's options (values as save_value reads
-- them); graft.open refuses a key the file's format does not take.
local function open_opts(opt)
  if not opt.open then return nil end
  local t = {}
  for item in (opt.open .. ","):gmatch("([^,]*),") do
    local k, v = item:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
    if not k then
      error({ usage = true, msg = string.format("graft: --open takes KEY=VALUE[,KEY=VALUE...], "
        .. "got %q", item) }, 0)
    end
    t[k] = save_value(v)
  end
  return t
end

-- argv -> positionals, options (name -> value; flags true, numbers numbers).
-- `run` stops at the recipe: what follows is the recipe's.
local function parse(cmd, argv)
  local spec = commands[cmd]
  local pos, raw = {}, {}   -- pos: argv indexes of the non-option words
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if spec.rest and #pos >= 1 then
      pos[#pos + 1] = i
    elseif a == "--help" or a == "-h" then
      raw[#raw + 1] = { name = "help" }
    elseif a:match("^%-%-.") then
      local name, val = a:sub(3):match("^([^=]+)=(.*)$")
      raw[#raw + 1] = { name = name or a:sub(3), value = val, index = i }
    elseif a:match("^%-.") and not tonumber(a) then
      usage_error(cmd, "unknown option %s", a)
    else
      pos[#pos + 1] = i
    end
    i = i + 1
  end
  for _, r in ipairs(raw) do if r.name == "help" then return {}, { help = true } end end
  local taken = {}
  for k, v in pairs(spec.opts) do taken[k] = v end
  if spec.save_options then
    for k, v in pairs(save_option_names()) do taken[k] = taken[k] or v end
  end
  -- Second pass: options and their values (a value is the next word).
  local opt, consumed = {}, {}   -- consumed: argv indexes taken as values
  for _, r in ipairs(raw) do
    local kind = taken[r.name]
    if not kind then
      local near, list = closest(r.name, taken)
      local hint = near and string.format("; did you mean --%s?", near) or ""
      local options_list = {}
      for j, k in ipairs(list) do options_list[j] = "--" .. k end
      usage_error(cmd, "unknown option --%s%s (options: %s)", r.name, hint,
        table.concat(options_list, ", "))
    end
    local v = r.value
    if kind == "flag" then
      if v ~= nil then usage_error(cmd, "--%s takes no value", r.name) end
      v = true
    elseif v == nil then
      v = argv[r.index + 1]
      if v == nil or v:match("^%-%-") then usage_error(cmd, "--%s needs a value", r.name) end
      consumed[r.index + 1] = true
    end
    if kind == "number>=0" then
      local x = tonumber(v)
      if x == nil or x ~= x then usage_error(cmd, "--%s needs a number, got %q", r.name, v) end
      if x < 0 then usage_error(cmd, "--%s needs a number >= 0, got %s", r.name, v) end
      v = x
    end
    if opt[r.name] ~= nil then usage_error(cmd, "--%s given twice", r.name) end
    opt[r.name] = v
  end
  -- The first pass took option values for positionals: drop them.
  local keep = {}
  for _, k in ipairs(pos) do
    if not consumed[k] then keep[#keep + 1] = argv[k] end
  end
  local lo, hi = spec.npos[1], spec.npos[2]
  if #keep < lo then
    error({ usage = true, msg = string.format("graft: %s needs %s\nusage: %s", cmd,
      spec.need, spec.usage) }, 0)
  end
  if #keep > hi then usage_error(cmd, "unexpected argument %q", keep[hi + 1]) end
  return keep, opt
end

local function shape_str(t)
  return "{" .. table.concat(t.shape, ",") .. "}"
end

-- A file's metadata (scalar values only), or nil: safetensors
-- __metadata__, GGUF kv, HDF5 / Keras root attributes, ONNX metadata_props.
local function file_metadata(m)
  local meta = graft.meta(m)
  local h5 = meta.hdf5 or meta
  local md = meta.metadata or meta.__metadata__ or meta.metadata_props
    or (type(h5.attrs) == "table" and h5.attrs["/"])
  if type(md) ~= "table" then return nil end
  local out, any = {}, false
  for k, v in pairs(md) do
    if type(k) == "string" and (type(v) == "string" or type(v) == "number"
        or type(v) == "boolean") then
      out[k] = v; any = true
    end
  end
  return any and out or nil
end

function cli.ls(pos, opt, out)
  local path = pos[1]
  local m = graft.open(path, open_opts(opt))
  local names = graft.names(m)
  local total = 0
  local md = file_metadata(m)
  if opt.json then
    local list = arr({})
    for _, n in ipairs(names) do
      local t = m[n]
      total = total + t.nbytes
      list[#list + 1] = { name = n, dtype = t.dtype, shape = arr(t.shape), bytes = t.nbytes }
    end
    out:write(json.encode({ file = path, format = graft.meta(m).format,
      tensors = list, count = #names, bytes = total, metadata = md or json.null }), "\n")
    return 0
  end
  local w = 4
  for _, n in ipairs(names) do if #n > w then w = #n end end
  for _, n in ipairs(names) do
    local t = m[n]
    total = total + t.nbytes
    out:write(string.format("%-" .. w .. "s  %-13s %-20s %12s\n", n, t.dtype,
      shape_str(t), human(t.nbytes)))
  end
  out:write(string.format("%d tensor%s, %s (%s)\n", #names, #names == 1 and "" or "s", human(total),
    tostring(graft.meta(m).format)))
  if md then
    local keys = {}
    for k in pairs(md) do keys[#keys + 1] = k end
    table.sort(keys)
    out:write("metadata:\n")
    for _, k in ipairs(keys) do
      -- one line each: newlines escaped, long values (a model config) cut
      local v = tostring(md[k]):gsub("\n", "\\n")
      if #v > 160 then v = v:sub(1, 160) .. string.format("... (%d bytes; --json has it all)", #v) end
      out:write("  ", k, " = ", v, "\n")
    end
  end
  return 0
end

local function flat_values(t)
  local parts = {}
  local function walk(v)
    if type(v) == "table" then for _, x in ipairs(v) do walk(x) end
    else parts[#parts + 1] = v end
  end
  walk(t:totable())
  return parts
end

local function numeric(t)
  return t.dtype ~= "string" and t.dtype ~= "complex64" and t.dtype ~= "complex128"
end

function cli.show(pos, opt, out)
  local m = graft.open(pos[1], open_opts(opt))
  local name = pos[2]
  local t = m[name] or error("graft: " .. pos[1] .. ": no tensor named " .. name, 0)
  local s = t.numel > 0 and numeric(t) and t:stats() or nil
  if opt.json then
    local vals = t.numel <= 64 and t.dtype:match("^complex") == nil and flat_values(t) or nil
    if vals then
      for i, v in ipairs(vals) do
        if v ~= v or v == math.huge or v == -math.huge then vals[i] = tostring(v) end
      end
    end
    out:write(json.encode({ file = pos[1], name = name, dtype = t.dtype, shape = arr(t.shape),
      bytes = t.nbytes,
      stats = s and { min = s.min, max = s.max, mean = s.mean, std = s.std, nan = s.nan }
        or json.null,
      values = vals and arr(vals) or json.null }), "\n")
    return 0
  end
  out:write(tostring(t), "\n")
  if s then
    out:write(string.format("min %.6g  max %.6g  mean %.6g  std %.6g  nan %d\n",
      s.min, s.max, s.mean, s.std, s.nan))
  end
  if t.numel <= 64 then
    local parts = {}
    for i, v in ipairs(flat_values(t)) do
      parts[i] = type(v) == "string" and string.format("%q", v) or tostring(v)
    end
    out:write("[", table.concat(parts, ", "), "]\n")
  end
  return 0
end

local function load_recipe(path)
  local chunk, err = loadfile(path)
  if not chunk then error("graft: " .. err, 0) end
  return chunk
end

-- A --map RECIPE is a Lua file returning either a rules list for graft.map
-- (and optionally graft.map's opts) or a function(model) -> table.
local function apply_map(m, recipe)
  if not recipe then return m end
  local r, opts = load_recipe(recipe)()
  if type(r) == "function" then return r(m) end
  if type(r) == "table" then return graft.map(m, r, opts) end
  error("graft: " .. recipe .. ": a map recipe returns rules or a function", 0)
end

local convert_own = { map = true, json = true, ["no-provenance"] = true, open = true }


-- The files a source path stands for (a sharded index: itself; a TF
-- prefix: its index file when the path itself is not a file).
local function source_files(path)
  local f = io.open(path, "rb")
  if f then f:close(); return { path } end
  local idx = path .. ".index"
  f = io.open(idx, "rb")
  if f then f:close(); return { idx } end
  return {}
end

function cli.convert(pos, opt, out)
  local src, dst = pos[1], pos[2]
  local m = apply_map(graft.open(src, open_opts(opt)), opt.map)
  local opts = { order = graft.names(m), progress = true }
  for k, v in pairs(opt) do
    if not convert_own[k] then opts[k:gsub("%-", "_")] = save_value(v) end
  end
  if not opt["no-provenance"] then
    opts.provenance = provenance.make(source_files(src), opt.map,
      progress.bar("sha256 " .. src:match("[^/]*$")))
  end
  graft.save(dst, m, opts)
  if opt.json then
    out:write(json.encode({ input = src, output = dst, format = graft.detect(dst),
      count = #graft.names(m), provenance = opts.provenance or json.null }), "\n")
  end
  return 0
end

-- One tensor pair: nil when equal (within atol), else the difference.
local function diff_one(n, x, y, atol)
  if shape_str(x) ~= shape_str(y) then
    return { name = n, kind = "shape", a = arr(x.shape), b = arr(y.shape) }
  end
  if (x.dtype == "string") ~= (y.dtype == "string") or x.dtype ~= y.dtype then
    local d = { name = n, kind = "dtype", a = x.dtype, b = y.dtype }
    -- values compared where they can be (not strings, not complex vs real)
    local ok, r = pcall(x.diff, x, y)
    if ok then d.max_abs_diff, d.nan_mismatch = r.max_abs_diff, r.nan_mismatch end
    return d
  end
  if x.dtype == "string" then
    return not x:equal(y) and { name = n, kind = "values" } or nil
  end
  local r = x:diff(y)
  if r.nan_mismatch > 0 or not (r.max_abs_diff <= atol) then
    return { name = n, kind = "values", max_abs_diff = r.max_abs_diff,
             nan_mismatch = r.nan_mismatch }
  end
  return nil
end

-- JSON has no infinity: an infinite difference is the string "inf".
local function json_num(v)
  if v == math.huge then return "inf" end
  return v
end

local function diff_line(d)
  if d.kind == "only_a" then return "only in A: " .. d.name end
  if d.kind == "only_b" then return "only in B: " .. d.name end
  if d.kind == "shape" then
    return string.format("shape: %s {%s} vs {%s}", d.name, table.concat(d.a, ","),
      table.concat(d.b, ","))
  end
  local s
  if d.kind == "dtype" then s = string.format("dtype: %s %s vs %s", d.name, d.a, d.b)
  else s = "values: " .. d.name end
  if d.max_abs_diff then s = s .. string.format(" max abs diff %.6g", d.max_abs_diff) end
  if d.nan_mismatch and d.nan_mismatch > 0 then
    s = s .. string.format(", NaN on one side only at %d", d.nan_mismatch)
  end
  return s
end

function cli.diff(pos, opt, out)
  local a = apply_map(graft.open(pos[1], open_opts(opt)), opt.map)
  local b = graft.open(pos[2], open_opts(opt))
  local atol = opt.atol or 0
  local diffs, compared = arr({}), 0
  local na = graft.names(a)
  local bar = progress.bar("diff")
  local total, done = 0, 0
  for _, n in ipairs(na) do total = total + a[n].nbytes end
  for _, n in ipairs(na) do
    local x, y = a[n], b[n]
    if not y then diffs[#diffs + 1] = { name = n, kind = "only_a" }
    else
      compared = compared + 1
      diffs[#diffs + 1] = diff_one(n, x, y, atol)
    end
    done = done + x.nbytes
    if bar then bar(done, total) end
  end
  for _, n in ipairs(graft.names(b)) do
    if not a[n] then diffs[#diffs + 1] = { name = n, kind = "only_b" } end
  end
  if opt.json then
    for _, d in ipairs(diffs) do
      if d.max_abs_diff then d.max_abs_diff = json_num(d.max_abs_diff) end
    end
    out:write(json.encode({ a = pos[1], b = pos[2], atol = atol, same = #diffs == 0,
      compared = compared, differences = diffs }), "\n")
  else
    for _, d in ipairs(diffs) do out:write(diff_line(d), "\n") end
    out:write(#diffs == 0 and "same\n" or string.format("%d differences\n", #diffs))
  end
  return #diffs == 0 and 0 or 1
end

-- --dry-run: every graft.map of the recipe prints its plan (graft.map's
-- opts.dry_run) and still returns its lazy result, so the recipe goes on;
-- every graft.save prints what it would write and writes nothing.
local function dry_run_hooks(out)
  local map, save = graft.map, graft.save
  graft.map = function(m, rules, opts)
    local o = {}
    for k, v in pairs(opts or {}) do o[k] = v end
    o.dry_run = true
    local plan = map(m, rules, o)
    out:write(string.format("plan (%d step%s):\n", #plan, #plan == 1 and "" or "s"), tostring(plan), "\n")
    return map(m, rules, opts)
  end
  graft.save = function(path, tensors, opts)
    local names = type(tensors) == "table" and graft.names(tensors) or {}
    out:write(string.format("would write %s: %d tensor%s (dry run: nothing written)\n", tostring(path),
      #names, #names == 1 and "" or "s"))
    -- each tensor as it would be written (save's dtype option applied to
    -- floating tensors, as graft.save does), from shapes only
    local to = type(opts) == "table" and opts.dtype
    for _, n in ipairs(names) do
      local t = tensors[n]
      if core.is_tensor(t) then
        local dt = (to and t.dtype:find("^b?float")) and to or t.dtype
        out:write(string.format("  %s %s {%s}\n", n, dt, table.concat(t.shape, ",")))
      end
    end
  end
  return function() graft.map, graft.save = map, save end
end

-- Runs the recipe with its own arguments as `arg` and `...`; it is
-- registered for provenance (graft.provenance.recipe()) first. --dry-run
-- (before or after the recipe) prints plans and writes nothing.
function cli.run(pos, opt, out)
  local recipe = pos[1]
  local dry = opt["dry-run"]
  local args = { [0] = recipe }
  for i = 2, #pos do
    if pos[i] == "--dry-run" then dry = true else args[#args + 1] = pos[i] end
  end
  local chunk = load_recipe(recipe)
  local sha = provenance.register(recipe)
  _G.arg = args
  if dry then
    local restore = dry_run_hooks(out)
    local ok, err = pcall(chunk, table.unpack(args))
    restore()
    if not ok then error(err, 0) end
  else
    chunk(table.unpack(args))
  end
  if opt.json then
    out:write(json.encode({ recipe = recipe, recipe_sha256 = sha, ok = true }), "\n")
  end
  return 0
end

-- A TEMPLATE is a file graft opens, or a Lua file returning a table of
-- shapes ({name = {d1, ...} or {shape = ..., dtype = ...}}) or tensors.
local function open_template(path, oo)
  if path:match("%.lua$") then
    local t = load_recipe(path)()
    if type(t) ~= "table" then error("graft: " .. path .. ": a template recipe returns a table", 0) end
    return t
  end
  return graft.open(path, oo)
end

local function json_problem(p)
  local e = {}
  for k, v in pairs(p) do
    e[k] = type(v) == "table" and setmetatable(v, json.array_mt) or v
  end
  return e
end

-- graft check FILE TEMPLATE: graft.check with strict (unexpected names
-- are problems). --json: {file, template, ok, count, problems = [{kind,
-- name, got, want, permute, hint, closest, distance}]}. Exit 0 clean, 1
-- problems, 2 bad input.
function cli.check(pos, opt, out)
  local file, tpl = pos[1], pos[2]
  local m = apply_map(graft.open(file, open_opts(opt)), opt.map)
  local ok, report = graft.check(m, open_template(tpl, open_opts(opt)), { strict = true })
  if opt.json then
    local list = setmetatable({}, json.array_mt)
    for i, p in ipairs(report.problems) do list[i] = json_problem(p) end
    out:write(json.encode({ file = file, template = tpl, ok = ok, count = report.count,
      problems = list }), "\n")
  else
    out:write(report.summary, "\n")
  end
  return ok and 0 or 1
end

-- Checks every checksum the file carries: through its format's own
-- verify when it has one (a TF bundle's per-entry crc32c, without
-- materialising tensors); otherwise by loading every tensor, which runs the
-- reader's checks (zip CRC-32 of npz members, ...). A failed check exits 1
-- (a file that cannot be opened at all: 2).
function cli.verify(pos, opt, out)
  local path = pos[1]
  local n, failed = registry.verify(path), nil
  if not n then
    local m = graft.open(path, open_opts(opt))
    local names = graft.names(m)
    local bar = progress.bar("verify")
    local total, done = 0, 0
    for _, name in ipairs(names) do total = total + m[name].nbytes end
    n = 0
    for _, name in ipairs(names) do
      local ok, err = pcall(m[name].contiguous, m[name])
      if not ok then failed = { name = name, error = tostring(err) }; break end
      n = n + 1
      done = done + m[name].nbytes
      if bar then bar(done, total) end
    end
  end
  if opt.json then
    out:write(json.encode({ file = path, ok = failed == nil, verified = n,
      error = failed and failed.error or json.null }), "\n")
  elseif failed then
    io.stderr:write(failed.error, "\n")
  else
    out:write(string.format("%s: %d tensor%s verified\n", path, n, n == 1 and "" or "s"))
  end
  return failed and 1 or 0
end

-- The registry: graft.formats(), as a table or (--json) one JSON array.
function cli.formats(_, opt, out)
  local list = graft.formats()
  if opt.json then
    for _, f in ipairs(list) do arr(f.extensions) end
    out:write(json.encode(arr(list)), "\n")
    return 0
  end
  for _, f in ipairs(list) do
    local exts = {}
    for i, e in ipairs(f.extensions) do exts[i] = "." .. e end
    out:write(string.format("%-18s %-10s %s\n", f.name,
      (f.read and "read" or "") .. (f.read and f.write and "," or "") .. (f.write and "write" or ""),
      table.concat(exts, " ")))
    out:write("  ", f.description, "\n")
    for _, op in ipairs({ "open", "save" }) do
      local keys = {}
      for k in pairs(f[op .. "_options"]) do keys[#keys + 1] = k end
      table.sort(keys)
      for _, k in ipairs(keys) do
        out:write(string.format("  %s %-24s %s\n", op, k, f[op .. "_options"][k]))
      end
    end
  end
  return 0
end

-- Returns the exit status; every error is one line on stderr, no traceback.
function cli.main(argv, out)
  out = out or io.stdout
  local cmd = table.remove(argv, 1)
  if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
    io.stderr:write(usage_text(), "\n")
    return cmd == nil and 2 or 0
  end
  if not commands[cmd] then
    io.stderr:write("graft: unknown command '", cmd, "'\n", usage_text(), "\n")
    return 2
  end
  local ok, rc = pcall(function()
    local pos, opt = parse(cmd, argv)
    if opt.help then
      out:write("usage: ", commands[cmd].usage, "\n")
      if commands[cmd].extra then out:write(commands[cmd].extra, "\n") end
      return 0
    end
    return cli[cmd](pos, opt, out)
  end)
  if not ok then
    if type(rc) == "table" and rc.usage then
      io.stderr:write(rc.msg, "\n")
      return 2
    end
    -- A position inside graft's own Lua modules says nothing to the user;
    -- one in their recipe does, so it stays.
    local msg = tostring(rc):gsub("^[^\n]-graft/%a+%.lua:%d+: ", "")
    if not msg:find("^graft: ") then msg = "graft: " .. msg end
    io.stderr:write(msg, "\n")
    return 2
  end
  return rc or 0
end

cli.commands = commands
return cli
