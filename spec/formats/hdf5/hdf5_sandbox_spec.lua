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

-- Whether the libhdf5 graft is built against (pkg-config: the build's own
-- source of its flags) is at least major.minor.
local function hdf5_at_least(major, minor)
  local f = io.popen("pkg-config --modversion hdf5 2>/dev/null")
  local v = f:read("l") or ""
  f:close()
  local a, b = v:match("^(%d+)%.(%d+)")
  assert(a, "pkg-config --modversion hdf5 gave no version")
  a, b = tonumber(a), tonumber(b)
  return a > major or (a == major and b >= minor)
end

-- Files mapped from disk go to the sandbox's persistent worker; other
-- images (a deflated zip member) to a child per call: every case runs both
-- ways (core.testing.sandbox_worker).
for _, worker in ipairs({ true, false }) do
  local MODE = worker and "the persistent worker" or "a child per call"
  -- What the subprocess scripts below run first.
  local SETUP = string.format([[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
require("graft.core").testing.sandbox_worker(%s)
]], tostring(worker))

  describe("libhdf5 in a sandbox (" .. MODE .. ")", function()
    before_each(function() core.testing.sandbox_worker(worker) end)
    after_each(function()
      core.testing.sandbox_fault(0)
      core.testing.sandbox_worker(true)
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
      if hdf5_at_least(1, 12) then
        -- libhdf5 >= 1.12 (Debian 13 has 1.14) rejects the damaged header
        -- itself, before any wild access: a plain error naming the attribute.
        assert.are.equal("graft: " .. p .. ': /: cannot read attribute "backend"', err)
      else
        assert.are.equal("graft: " .. p .. ": libhdf5 " .. how .. " while reading "
          .. 'attribute "weight_names" of "model_weights/fc2": the file is corrupt (libhdf5 runs '
          .. "in a separate process, so graft is unharmed)", err)
      end
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
      H.write(script, SETUP .. [[
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
      H.write(script, SETUP .. [[
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
    if worker then
      it("one worker serves open after open, and a crash is blamed on the file that caused it", function()
        -- In a fresh process: this one may hold too much memory to start a
        -- worker (see the next case).
        local script = H.tmpdir() .. "/reuse.lua"
        H.write(script, SETUP .. [[
local graft = require "graft"
local core = require "graft.core"
local good = arg[1]
local function opens() return #graft.names(graft.open(good)) > 0 end
assert(opens())
local pid = core.testing.sandbox_worker_pid()
assert(pid > 0, "no worker")
assert(opens() and opens())
assert(core.testing.sandbox_worker_pid() == pid, "the worker was not reused")
-- The worker that served those crashes on this request: the call is
-- retried once in a fresh worker, which crashes too, so the error is the
-- file's.
core.testing.sandbox_fault(1)
local ok, err = pcall(graft.open, good)
assert(not ok and err:find("libhdf5 crashed (signal 11, SIGSEGV)", 1, true), err)
core.testing.sandbox_fault(0)
assert(opens() and opens())
assert(core.testing.sandbox_worker_pid() ~= pid, "the crashed worker still serves")
-- A worker broken by an earlier file (fault 4: one that has served before
-- crashes) never fails a good file: the retry serves it.
core.testing.sandbox_fault(4)
local m = graft.open(good)
for _, n in ipairs(graft.names(m)) do m[n]:contiguous() end
print("done " .. #graft.names(m))
]])
        local out = io.popen("lua5.4 " .. H.q(script) .. " " .. H.q(H.real(KERAS)) .. " 2>&1"):read("a")
        assert.matches("^done %d+\n$", out)
      end)

      it("no worker is started from a parent holding more than 256 MiB: a child per call instead", function()
        local script = H.tmpdir() .. "/big.lua"
        H.write(script, SETUP .. [[
local graft = require "graft"
local core = require "graft.core"
local big = string.rep("x", 300 << 20)  -- resident, anonymous
local m = graft.open(arg[1])
for _, n in ipairs(graft.names(m)) do m[n]:contiguous() end
print(#graft.names(m), core.testing.sandbox_worker_pid(), #big)
]])
        local out = io.popen("lua5.4 " .. H.q(script) .. " " .. H.q(H.real(KERAS)) .. " 2>&1"):read("a")
        local n, pid = out:match("^(%d+)\t(%d+)\t")
        assert.is_truthy(n, out)
        assert.is_true(tonumber(n) > 0)
        assert.are.equal("0", pid)
      end)

      it("the worker ends with its parent and holds none of its descriptors", function()
        local script = H.tmpdir() .. "/kids.lua"
        H.write(script, SETUP .. [[
local graft = require "graft"
assert(#graft.names(graft.open(arg[1])) > 0)
local pid = io.open("/proc/self/stat"):read("l"):match("^(%d+)")
local f = io.open("/proc/" .. pid .. "/task/" .. pid .. "/children")
print("children " .. (f and f:read("a") or "?"))
]])
        -- read("a") returns only once every holder of the pipe has closed it
        local out = io.popen("lua5.4 " .. H.q(script) .. " " .. H.q(H.real(KERAS))):read("a")
        local kids = assert(out:match("children ([%d ]+)"), out)
        local pid = assert(kids:match("%d+"), "no worker: " .. out)
        -- gone (or a zombie of init's) within 10 s of its parent
        local gone = false
        for _ = 1, 100 do
          local st = io.open("/proc/" .. pid .. "/stat")
          local state = st and st:read("l"):match("^%d+ %b() (%a)")
          if st then st:close() end
          if not state or state == "Z" then gone = true break end
          os.execute("sleep 0.1")
        end
        assert.is_true(gone, "worker " .. pid .. " still running")
      end)
    end
  end)
end
