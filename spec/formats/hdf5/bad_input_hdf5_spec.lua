-- HDF5 / Keras: broken and hostile files. Each must raise a Lua error that
-- names the file and says what is wrong; libhdf5 must print nothing of its
-- own; nothing may crash.
local graft = require "graft"
local H = require "helper"

local REAL = "keras_h5/hls4ml-KERAS_3layer-weights-only-keras2.0.0/KERAS_3layer_weights.h5"

local function refused(path, opts, ...)
  local err = H.raises(function() graft.open(path, opts) end)
  assert.truthy(err:find(path, 1, true), "error does not name the file: " .. err)
  for _, s in ipairs({ ... }) do
    assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
  end
  return err
end

-- Opening (and reading every tensor of) path in a separate Lua process:
-- returns its exit status and what it wrote to stderr.
local function open_elsewhere(path)
  local dir = H.tmpdir()
  H.write(dir .. "/open.lua", [[
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/?.so;" .. package.cpath
local graft = require "graft"
local ok, m = pcall(graft.open, ...)
if ok then
  for _, n in ipairs(graft.names(m)) do pcall(function() return m[n]:bytes() end) end
end
io.stdout:write(ok and "opened" or tostring(m))
]])
  local p = io.popen("timeout 60 lua5.4 " .. dir .. "/open.lua " .. H.q(path) .. " 2>" .. dir .. "/err")
  local out = p:read("a")
  local ok, _, code = p:close()
  return ok and 0 or code, H.read(dir .. "/err"), out
end

describe("bad HDF5 input", function()
  local gen
  setup(function()
    gen = H.tmpdir()
    H.py(H.read("spec/fixtures/gen_hdf5.py"), gen)
  end)
  teardown(H.cleanup)

  it("refuses a file that is not HDF5", function()
    local p = H.tmpdir() .. "/not.h5"
    H.write(p, "this is text, not HDF5 at all\n")
    refused(p, { format = "hdf5" }, "not an HDF5 file")
    refused(p, { format = "keras" }, "not an HDF5 file")
    refused(p, nil, "unrecognised format")
  end)

  it("refuses a truncated file with libhdf5's reason and prints nothing", function()
    local bytes = H.read(H.real(REAL))
    local dir = H.tmpdir()
    for _, n in ipairs({ 8, 100, 800, #bytes // 2, #bytes - 1 }) do
      local p = dir .. "/t" .. n .. ".h5"
      H.write(p, bytes:sub(1, n))
      local err = refused(p, nil)
      assert.truthy(err:find("HDF5", 1, true) or err:find("truncated", 1, true), err)
      local code, stderr, out = open_elsewhere(p)
      assert.equal(0, code, out)
      assert.equal("", stderr)
      assert.truthy(out:find(p, 1, true), out)
    end
  end)

  it("refuses weight_names that point to a missing dataset", function()
    refused(gen .. "/keras_missing.h5", nil, 'layer "encoder"',
      'weight_names lists "dense_1/bias:0"', 'no dataset "encoder/dense_1/bias:0"')
  end)

  it("reads layer_names split across layer_names0/1 (valid)", function()
    local m = graft.open(gen .. "/keras_split.h5")
    assert.same({ "input_1", "encoder", "flatten", "dense" }, graft.meta(m).layer_names)
  end)

  it("refuses layer_names naming a missing group, and non-string weight_names", function()
    local p = H.tmpdir() .. "/bad_names.h5"
    H.py([[
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f.attrs["layer_names"] = [b"ghost"]
with h5py.File(sys.argv[2], "w") as f:
    f.attrs["layer_names"] = [b"d"]
    f.create_group("d").attrs["weight_names"] = np.arange(3)
]], p, p .. "2")
    refused(p, nil, 'layer_names lists "ghost" but there is no group "ghost"')
    refused(p .. "2", nil, "weight_names", "not strings")
  end)

  it("refuses a group hard-linked inside itself (a link cycle), but not a group linked twice", function()
    local p = H.tmpdir() .. "/cycle.h5"
    H.py([[
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("a/b/w", data=np.arange(3, dtype="<f4"))
    f["a/b/up"] = f["a"]
with h5py.File(sys.argv[2], "w") as f:
    f.create_dataset("a/w", data=np.arange(3, dtype="<f4"))
    f["c"] = f["a"]
]], p, p .. "2")
    refused(p, { format = "hdf5" }, 'group "a/b/up" contains itself (a link cycle)')
    local m = graft.open(p .. "2", { format = "hdf5" })
    assert.are.same({ "a/w", "c/w" }, graft.names(m))
    assert.is_true(m["c/w"]:equal(m["a/w"]))
  end)

  it("refuses a .keras zip whose weights member is not HDF5", function()
    local dir = H.tmpdir()
    H.py([[
import sys, zipfile
d = sys.argv[1]
real = open(sys.argv[2], "rb").read()
for name, payload in [("text", b"not hdf5"), ("cut", real[:1000]), ("empty", b"")]:
    with zipfile.ZipFile(d + "/" + name + ".keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", payload)
with zipfile.ZipFile(d + "/none.keras", "w") as z:
    z.writestr("config.json", "{}")
]], dir, H.real(REAL))
    refused(dir .. "/text.keras", nil, "model.weights.h5", "not an HDF5 file")
    refused(dir .. "/empty.keras", nil, "model.weights.h5", "not an HDF5 file")
    refused(dir .. "/cut.keras", nil, "model.weights.h5", "HDF5")
    refused(dir .. "/none.keras", nil, "no model.weights.h5")
    local code, stderr = open_elsewhere(dir .. "/cut.keras")
    assert.equal(0, code)
    assert.equal("", stderr)
  end)

  -- Only the data area is corrupted here: libhdf5 1.10 itself can crash on
  -- some corrupted metadata (an out-of-range global heap index makes
  -- H5HG_read read out of bounds), which graft cannot check before it.
  it("survives corrupted bytes in the data area of a real file", function()
    local bytes = H.read(H.real(REAL))
    local dir = H.tmpdir()
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    for i = 1, 20 do
      local b = { bytes:byte(1, -1) }
      for _ = 1, 8 do
        local at = 8896 + rnd(#b - 8896)
        b[at] = rnd(256) - 1
      end
      local p = dir .. "/c" .. i .. ".h5"
      local parts = {}
      for k = 1, #b, 4096 do parts[#parts + 1] = string.char(table.unpack(b, k, math.min(#b, k + 4095))) end
      H.write(p, table.concat(parts))
      local code, stderr, out = open_elsewhere(p)
      assert.equal(0, code, "crash or hang on " .. p .. ": " .. stderr)
      assert.equal("", stderr, p)
      assert.truthy(out == "opened" or out:find(p, 1, true), out)
    end
  end)
end)
