-- graft.map: renaming, dropping, splitting, merging and transforming the
-- tensors of a model by an ordered list of rules.
--
-- A rule is a table {matcher, target [, transform] [, from = {...}]
-- [, name = "..."]}:
--   matcher   a Lua pattern (string.find), or a function(name) returning
--             nil/false (no match), true (a match without captures) or the
--             captures (strings) that %1..%9 stand for in targets and `from`.
--   target    a replacement string (pattern rules: string.gsub on the name;
--             function matchers: %0 is the name, %1.. the captures), a
--             function(name, tensor) -> new name, graft.keep, graft.drop, or
--             a list of strings/functions: one output each (several outputs).
--   transform a function or a graft.layouts name. It gets the input tensors
--             (the matched one, or those of `from` in order), then the matched
--             name; it returns one tensor per target.
--   from      a list of templates expanded like a target ("%1.bias"): the
--             rule consumes all these names (the matched one among them); no
--             other rule sees them.
--   name      the transform's name in a dry run's plan (default: a layout's
--             name, or "function <file>:<line>").
-- The first rule whose matcher matches a name decides. Rules with `from`
-- claim their inputs before any other rule runs, whatever the source order.

local core = require "graft.core"
local layouts = require "graft.layouts"
local model = require "graft.model"
local options = require "graft.options"
local util = require "graft.util"

local fail, inner = util.fail, util.inner

local M = {}

M.keep = setmetatable({}, { __tostring = function() return "graft.keep" end })
M.drop = setmetatable({}, { __tostring = function() return "graft.drop" end })

-- Recipes compose as lists: graft.rules.extend(a, b, ...) is a new list of
-- a's rules, then b's, ... Since the first matching rule wins, overrides go
-- before the base (extend(mine, base)) and additions after (extend(base, more)).
M.rules = {}
function M.rules.extend(...)
  local out = {}
  for i = 1, select("#", ...) do
    local list = select(i, ...)
    if type(list) ~= "table" then fail("rules.extend: argument %d is not a rules list", i) end
    for _, r in ipairs(list) do out[#out + 1] = r end
  end
  return out
end

local accepted = { "dry_run", "keep_unmatched", "order" }

local function check_opts(opts)
  if type(opts) ~= "table" then fail("map: opts must be a table") end
  local ok = {}
  for _, k in ipairs(accepted) do ok[k] = true end
  local bad = {}
  for k in pairs(opts) do if not ok[k] then bad[#bad + 1] = tostring(k) end end
  if #bad > 0 then
    table.sort(bad)
    local near = options.closest(bad[1], accepted)
    fail("map: option %q is not accepted%s (accepted: %s)", bad[1],
      near and string.format("; did you mean %q?", near) or "", table.concat(accepted, ", "))
  end
  if opts.order ~= nil and opts.order ~= "rules" then
    fail("map: opts.order must be \"rules\" (got %s)", tostring(opts.order))
  end
end

local function rule_label(rule)
  return type(rule[1]) == "string" and string.format("%q", rule[1]) or "function matcher"
end

-- Validate the shape of every rule once, before any name is matched.
local function check_rules(rules)
  if type(rules) ~= "table" then fail("map: rules must be a list of {pattern, target [, transform]}") end
  for i, rule in ipairs(rules) do
    local m = type(rule) == "table" and rule[1]
    if type(m) ~= "string" and type(m) ~= "function" then
      fail("map: rule %d: {pattern, target [, transform]} with a string pattern or a function matcher", i)
    end
    if rule.from ~= nil then
      if type(rule.from) ~= "table" or #rule.from == 0 then
        fail("map: rule %d: from must be a non-empty list of name templates", i)
      end
      for _, f in ipairs(rule.from) do
        if type(f) ~= "string" then fail("map: rule %d: from entries must be strings", i) end
      end
    end
  end
end

-- captures: nil for a pattern rule (gsub does the expansion), else the list
-- a function matcher returned.
local function matches(rule, i, name)
  local m = rule[1]
  if type(m) == "string" then
    local ok, hit = pcall(string.find, name, m)
    if not ok then fail("map: rule %d: bad pattern %q: %s", i, m, inner(hit)) end
    return hit ~= nil, nil
  end
  local r = table.pack(pcall(m, name))
  if not r[1] then fail("map: %s: rule %d: matcher: %s", name, i, inner(r[2])) end
  if not r[2] then return false end
  local caps = {}
  if r[2] ~= true then
    for k = 2, r.n do caps[#caps + 1] = tostring(r[k]) end
  end
  return true, caps
end

local function find_rule(rules, name)
  for i, rule in ipairs(rules) do
    local hit, caps = matches(rule, i, name)
    if hit then return rule, i, caps end
  end
end

-- A string template expanded for `name` matched by `rule`.
local function expand(name, rule, caps, template)
  local ok, new
  if caps == nil then
    ok, new = pcall(string.gsub, name, rule[1], template)
  else
    ok, new = pcall(string.gsub, template, "%%(.)", function(c)
      if c == "%" then return "%" end
      local n = tonumber(c)
      if n == 0 then return name end
      if not n or caps[n] == nil then error("invalid capture index %" .. c, 0) end
      return caps[n]
    end)
  end
  if not ok then fail("map: %s: rule %s: %s", name, rule_label(rule), inner(new)) end
  return new
end

local function new_name(name, t, rule, caps, target)
  if target == M.keep then return name end
  local new
  if type(target) == "function" then
    local ok
    ok, new = pcall(target, name, t)
    if not ok then fail("map: %s: rule %s: %s", name, rule_label(rule), inner(new)) end
  elseif type(target) == "string" then
    new = expand(name, rule, caps, target)
  else
    fail("map: rule %s: target must be a string, a function, a list of them, graft.keep or graft.drop",
      rule_label(rule))
  end
  if type(new) ~= "string" then
    fail("map: %s: rule %s gave no name (%s)", name, rule_label(rule), type(new))
  end
  return new
end

local function transform_name(f)
  if f == nil then return nil end
  if type(f) == "string" then return f end
  if type(f) == "function" then
    local info = debug.getinfo(f, "S")
    return string.format("function %s:%d", info.short_src, info.linedefined)
  end
  return tostring(f)
end

-- The steps of the mapping, in source order of the name each matched:
-- {rule, index, name, caps, from = {names}, drop}. Rules with `from` claim
-- their inputs first; every name must then be claimed by exactly one step.
local function plan_steps(m, names, rules, keep_unmatched)
  local found, steps, claimed = {}, {}, {}
  for _, name in ipairs(names) do
    local rule, ri, caps = find_rule(rules, name)
    found[name] = { rule, ri, caps }
    if rule and rule.from then
      local step = { rule = rule, index = ri, name = name, caps = caps, from = {} }
      local self = false
      for k, tpl in ipairs(rule.from) do
        local src = expand(name, rule, caps, tpl)
        if m[src] == nil then fail("map: %s: rule %d: input %q (from[%d]) is not in the model", name, ri, src, k) end
        if src == name then self = true end
        step.from[k] = src
      end
      if not self then
        fail("map: %s: rule %d: from must include the name it matched (got %s)", name, ri,
          table.concat(step.from, ", "))
      end
      steps[#steps + 1] = step
    end
  end
  for _, step in ipairs(steps) do
    for _, src in ipairs(step.from) do
      if claimed[src] then
        fail("map: %q is an input of two rules (matched by %q and %q)", src, claimed[src].name, step.name)
      end
      claimed[src] = step
    end
  end
  local unmatched = {}
  for _, name in ipairs(names) do
    local step = claimed[name]
    if not step then
      local rule, ri, caps = table.unpack(found[name], 1, 3)
      if rule then
        step = { rule = rule, index = ri, name = name, caps = caps, from = { name } }
      elseif keep_unmatched then
        step = { rule = { name, M.keep }, name = name, from = { name } }
      else
        unmatched[#unmatched + 1] = string.format("%q", name)
      end
      if step then steps[#steps + 1] = step; claimed[name] = step end
    end
  end
  if #unmatched > 0 then
    fail("map: no rule matches %s%s (add a rule, graft.keep or graft.drop)", table.concat(unmatched, ", "),
      #unmatched > 1 and string.format(" (%d names)", #unmatched) or "")
  end
  -- Source order of the first input (claims keep a step at its own place).
  local pos = {}
  for i, name in ipairs(names) do pos[name] = i end
  for _, s in ipairs(steps) do s.pos = pos[s.from[1]] end
  table.sort(steps, function(a, b) return a.pos < b.pos end)
  return steps
end

local function targets_of(step, m)
  local target = step.rule[2]
  if target == M.drop then return {} end
  local list = (type(target) == "table" and target ~= M.keep) and target or { target }
  local out = {}
  for k, tg in ipairs(list) do out[k] = new_name(step.name, m[step.name], step.rule, step.caps, tg) end
  return out
end

local function apply(step, m, outs)
  local f = step.rule[3]
  local ins = {}
  for k, src in ipairs(step.from) do ins[k] = m[src] end
  if f == nil then
    if #ins > 1 then fail("map: %s: rule %d takes %d inputs and needs a transform", step.name, step.index, #ins) end
    local r = {}
    for k = 1, #outs do r[k] = ins[1] end
    return r
  end
  if type(f) == "string" then
    local lf = layouts[f]
    if not lf then fail("map: unknown layout %q for %q", f, step.name) end
    f = lf
  end
  if type(f) ~= "function" then fail("map: transform for %q must be a function or a layout name", step.name) end
  ins[#ins + 1] = step.name
  local r = table.pack(pcall(f, table.unpack(ins, 1, #ins)))
  if not r[1] then fail("map: %s: %s", step.name, inner(r[2])) end
  if r.n - 1 < #outs then
    fail("map: transform of %q returned %d value%s for %d output%s", step.name, r.n - 1,
      r.n == 2 and "" or "s", #outs, #outs == 1 and "" or "s")
  end
  local res = {}
  for k = 1, #outs do
    if not core.is_tensor(r[k + 1]) then
      fail("map: transform of %q returned %s%s", step.name, type(r[k + 1]),
        #outs > 1 and string.format(" for output %d (%s)", k, outs[k]) or "")
    end
    res[k] = r[k + 1]
  end
  return res
end

local function shape_str(shape)
  return "{" .. table.concat(shape, ",") .. "}"
end

-- What a dry run says when an output's shape cannot be known without data.
local READS_DATA = "the transform needs tensor data"

-- The shapes and dtypes of a step's outputs, without reading data: the
-- transform runs on phantoms (core.phantom: a shape and a dtype, no bytes),
-- so views, casts, arithmetic, reshape and cat give the result's shape and
-- dtype while anything needing values (totable, a comparison, evaluating
-- an expression) fails. Returns shapes, dtypes, or nil and why not.
local function dry_outputs(step, m, outs)
  local f = step.rule[3]
  local ins = {}
  for k, src in ipairs(step.from) do
    local ok, p = pcall(core.phantom, m[src].shape, m[src].dtype)
    if not ok then return nil, nil, inner(p) end
    ins[k] = p
  end
  local res
  if f == nil then
    if #ins > 1 then return nil, nil, "several inputs and no transform" end
    res = {}
    for k = 1, #outs do res[k] = ins[1] end
  else
    if type(f) == "string" then f = layouts[f] end
    if type(f) ~= "function" then return nil, nil, "the transform is not a function" end
    ins[#ins + 1] = step.name
    local r = table.pack(pcall(f, table.unpack(ins, 1, #ins)))
    if not r[1] then
      local msg = inner(r[2])
      if tostring(msg):find("no data: a dry run's stand-in", 1, true) then return nil, nil, READS_DATA end
      return nil, nil, "the transform failed: " .. tostring(msg)
    end
    res = {}
    for k = 1, #outs do
      if not core.is_tensor(r[k + 1]) then
        return nil, nil, string.format("the transform returned %s for output %d", type(r[k + 1]), k)
      end
      res[k] = r[k + 1]
    end
  end
  local shapes, dtypes = {}, {}
  for k, t in ipairs(res) do shapes[k], dtypes[k] = t.shape, t.dtype end
  return shapes, dtypes
end

-- A printable plan: one line per step.
local plan_mt = {}
function plan_mt.__tostring(plan)
  local lines = {}
  for _, s in ipairs(plan) do
    local ins = {}
    for k, n in ipairs(s.from) do
      ins[k] = string.format("%s %s %s", n, s.dtypes[k], shape_str(s.shapes[k]))
    end
    local to = {}
    for k, n in ipairs(s.to) do
      to[k] = s.to_shapes and string.format("%s %s %s", n, s.to_dtypes[k], shape_str(s.to_shapes[k]))
        or n
    end
    to = #s.to == 0 and "(dropped)" or table.concat(to, ", ")
    if #s.to > 0 and not s.to_shapes then to = to .. " ? (" .. s.unknown .. ")" end
    lines[#lines + 1] = string.format("%s -> %s%s", table.concat(ins, " + "), to,
      s.transform and ("  [" .. s.transform .. "]") or "")
  end
  return table.concat(lines, "\n")
end
M.plan_mt = plan_mt

-- graft.map(m, rules [, opts]): see the header. opts.keep_unmatched keeps
-- names no rule matches (else ONE error lists them all); opts.order =
-- "rules" orders the result by the rule that made each name (source order
-- within a rule), for positional formats such as Keras; opts.dry_run
-- returns the plan instead: a list of {rule, from = {names}, to = {names},
-- shapes, dtypes, to_shapes, to_dtypes, unknown, transform} (tostring
-- prints it), computed from names, shapes and dtypes only: no tensor data
-- is read. Output shapes and dtypes come from running the transform on
-- phantoms (see dry_outputs); when it needs values (or fails), to_shapes
-- and to_dtypes are nil and `unknown` says why.
function M.map(m, rules, opts)
  opts = opts or {}
  check_opts(opts)
  check_rules(rules)
  local names = model.names(m)
  local steps = plan_steps(m, names, rules, opts.keep_unmatched)
  if opts.dry_run then
    local plan = {}
    for _, s in ipairs(steps) do
      local shapes, dtypes = {}, {}
      for k, n in ipairs(s.from) do shapes[k], dtypes[k] = m[n].shape, m[n].dtype end
      local to = targets_of(s, m)
      local to_shapes, to_dtypes, unknown
      if #to > 0 then to_shapes, to_dtypes, unknown = dry_outputs(s, m, to) end
      plan[#plan + 1] = { rule = s.index, from = s.from, to = to, shapes = shapes,
        dtypes = dtypes, to_shapes = to_shapes, to_dtypes = to_dtypes, unknown = unknown,
        transform = s.rule.name or transform_name(s.rule[3]) }
    end
    return setmetatable(plan, plan_mt)
  end
  local out, order, from, rank = {}, {}, {}, {}
  for _, s in ipairs(steps) do
    local outs = targets_of(s, m)
    if #outs > 0 then
      local res = apply(s, m, outs)
      for k, new in ipairs(outs) do
        if from[new] then fail("map: %q and %q both map to %q", from[new], s.name, new) end
        from[new] = s.name
        out[new] = res[k]
        order[#order + 1] = new
        rank[new] = { s.index or #rules + 1, #order }
      end
    end
  end
  if opts.order == "rules" then
    table.sort(order, function(a, b)
      local x, y = rank[a], rank[b]
      return x[1] < y[1] or (x[1] == y[1] and x[2] < y[2])
    end)
  end
  return model.remember(out, order, { format = "map" })
end

return M
