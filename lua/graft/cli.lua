-- graft.cli: the `graft` command.
--   graft ls FILE [--json]
--   graft show FILE NAME
--   graft convert IN OUT [--dtype D] [--map RECIPE] [--format F] [--OPTION VALUE ...]
--   graft diff A B [--map RECIPE] [--atol X]
--   graft check FILE TEMPLATE [--map RECIPE] [--json]
--   graft run RECIPE.lua [--dry-run] [ARGS...]
--   graft verify FILE
--   graft formats [--json]

local graft = require "graft"
local json = require "graft.json"
local registry = require "graft.registry"

local cli = {}

local usage = [==[
usage: graft ls FILE [--json]
       graft show FILE NAME
       graft convert IN OUT [--dtype D] [--map RECIPE] [--format F] [--max-shard-size S]
                     [--OPTION VALUE ...]   (any save option of OUT's format, see graft formats)
       graft diff A B [--map RECIPE] [--atol X]
       graft check FILE TEMPLATE [--map RECIPE] [--json]
       graft run RECIPE.lua [ARGS...]
                 [--dry-run]   (print each graft.map's plan; graft.save writes nothing)
       graft verify FILE
       graft formats [--json]
exit status: 0 done (diff: same; check: clean), 1 diff: different, check: problems, 2 error]==]

local function human(n)
  local units = { "B", "KiB", "MiB", "GiB", "TiB" }
  local i = 1
  while n >= 1024 and i < #units do n = n / 1024; i = i + 1 end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end

-- Split argv into positionals and --options (an option takes the next
-- word as its value unless it is a known flag).
local flags = { json = true, help = true, ["dry-run"] = true }
-- `graft run` passes everything after the recipe to it untouched.
local function parse(argv, cmd)
  local pos, opt = {}, {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local k = a:match("^%-%-(.+)$")
    if cmd == "run" and #pos >= 1 then k = nil end
    if k then
      local name, val = k:match("^([^=]+)=(.*)$")
      if name then opt[name] = val
      elseif flags[k] then opt[k] = true
      else
        opt[k] = argv[i + 1]
        if opt[k] == nil then error("graft: --" .. k .. " needs a value", 0) end
        i = i + 1
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, opt
end

local function shape_str(t)
  return "{" .. table.concat(t.shape, ",") .. "}"
end

function cli.ls(pos, opt, out)
  local path = pos[1] or error("graft: ls needs a FILE", 0)
  local m = graft.open(path)
  local names = graft.names(m)
  local total = 0
  if opt.json then
    local list = setmetatable({}, json.array_mt)
    for _, n in ipairs(names) do
      local t = m[n]
      total = total + t.nbytes
      list[#list + 1] = { name = n, dtype = t.dtype,
        shape = setmetatable(t.shape, json.array_mt), bytes = t.nbytes }
    end
    out:write(json.encode({ file = path, format = graft.meta(m).format,
      tensors = list, count = #names, bytes = total }), "\n")
    return
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
end

function cli.show(pos, _, out)
  local m = graft.open(pos[1] or error("graft: show needs FILE NAME", 0))
  local name = pos[2] or error("graft: show needs FILE NAME", 0)
  local t = m[name] or error("graft: " .. pos[1] .. ": no tensor named " .. name, 0)
  out:write(tostring(t), "\n")
  if t.numel > 0 and t.dtype ~= "string" and t.dtype ~= "complex64"
      and t.dtype ~= "complex128" then
    local s = t:stats()
    out:write(string.format("min %.6g  max %.6g  mean %.6g  std %.6g  nan %d\n",
      s.min, s.max, s.mean, s.std, s.nan))
  end
  if t.numel <= 64 then
    local parts = {}
    local function flatten(v)
      if type(v) == "table" then
        for _, x in ipairs(v) do flatten(x) end
      elseif type(v) == "string" then
        parts[#parts + 1] = string.format("%q", v)
      else
        parts[#parts + 1] = tostring(v)
      end
    end
    flatten(t:totable())
    out:write("[", table.concat(parts, ", "), "]\n")
  end
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

local convert_own = { map = true }

function cli.convert(pos, opt)
  local src, dst = pos[1], pos[2]
  if not src or not dst then error("graft: convert needs IN OUT", 0) end
  local m = apply_map(graft.open(src), opt.map)
  local opts = { order = graft.names(m), progress = true }
  for k, v in pairs(opt) do
    if not convert_own[k] then opts[k:gsub("%-", "_")] = save_value(v) end
  end
  graft.save(dst, m, opts)
end

function cli.diff(pos, opt, out)
  local a = apply_map(graft.open(pos[1] or error("graft: diff needs A B", 0)), opt.map)
  local b = graft.open(pos[2] or error("graft: diff needs A B", 0))
  local atol = tonumber(opt.atol or "0")
  local differ = 0
  for _, n in ipairs(graft.names(a)) do
    local x, y = a[n], b[n]
    if not y then
      out:write("only in A: ", n, "\n"); differ = differ + 1
    elseif shape_str(x) ~= shape_str(y) then
      out:write(string.format("shape: %s %s vs %s\n", n, shape_str(x), shape_str(y))); differ = differ + 1
    elseif x.dtype == "string" or y.dtype == "string" then
      if not x:equal(y) then out:write("values: ", n, "\n"); differ = differ + 1 end
    else
      local d = x:max_abs_diff(y)
      if not (d <= atol) then
        out:write(string.format("values: %s max abs diff %.6g\n", n, d)); differ = differ + 1
      end
    end
  end
  for _, n in ipairs(graft.names(b)) do
    if not a[n] then out:write("only in B: ", n, "\n"); differ = differ + 1 end
  end
  out:write(differ == 0 and "same\n" or string.format("%d differences\n", differ))
  return differ == 0 and 0 or 1
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
  graft.save = function(path, tensors)
    local names = type(tensors) == "table" and graft.names(tensors) or {}
    out:write(string.format("would write %s: %d tensor%s (dry run: nothing written)\n", tostring(path),
      #names, #names == 1 and "" or "s"))
  end
  return function() graft.map, graft.save = map, save end
end

function cli.run(pos, opt, out)
  local dry = opt["dry-run"]
  local rest = {}
  for i = 2, #pos do
    if pos[i] == "--dry-run" then dry = true else rest[#rest + 1] = pos[i] end
  end
  local recipe = pos[1] or error("graft: run needs RECIPE.lua", 0)
  local chunk = load_recipe(recipe)
  local args = { [0] = recipe }
  for _, a in ipairs(rest) do args[#args + 1] = a end
  _G.arg = args
  if not dry then
    chunk(table.unpack(args))
    return
  end
  local restore = dry_run_hooks(out)
  local ok, err = pcall(chunk, table.unpack(args))
  restore()
  if not ok then error(err, 0) end
end

-- A TEMPLATE is a file graft opens, or a Lua file returning a table of
-- shapes ({name = {d1, ...} or {shape = ..., dtype = ...}}) or tensors.
local function open_template(path)
  if path:match("%.lua$") then
    local t = load_recipe(path)()
    if type(t) ~= "table" then error("graft: " .. path .. ": a template recipe returns a table", 0) end
    return t
  end
  return graft.open(path)
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
  if not file or not tpl then error("graft: check needs FILE TEMPLATE", 0) end
  for k in pairs(opt) do
    if k ~= "map" and k ~= "json" then error("graft: check: unknown option --" .. k, 0) end
  end
  local m = apply_map(graft.open(file), opt.map)
  local ok, report = graft.check(m, open_template(tpl), { strict = true })
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
-- reader's checks (zip CRC-32 of npz members, ...).
function cli.verify(pos, _, out)
  local path = pos[1] or error("graft: verify needs a FILE", 0)
  local n = registry.verify(path)
  if not n then
    local m = graft.open(path)
    n = 0
    for _, name in ipairs(graft.names(m)) do
      local ok, err = pcall(m[name].contiguous, m[name])
      if not ok then error(err, 0) end
      n = n + 1
    end
  end
  out:write(string.format("%s: %d tensor%s verified\n", path, n, n == 1 and "" or "s"))
end

local function json_list(t)
  return setmetatable(t, json.array_mt)
end

-- The registry: graft.formats(), as a table or (--json) one JSON array.
function cli.formats(_, opt, out)
  local list = graft.formats()
  if opt.json then
    for _, f in ipairs(list) do json_list(f.extensions) end
    out:write(json.encode(json_list(list)), "\n")
    return
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
end

local commands = { ls = true, show = true, convert = true, diff = true, run = true, verify = true,
                   formats = true, check = true }

-- Returns the exit status; every error is one line on stderr, no traceback.
function cli.main(argv, out)
  out = out or io.stdout
  local cmd = table.remove(argv, 1)
  if cmd == nil or cmd == "--help" or cmd == "-h" or cmd == "help" then
    io.stderr:write(usage, "\n")
    return cmd == nil and 2 or 0
  end
  if not commands[cmd] then
    io.stderr:write("graft: unknown command '", cmd, "'\n", usage, "\n")
    return 2
  end
  local ok, rc = pcall(function()
    local pos, opt = parse(argv, cmd)
    if opt.help and cmd ~= "run" then
      io.stderr:write(usage, "\n")
      return 0
    end
    return cli[cmd](pos, opt, out)
  end)
  if not ok then
    -- A position inside graft's own Lua modules says nothing to the user;
    -- one in their recipe does, so it stays.
    local msg = tostring(rc):gsub("^[^\n]-graft/%a+%.lua:%d+: ", "")
    if not msg:find("^graft: ") then msg = "graft: " .. msg end
    io.stderr:write(msg, "\n")
    return 2
  end
  return rc or 0
end

return cli
