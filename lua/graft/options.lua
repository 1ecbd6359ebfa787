-- graft.options: the options contract of graft.open and graft.save. Every
-- key of opts must be a common option of the operation or an option the
-- chosen format declares (lua/graft/registry.lua); anything else is an
-- error naming the key, the format and the accepted keys, with the closest
-- accepted key when one is a likely misspelling.

local util = require "graft.util"

local M = {}

-- Options every format takes: name -> one-line description.
M.common = {
  open = {
    format = "format name (graft.formats()); default: detected from the path and first bytes",
  },
  save = {
    format = "format name (graft.formats()); default: from the file extension",
    dtype = "cast floating-point tensors to this dtype (integer tensors keep theirs)",
    order = "list of names written first, in this order; the rest follow in graft.names order",
    progress = "true: a progress bar on stderr when it is a terminal; "
      .. "or a function(done_bytes, total_bytes)",
    provenance = "a table from graft.provenance.make, recorded in the file metadata "
      .. "under the user's own; false for none (default: none outside graft run)",
  },
}

-- Levenshtein distance between two short strings.
local function distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[#b]
end

M.distance = distance

-- The accepted key closest to `key` when it is close enough to be a slip
-- (at most 2 edits, fewer than the key's length), else nil.
function M.closest(key, accepted)
  local best, bestd
  for _, k in ipairs(accepted) do
    local d = distance(key, k)
    if d <= 2 and d < #key and (not bestd or d < bestd) then best, bestd = k, d end
  end
  return best
end

-- Sorted names of the options `op` ("open" | "save") accepts for format f
-- (a registry entry).
function M.accepted(op, f)
  local list = {}
  for k in pairs(M.common[op]) do list[#list + 1] = k end
  for k in pairs(f[op .. "_options"] or {}) do
    if not M.common[op][k] then list[#list + 1] = k end
  end
  table.sort(list)
  return list
end

-- Raise unless every key of opts is accepted. `others(key)` lists the
-- formats that do take a key (may be empty).
function M.check(op, path, f, opts, others)
  local accepted = M.accepted(op, f)
  local ok = {}
  for _, k in ipairs(accepted) do ok[k] = true end
  local bad = {}
  for k in pairs(opts) do
    if not ok[k] then bad[#bad + 1] = k end
  end
  if #bad == 0 then return end
  table.sort(bad, function(a, b) return tostring(a) < tostring(b) end)
  local key = bad[1]
  local msg = string.format("%s %s: option %q is not accepted by format %s", op, path,
    tostring(key), f.name)
  local near = type(key) == "string" and M.closest(key, accepted)
  if near then msg = msg .. string.format("; did you mean %q?", near) end
  msg = msg .. " (accepted: " .. table.concat(accepted, ", ") .. ")"
  local elsewhere = type(key) == "string" and others(key) or {}
  if #elsewhere > 0 then
    msg = msg .. "; formats that take it: " .. table.concat(elsewhere, ", ")
  end
  util.fail("%s", msg)
end

return M
