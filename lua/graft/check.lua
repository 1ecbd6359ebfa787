-- graft.check: compare a model with a template in one pass and report
-- every problem at once: missing and unexpected names (a misspelt name is
-- paired with its closest counterpart), dtypes, shapes (a shape that is a
-- permutation of the template's says which permute() gives it).
--
-- It sees names, dtypes and shapes only: weights in the right shape but the
-- wrong order (swapped RNN gates, a missing Flatten row reorder) pass; only
-- comparing the target framework's outputs catches those.

local core = require "graft.core"
local model = require "graft.model"
local options = require "graft.options"
local util = require "graft.util"

local fail = util.fail

local M = {}

local accepted = { "strict" }

local function check_opts(opts)
  if type(opts) ~= "table" then fail("check: opts must be a table") end
  for k in pairs(opts) do
    if k ~= "strict" then
      local near = type(k) == "string" and options.closest(k, accepted)
      fail("check: option %q is not accepted%s (accepted: strict)", tostring(k),
        near and string.format("; did you mean %q?", near) or "")
    end
  end
end

local function is_shape(v)
  if type(v) ~= "table" or getmetatable(v) ~= nil then return false end
  for k, d in pairs(v) do
    if math.type(k) ~= "integer" or math.type(d) ~= "integer" or d < 0 then return false end
  end
  return #v == 0 and next(v) == nil or #v > 0
end

-- shape, dtype (either may be nil) of a template entry.
local function spec(name, v)
  if core.is_tensor(v) then return v.shape, v.dtype end
  if is_shape(v) then return v, nil end
  if type(v) == "table" and (v.shape == nil or is_shape(v.shape))
      and (v.dtype == nil or type(v.dtype) == "string") then
    return v.shape, v.dtype
  end
  fail("check: template entry %q must be a tensor, a shape {d1, d2, ...} or {shape = ..., dtype = ...}", name)
end

local function shape_str(s)
  return "{" .. table.concat(s, ",") .. "}"
end

-- The permutations layouts usually need first (graft's 1-based permute
-- args), so that a shape with repeated sizes names the likely one: HWIO ->
-- OIHW and back, WIO <-> OIW, DHWIO <-> OIDHW.
local preferred = {
  [2] = { { 2, 1 } },
  [3] = { { 3, 2, 1 } },
  [4] = { { 4, 3, 1, 2 }, { 3, 4, 2, 1 } },
  [5] = { { 5, 4, 1, 2, 3 }, { 3, 4, 5, 2, 1 } },
}

local function fits(got, want, p)
  for i = 1, #want do if got[p[i]] ~= want[i] then return false end end
  return true
end

-- p with want[i] == got[p[i]] (t:permute(table.unpack(p)) has the shape
-- want), and how many such p exist; nil when none does.
function M.permutation(got, want)
  if #got ~= #want or #got < 2 then return nil end
  local count, used = {}, {}
  for _, d in ipairs(got) do count[d] = (count[d] or 0) + 1 end
  for _, d in ipairs(want) do
    if not count[d] or count[d] == 0 then return nil end
    count[d] = count[d] - 1
  end
  local n = 1
  local mult = {}
  for _, d in ipairs(got) do
    mult[d] = (mult[d] or 0) + 1
    n = n * mult[d]
  end
  for _, p in ipairs(preferred[#got] or {}) do
    if fits(got, want, p) then return p, n end
  end
  local p = {}
  for i, d in ipairs(want) do
    for j = 1, #got do
      if not used[j] and got[j] == d then p[i] = j; used[j] = true; break end
    end
  end
  return p, n
end

local function numel(s)
  local n = 1
  for _, d in ipairs(s) do n = n * d end
  return n
end

local function shape_problem(name, got, want)
  local e = { kind = "shape", name = name, got = got, want = want }
  local p, n = M.permutation(got, want)
  if p then
    e.permute = p
    e.hint = string.format("permute(%s) gives the template's shape", table.concat(p, ", "))
    if n > 1 then
      e.hint = e.hint .. string.format(" (sizes repeat: one of %d permutations that do)", n)
    end
  elseif numel(got) == numel(want) then
    e.hint = "same number of elements: a reshape?"
  end
  return e
end

-- Pairs unexpected names with missing ones a few edits away (at most 2, or
-- a fifth of the longer name), closest first, each name used once.
local function misspellings(unexpected, missing)
  local cands = {}
  for _, u in ipairs(unexpected) do
    for _, m in ipairs(missing) do
      local d = options.distance(u, m)
      if d <= math.max(2, math.max(#u, #m) // 5) and d < #m then
        cands[#cands + 1] = { name = u, closest = m, distance = d }
      end
    end
  end
  table.sort(cands, function(a, b)
    if a.distance ~= b.distance then return a.distance < b.distance end
    if a.name ~= b.name then return a.name < b.name end
    return a.closest < b.closest
  end)
  local pairs_, used_u, used_m = {}, {}, {}
  for _, c in ipairs(cands) do
    if not used_u[c.name] and not used_m[c.closest] then
      used_u[c.name], used_m[c.closest] = true, true
      pairs_[#pairs_ + 1] = c
    end
  end
  table.sort(pairs_, function(a, b) return a.name < b.name end)
  return pairs_, used_u, used_m
end

local function summary(r, paired, ntemplate, strict)
  local lines = {}
  local function add(fmt, ...) lines[#lines + 1] = string.format(fmt, ...) end
  for _, p in ipairs(r.misspelt) do add("misspelt: %s -> %s?", p.name, p.closest) end
  for _, n in ipairs(r.missing) do
    if not paired[n] then add("missing: %s", n) end
  end
  for _, n in ipairs(r.unexpected) do
    if not paired[n] then add("unexpected: %s%s", n, strict and "" or " (allowed: not strict)") end
  end
  for _, e in ipairs(r.problems) do
    if e.kind == "shape" then
      add("shape: %s: %s, template %s%s", e.name, shape_str(e.got), shape_str(e.want),
        e.hint and (": " .. e.hint) or "")
    elseif e.kind == "dtype" then
      add("dtype: %s: %s, template %s", e.name, e.got, e.want)
    end
  end
  local head = r.ok and string.format("ok: %d tensor%s match the template", ntemplate,
    ntemplate == 1 and "" or "s") or string.format("%d problem%s", r.count, r.count == 1 and "" or "s")
  table.insert(lines, 1, head)
  return table.concat(lines, "\n")
end

local report_mt = { __tostring = function(r) return r.summary end }

-- graft.check(out, template [, {strict = true}]) -> ok, report.
-- out and template: model tables, or (with ctx.open) paths of any file
-- graft opens; template entries may also be shapes {d1, ...} or
-- {shape = ..., dtype = ...}. report: missing, unexpected (names), shape,
-- dtype (one line each, as before), problems (structured: {kind, name,
-- got, want [, permute, hint]} for every missing, unexpected, misspelt,
-- shape and dtype problem), misspelt ({name, closest, distance}), count,
-- summary (printable; also tostring(report)). Unexpected names are
-- problems only when opts.strict.
function M.check(out, template, opts, ctx)
  opts = opts or {}
  check_opts(opts)
  if type(out) == "string" and ctx then out = ctx.open(out) end
  if type(template) == "string" and ctx then template = ctx.open(template) end
  if type(out) ~= "table" or type(template) ~= "table" then
    fail("check: expected two tables (model, template)")
  end
  local r = { missing = {}, unexpected = {}, shape = {}, dtype = {}, problems = {} }
  local tnames = model.names(template)
  local sizes = {}
  for _, name in ipairs(tnames) do
    local want_shape, want_dtype = spec(name, template[name])
    local t = out[name]
    if not t then
      r.missing[#r.missing + 1] = name
    else
      if not core.is_tensor(t) then fail("check: %s is not a tensor", name) end
      if want_shape and shape_str(t.shape) ~= shape_str(want_shape) then
        r.shape[#r.shape + 1] = string.format("%s: %s vs template %s",
          name, shape_str(t.shape), shape_str(want_shape))
        sizes[#sizes + 1] = shape_problem(name, t.shape, want_shape)
      end
      if want_dtype and t.dtype ~= want_dtype then
        r.dtype[#r.dtype + 1] = string.format("%s: %s vs template %s", name, t.dtype, want_dtype)
        sizes[#sizes + 1] = { kind = "dtype", name = name, got = t.dtype, want = want_dtype }
      end
    end
  end
  for _, name in ipairs(model.names(out)) do
    if template[name] == nil then r.unexpected[#r.unexpected + 1] = name end
  end
  local paired_u, paired_m
  r.misspelt, paired_u, paired_m = misspellings(r.unexpected, r.missing)
  local paired = {}
  for n in pairs(paired_u) do paired[n] = true end
  for n in pairs(paired_m) do paired[n] = true end
  for _, p in ipairs(r.misspelt) do
    r.problems[#r.problems + 1] = { kind = "misspelt", name = p.name, closest = p.closest,
      distance = p.distance }
  end
  for _, n in ipairs(r.missing) do
    if not paired_m[n] then r.problems[#r.problems + 1] = { kind = "missing", name = n } end
  end
  if opts.strict then
    for _, n in ipairs(r.unexpected) do
      if not paired_u[n] then r.problems[#r.problems + 1] = { kind = "unexpected", name = n } end
    end
  end
  for _, e in ipairs(sizes) do r.problems[#r.problems + 1] = e end
  r.count = #r.problems
  r.ok = r.count == 0
  r.summary = summary(r, paired, #tnames, opts.strict)
  return r.ok, setmetatable(r, report_mt)
end

return M
