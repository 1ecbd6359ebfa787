-- graft.map: renaming, dropping and transforming the tensors of a model by
-- an ordered list of rules.

local core = require "graft.core"
local layouts = require "graft.layouts"
local model = require "graft.model"
local util = require "graft.util"

local fail, inner = util.fail, util.inner

local M = {}

M.keep = setmetatable({}, { __tostring = function() return "graft.keep" end })
M.drop = setmetatable({}, { __tostring = function() return "graft.drop" end })

local function apply_transform(name, t, f)
  if f == nil then return t end
  if type(f) == "string" then
    local lf = layouts[f]
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
  if target == M.keep then return name end
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
    if hit then return rule, i end
  end
  return nil
end

-- rules: ordered list of {pattern, target [, transform]}; the first rule
-- whose Lua pattern matches a name decides. target: a replacement string
-- (string.gsub syntax), a function(name, tensor) -> new name, graft.keep
-- or graft.drop. A name no rule matches is an error. The result keeps the
-- source's order; opts.order = "rules" orders it by the rule that made each
-- name (source order within a rule), for positional formats such as Keras
-- whose layers want kernel before bias whatever order the source had.
function M.map(m, rules, opts)
  opts = opts or {}
  if type(rules) ~= "table" then fail("map: rules must be a list of {pattern, target [, transform]}") end
  if opts.order ~= nil and opts.order ~= "rules" then
    fail("map: opts.order must be \"rules\" (got %s)", tostring(opts.order))
  end
  local out, order, from, rank = {}, {}, {}, {}
  for _, name in ipairs(model.names(m)) do
    local t = m[name]
    local rule, ri = find_rule(rules, name)
    local new, transform
    if rule then
      if rule[2] ~= M.drop then
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
      rank[new] = { ri or #rules + 1, #order }
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
