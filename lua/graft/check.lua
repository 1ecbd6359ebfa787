-- graft.check: compare a model table with a template (a model table, or
-- name -> {shape = {...}, dtype = "..."}).

local core = require "graft.core"
local model = require "graft.model"
local util = require "graft.util"

local fail = util.fail

local M = {}

function M.check(out, template, opts)
  opts = opts or {}
  local report = { missing = {}, unexpected = {}, shape = {}, dtype = {} }
  if type(out) ~= "table" or type(template) ~= "table" then
    fail("check: expected two tables (model, template)")
  end
  local function spec(name, v)
    if core.is_tensor(v) or type(v) == "table" then return v.shape, v.dtype end
    fail("check: template entry %q must be a tensor or {shape, dtype}", name)
  end
  for _, name in ipairs(model.names(template)) do
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
  for _, name in ipairs(model.names(out)) do
    if template[name] == nil then report.unexpected[#report.unexpected + 1] = name end
  end
  local ok = #report.missing == 0 and #report.shape == 0 and #report.dtype == 0
    and (not opts.strict or #report.unexpected == 0)
  return ok, report
end

return M
