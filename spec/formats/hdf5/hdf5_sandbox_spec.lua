-- libhdf5 runs in a sandboxed child process (src/formats/hdf5/isolate.c,
-- src/io/sandbox.c; issue 13): a crash, a hang or a runaway allocation in
-- libhdf5 is a clean Lua error naming the file and what was being read,
-- never the end of the user's process.
local graft = require "graft"
local core = require "graft.core"
local H = require "helper"

local KERAS = "keras_h5/hls4ml-dense-streaming-hdf5-named-dot-keras/keras_model.keras"

local function fixture_copy(dir)
  local p = dir .. "/m.keras"
  H.write(p, H.read(H.real(KERAS)))
  return p
end

describe("libhdf5 in a sandbox", function()
  after_each(function()
    core.testing.sandbox_fault(0)
    H.cleanup()
  end)

  it("the issue's reproducer (byte 3919 of the hls4ml .keras XOR 4) is an error naming the attribute", function()
    local b = H.read(H.real(KERAS))
    local p = H.tmpdir() .. "/bad.keras"
    H.write(p, b:sub(1, 3919) .. string.char(b:byte(3920) ~ 4) .. b:sub(3921))
    local err = H.raises(function() graft.open(p) end)
    -- Under make asan the sanitizer's interceptors catch the wild access
    -- inside libhdf5 first and exit(1): the same error, another cause.
    local how = (os.getenv("LD_PRELOAD") or ""):find("asan")
      and "failed (exit status 1, e.g. out of memory past its 2048 MiB budget)"
      or "crashed (signal 11, SIGSEGV)"
    assert.are.equal("graft: " .. p .. ": libhdf5 " .. how .. " while reading "
      .. 'attribute "weight_names" of "model_weights/fc2": the file is corrupt (libhdf5 runs '
      .. "in a separate process, so graft is unharmed)", err)
    -- the process goes on: the intact file still opens
    local m = graft.open(H.real(KERAS))
    assert.is_true(#graft.names(m) > 0)
  end)

  it("a child that crashes gives an error, and the next open works", function()
    local p = fixture_copy(H.tmpdir())
    core.testing.sandbox_fault(1)
    local err = H.raises(function() graft.open(p) end)
    assert.matches("libhdf5 crashed %(signal 11, SIGSEGV%)", err)
    assert.matches(": the file is corrupt", err, 1, true)
    core.testing.sandbox_fault(0)
    assert.is_true(#graft.names(graft.open(p)) > 0)
  end)

  it("a crashing child prints nothing: the parent's error says it all", function()
    local p = fixture_copy(H.tmpdir())
    local script = H.tmpdir() .. "/crash.lua"
    H.write(script, [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local graft = require "graft"
require("graft.core").testing.sandbox_fault(1)
print(pcall(graft.open, arg[1]))
]])
    local dir = H.tmpdir()
    os.execute("lua5.4 " .. H.q(script) .. " " .. H.q(p) .. " >" .. dir .. "/out 2>" .. dir .. "/err")
    assert.matches("^false\tgraft: .*libhdf5 crashed", H.read(dir .. "/out"))
    assert.are.equal("", H.read(dir .. "/err"))
  end)

  it("a child that allocates without bound is stopped at its memory limit", function()
    local p = fixture_copy(H.tmpdir())
    core.testing.sandbox_fault(3)
    local err = H.raises(function() graft.open(p) end)
    assert.matches("^graft: .*: libhdf5 ", err)
    assert.matches("the file is corrupt", err, 1, true)
  end)

  it("a child that hangs is killed after GRAFT_HDF5_TIMEOUT seconds", function()
    local p = fixture_copy(H.tmpdir())
    local script = H.tmpdir() .. "/hang.lua"
    H.write(script, [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local graft = require "graft"
require("graft.core").testing.sandbox_fault(2)
local ok, err = pcall(graft.open, arg[1])
print(ok, err)
]])
    local out = io.popen("GRAFT_HDF5_TIMEOUT=1 lua5.4 " .. H.q(script) .. " " .. H.q(p)):read("a")
    assert.matches("^false\tgraft: .*: libhdf5 did not finish within 1000 ms %(killed%)", out)
  end)

  it("lazily read datasets (chunked, compressed, strings) are read by a child too", function()
    local dir = H.tmpdir()
    H.py(H.read("spec/fixtures/gen_hdf5.py"), dir)
    local m = graft.open(dir .. "/generic.h5")
    local n = 0
    for _, name in ipairs(graft.names(m)) do
      local t = m[name]
      if t.dtype == "string" then t:totable() else t:contiguous() end
      n = n + 1
    end
    assert.is_true(n > 5)
    -- a child that crashes while reading data: the tensor's read fails, cleanly
    local again = graft.open(dir .. "/generic.h5")
    core.testing.sandbox_fault(1)
    local failed = 0
    for _, name in ipairs(graft.names(again)) do
      local ok, err = pcall(function() return again[name]:contiguous() end)
      if not ok then
        failed = failed + 1
        assert.matches("libhdf5 crashed", err)
      end
    end
    assert.is_true(failed > 0)
  end)
end)
