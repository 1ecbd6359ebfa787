-- Shared helpers for specs: real fixtures, temp dirs, running Debian's
-- python3 (numpy, torch) as the reference.
local H = {}

-- The real framework-written files live beside the checkout.
H.REAL = os.getenv("GRAFT_REAL_FIXTURES") or "../shared/fixtures/real"
H.PYTHON = os.getenv("GRAFT_PYTHON") or "/usr/bin/python3"
-- The oracle environment: TensorFlow 2.21, tf-keras, Keras 3, torch 2,
-- onnxruntime, safetensors, gguf (tools/install-deps --test; `make test`
-- sets GRAFT_ORACLE_PYTHON).
H.ORACLE = os.getenv("GRAFT_ORACLE_PYTHON") or ".venv-oracles/bin/python"

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end
H.exists = exists

-- Full path of a real fixture. When the fixtures are absent the test stops
-- here and fails with a message saying it was skipped and why (busted's
-- `pending` is not reachable from a helper module, and a missing fixture
-- must fail the run anyway).
function H.real(rel)
  local p = H.REAL .. "/" .. rel
  if exists(H.REAL .. "/MANIFEST.md") then return p end
  error("SKIPPED: real fixtures not found at " .. H.REAL .. " (needed: " .. rel
    .. "); put shared/ beside the checkout or set GRAFT_REAL_FIXTURES", 0)
end

function H.have_real()
  return exists(H.REAL .. "/MANIFEST.md")
end

local tmpdirs = {}
function H.tmpdir()
  local p = io.popen("mktemp -d /tmp/graft-spec-XXXXXX")
  local d = p:read("l")
  p:close()
  tmpdirs[#tmpdirs + 1] = d
  return d
end

function H.cleanup()
  for _, d in ipairs(tmpdirs) do os.execute("rm -rf '" .. d .. "'") end
  tmpdirs = {}
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.q = shell_quote

local function run_python(python, script, ...)
  local dir = H.tmpdir()
  local f = assert(io.open(dir .. "/script.py", "w"))
  f:write(script)
  f:close()
  local args = { python, dir .. "/script.py" }
  for _, a in ipairs({ ... }) do args[#args + 1] = shell_quote(a) end
  local cmd = table.concat(args, " ") .. " 2>" .. dir .. "/stderr"
  local p = io.popen(cmd)
  local out = p:read("a")
  local ok, _, code = p:close()
  if not ok then
    local ef = io.open(dir .. "/stderr")
    local err = ef and ef:read("a") or ""
    if ef then ef:close() end
    error("python failed (" .. tostring(code) .. "): " .. err, 3)
  end
  return out
end

-- Run python code (text) with args under Debian's python3 (numpy, torch
-- 1.13, h5py); returns stdout, raises on failure.
function H.py(script, ...)
  return run_python(H.PYTHON, script, ...)
end

-- The oracle interpreter's path. A spec that needs the real frameworks and
-- cannot find them fails here, as a missing real fixture does: CI must not
-- pass without them.
function H.oracle_python()
  if exists(H.ORACLE) then return H.ORACLE end
  error("ORACLE MISSING: the oracle environment was not found at " .. H.ORACLE
    .. "; run tools/install-deps --test (or set GRAFT_ORACLE_PYTHON)", 0)
end

-- Run python code under the oracle environment (TensorFlow, Keras, torch 2,
-- onnxruntime, gguf ...). Importing TensorFlow costs seconds: batch a
-- spec's framework work into few calls.
function H.oracle(script, ...)
  local python = H.oracle_python()
  return run_python(python, "import os\nos.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')\n" .. script, ...)
end

function H.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function H.write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

-- Files in a directory (names only).
function H.ls(dir)
  local p = io.popen("ls -A " .. shell_quote(dir))
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end

-- Bytes as lowercase hex, and back.
function H.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function H.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Elements of a (nested) totable() result in row-major order.
function H.flat(v, out)
  out = out or {}
  if type(v) == "table" then
    for _, x in ipairs(v) do H.flat(x, out) end
  else
    out[#out + 1] = v
  end
  return out
end

-- Expect fn to raise; return the message.
function H.raises(fn)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error, got success")
  return tostring(err)
end


-- The checkout's root, and the `graft` command run as a user runs it:
-- lua5.4 bin/graft with LUA_PATH/LUA_CPATH pointing at this checkout's lua/
-- and build/ (what `luarocks make` installs).
H.ROOT = (function()
  local p = io.popen("pwd")
  local d = p:read("l")
  p:close()
  return d
end)()
H.GRAFT_ENV = "LUA_PATH=" .. shell_quote(H.ROOT .. "/lua/?.lua;" .. H.ROOT .. "/lua/?/init.lua;;")
  .. " LUA_CPATH=" .. shell_quote(H.ROOT .. "/build/?.so;;")
H.GRAFT_CMD = "lua5.4 " .. shell_quote(H.ROOT .. "/bin/graft")

-- Runs `graft ARGS...` in the checkout's root; returns stdout, stderr and
-- the exit code.
function H.graft(...)
  local dir = H.tmpdir()
  local args = {}
  for i, a in ipairs({ ... }) do args[i] = shell_quote(a) end
  local cmd = string.format("cd %s && %s %s %s >%s/out 2>%s/err </dev/null",
    shell_quote(H.ROOT), H.GRAFT_ENV, H.GRAFT_CMD, table.concat(args, " "), dir, dir)
  local _, _, code = os.execute(cmd)
  return H.read(dir .. "/out"), H.read(dir .. "/err"), code
end


-- A float32 tensor of `shape` holding 0 .. n-1 (distinct values, so a
-- wrong transpose shows).
function H.iota(shape)
  local graft = require "graft"
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  local parts = {}
  for i = 1, n do parts[i] = string.pack("<f", i - 1) end
  return graft.tensor(table.concat(parts), "float32", shape)
end

-- A small Keras-named table: two convs, a dense layer, an optimizer step.
function H.keras_like()
  local graft = require "graft"
  return {
    ["conv1/kernel"] = H.iota({ 3, 3, 2, 4 }),
    ["conv1/bias"] = graft.zeros({ 4 }),
    ["conv2/kernel"] = H.iota({ 1, 1, 4, 5 }),
    ["conv2/bias"] = graft.zeros({ 5 }),
    ["dense/kernel"] = H.iota({ 6, 3 }),
    ["dense/bias"] = graft.tensor({ 1, 2, 3 }),
    ["optimizer/step"] = graft.tensor({ 10 }, "int64"),
  }
end

return H
