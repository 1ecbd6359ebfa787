-- What the cookbook specs (spec/cookbook/*_spec.lua) share, required as
-- "cookbook.cookbook": run a generator of spec/fixtures/cookbook under the
-- oracle environment, make its fixtures in a fresh temp dir, run graft
-- expecting success, write a recipe with one change, and read what the
-- generators' check mode prints ("WHAT max_rel=E" lines, JSON lines).
local H = require "helper"
local json = require "graft.json"

local C = {}

local FIXTURES = H.ROOT .. "/spec/fixtures/cookbook"

-- Run spec/fixtures/cookbook/<name>.py with args under the oracle
-- environment; returns its stdout. H.oracle runs a copy of the text from a
-- temp dir, so the generators' folder (common.py) goes on sys.path; no
-- bytecode is written into the tree.
function C.gen(name, ...)
  local prelude = string.format("import sys\nsys.dont_write_bytecode = True\nsys.path.insert(0, %q)\n", FIXTURES)
  return H.oracle(prelude .. H.read(FIXTURES .. "/" .. name .. ".py"), ...)
end

-- A fresh temp dir holding what `<name>.py make DIR` makes.
function C.make(name)
  local dir = H.tmpdir()
  C.gen(name, "make", dir)
  return dir
end

-- Run `graft ARGS...`, failing with its stderr unless it exits 0; returns stdout.
function C.graft_ok(...)
  local out, err, code = H.graft(...)
  assert(code == 0, "graft " .. table.concat({ ... }, " ") .. " exited " .. tostring(code) .. ": " .. err)
  return out
end

-- Write the recipe at `rel` (from the root) with `old` replaced by `new`
-- (plain text, exactly once) to `path`; returns path.
function C.broken_copy(rel, old, new, path)
  local text = H.read(H.ROOT .. "/" .. rel)
  local s, e = text:find(old, 1, true)
  assert(s and not text:find(old, e + 1, true), rel .. ": expected one " .. old)
  H.write(path, text:sub(1, s - 1) .. new .. text:sub(e + 1))
  return path
end

-- {[WHAT] = E} from the generators' "WHAT max_rel=E" lines (WHAT: all
-- before " max_rel=").
function C.max_rel(text)
  if os.getenv("COOKBOOK_DEBUG") then io.stderr:write(text) end
  local r = {}
  for what, v in text:gmatch("([^\n]-) max_rel=(%S+)") do r[what] = tonumber(v) end
  return r
end

-- The generator `gen`'s check of the outputs dir/<good> and dir/<bad>...
-- (names of files graft wrote there): the good one within 1e-5 relative
-- of the source framework's outputs, each bad one (a recipe with a step
-- taken out, which graft.check cannot see) off by more than 1e-3.
function C.assert_outputs(gen, dir, good, bads)
  local files = { dir .. "/" .. good }
  for _, b in ipairs(bads) do files[#files + 1] = dir .. "/" .. b end
  local res = C.max_rel(C.gen(gen, "check", dir, table.unpack(files)))
  local e = res[files[1]]
  assert(e and e <= 1e-5, good .. ": relative error " .. tostring(e))
  for i, b in ipairs(bads) do
    e = res[files[i + 1]]
    assert(e and e > 1e-3, b .. " went unseen: relative error " .. tostring(e))
  end
end

-- {[key(record)] = record} from JSON lines, one record a line.
function C.json_lines(text, key)
  local r = {}
  for line in text:gmatch("[^\n]+") do
    local rec = json.decode(line)
    r[key(rec)] = rec
  end
  return r
end

return C
