-- .npy / .npz: hostile and broken files. Each must raise a Lua error that
-- names the file (and the member or tensor where there is one) and says
-- what is wrong; none may crash, hang or read outside the file.
local graft = require "graft"
local H = require "helper"

local REAL_NPY = {
  "npy/candle-tests/test.npy",
  "npy/numpy-testdata/python3.npy",
  "npy/numpy-testdata/win64python2.npy",
  "npy/numpy-testdata/py3-objarr.npy",
  "npy/tch-rs-linear/bs.npy",
  "npy/tch-rs-linear/in.npy",
  "npy/tch-rs-linear/out.npy",
  "npy/tch-rs-linear/ws.npy",
}
local REAL_NPZ = {
  "npz/candle-tests/test.npz",
  "npz/hls4ml-graph000001/graph000001.npz",
  "npz/numpy-pr21994-savez/py3-arr-savez.npz",
  "npz/numpy-pr21994-savez/py3-arr-savez-compressed.npz",
}
local SAVEZ = "npz/numpy-pr21994-savez/py3-arr-savez.npz"
local SAVEZ_C = "npz/numpy-pr21994-savez/py3-arr-savez-compressed.npz"

local function open_as(path, format)
  return graft.open(path, { format = format })
end

-- Raises naming the file and saying each of the given things.
local function refused(path, format, ...)
  local err = H.raises(function() open_as(path, format) end)
  assert.truthy(err:find(path, 1, true), "error does not name the file: " .. err)
  for _, s in ipairs({ ... }) do
    assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
  end
  return err
end

-- A v1 (or v2/v3) .npy file from header text and data; hlen overrides the
-- length field.
local function npy(dir, header, data, version, hlen)
  version = version or 1
  local len = version == 1 and string.pack("<I2", hlen or #header)
    or string.pack("<I4", hlen or #header)
  local p = dir .. "/bad.npy"
  H.write(p, "\x93NUMPY" .. string.char(version, 0) .. len .. header .. (data or ""))
  return p
end

local function dict(descr, fortran, shape)
  return string.format("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n",
    descr, fortran, shape)
end

-- Central directory and local header positions of the members of a zip.
local function zip_members(b)
  local eocd = b:find("PK\5\6", #b - 65557 > 0 and #b - 65557 or 1, true)
  local cd_size, cd_off = string.unpack("<I4I4", b, eocd + 12)
  local out, at = {}, cd_off + 1
  while at < cd_off + 1 + cd_size do
    local nlen, xlen, clen = string.unpack("<I2I2I2", b, at + 28)
    local name = b:sub(at + 46, at + 45 + nlen)
    out[#out + 1] = { name = name, central = at, loc = string.unpack("<I4", b, at + 42) + 1 }
    at = at + 46 + nlen + xlen + clen
  end
  return out, eocd
end

local function patch(b, pos, bytes)
  return b:sub(1, pos - 1) .. bytes .. b:sub(pos + #bytes)
end

describe("npy/npz bad input", function()
  after_each(H.cleanup)

  it("truncated real files: every cut raises an error naming the file", function()
    if not H.have_real() then return H.real("npy") end
    local dir = H.tmpdir()
    local sets = { { REAL_NPY, "npy" }, { REAL_NPZ, "npz" } }
    for _, set in ipairs(sets) do
      for _, rel in ipairs(set[1]) do
        local whole = H.read(H.real(rel))
        local step = #whole > 1000 and 13 or 1
        for cut = 0, #whole - 1, step do
          local p = dir .. "/cut." .. set[2]
          H.write(p, whole:sub(1, cut))
          refused(p, set[2])
        end
      end
    end
  end)

  it("real npz files with the central directory cut off or garbled", function()
    if not H.have_real() then return H.real("npz") end
    local dir = H.tmpdir()
    for _, rel in ipairs(REAL_NPZ) do
      local whole = H.read(H.real(rel))
      local _, eocd = zip_members(whole)
      for _, off in ipairs({ 10, 12, 16 }) do -- entry count, cd size, cd offset
        local p = dir .. "/g.npz"
        H.write(p, patch(whole, eocd + off, "\255\255\255\127"))
        refused(p, "npz")
      end
    end
  end)

  it("header length fields that lie", function()
    local dir = H.tmpdir()
    local h = dict("<f4", "False", "(2,)")
    refused(npy(dir, h, string.rep("\0", 8), 1, #h + 100), "npy", "header claims")
    refused(npy(dir, h, string.rep("\0", 8), 1, 20), "npy", "header")
    refused(npy(dir, h, "", 2, 0x7fffffff), "npy", "too long")
    refused(npy(dir, h, "", 3, #h + 1), "npy", "header claims")
  end)

  it("shape products of 2^62 and beyond, and data shorter than the shape", function()
    local dir = H.tmpdir()
    refused(npy(dir, dict("|u1", "False", "(4611686018427387904,)"), "abc"), "npy",
      "data is 3 bytes", "need 4611686018427387904")
    refused(npy(dir, dict("<f4", "False", "(2147483648, 2147483648)"), ""), "npy",
      "overflows the byte count")
    refused(npy(dir, dict("<f8", "False", "(4294967296, 4294967296)"), ""), "npy",
      "more than 2^63 elements")
    refused(npy(dir, dict("<f8", "False", "(10,)"), string.rep("\0", 40)), "npy",
      "data is 40 bytes", "need 80")
    refused(npy(dir, dict("<U4", "False", "(3,)"), string.rep("\0", 47)), "npy",
      "data is 47 bytes")
    refused(npy(dir, dict("<f8", "False", "(99999999999999999999,)"), ""), "npy",
      "too large")
  end)

  it("bad magic and unsupported versions", function()
    local dir = H.tmpdir()
    local p = dir .. "/m.npy"
    H.write(p, "\x93NUMPX\1\0\10\0{}        \n")
    refused(p, "npy", "bad magic")
    H.write(p, "\x93NUMPY\4\0\10\0{}        \n")
    refused(p, "npy", "version 4.0")
    H.write(p, "\x93NUMPY\1\1\10\0{}        \n")
    refused(p, "npy", "version 1.1")
  end)

  it("header dicts numpy would not accept, or graft cannot represent", function()
    local dir = H.tmpdir()
    local cases = {
      { "{'descr': '<f4', 'fortran_order': False}", "key 'shape' is missing" },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'foo': 1}", "unexpected key 'foo'" },
      { "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", "appears twice" },
      { dict("<f4", "False", "(5)"), "not a tuple" },
      { dict("<f4", "False", "(-1,)"), "non-integer" },
      { dict("<f4", "False", "(05,)"), "leading zero" },
      { dict("<f4", "False", "(1, 2 3)"), "malformed shape" },
      { dict("<f4", "False", "[1]"), "not a tuple" },
      { dict("<f4", "1", "(1,)"), "not True or False" },
      { dict("<f4", "false", "(1,)"), "not True or False" },
      { dict("<f3", "False", "(1,)"), "unsupported descr '<f3'" },
      { dict("<f16", "False", "(1,)"), "unsupported descr '<f16'" },
      { dict("<M8[ns]", "False", "(1,)"), "datetime64" },
      { dict("|V2", "False", "(1,)"), "raw void dtype" },
      { dict("|O", "False", "(1,)"), "object arrays" },
      { "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", "structured dtypes" },
      { "{'descr': ('<f4', (2,)), 'fortran_order': False, 'shape': (1,)}", "sub-array" },
      { "[1, 2]", "not a dict" },
      { dict("<f4", "False", "(1,)") .. "x", "unexpected text after the dict" },
      { "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", "unsupported descr" },
      { "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)\0}", "header:" },
      { "{'descr': '<f\\x34', 'fortran_order': False, 'shape': (1,)}", "unsupported character" },
      { dict("<f4", "False", "(" .. string.rep("1, ", 33) .. ")"), "more than 32 dimensions" },
      { dict("<f4", "False", "(1x,)"), "malformed dimension" },
      { "", "header is not a dict" },
    }
    for _, c in ipairs(cases) do
      refused(npy(dir, c[1], string.rep("\0", 64)), "npy", c[2])
    end
    -- Python 2 longs only in v1/v2 headers, as numpy's filter applies
    refused(npy(dir, dict("<f4", "False", "(1L,)"), "\0\0\0\0", 3), "npy", "malformed dimension")
    local ok = open_as(npy(dir, dict("<f4", "False", "(1L,)"), "\0\0\0\0", 2), "npy")
    assert.same({ 0 }, ok.bad:totable())
  end)

  it("object arrays: the real file and an npz member are refused", function()
    local p = H.real("npy/numpy-testdata/py3-objarr.npy")
    if not p then return end
    refused(p, "npy", "object arrays ('|O8')", "refused")
    local dir = H.tmpdir()
    local z = dir .. "/obj.npz"
    H.py([[
import sys, numpy as np
np.savez(sys.argv[1], ok=np.arange(2), obj=np.array([None, 'x'], dtype=object))
]], z)
    refused(z, "npz", 'member "obj.npy"', "object arrays")
  end)

  it("zip members whose local header or central entry lies", function()
    local base = H.real(SAVEZ)
    if not base then return end
    local dir = H.tmpdir()
    local b = H.read(base)
    local ms = zip_members(b)
    local x = ms[1]
    assert.equal("x.npy", x.name)
    local p = dir .. "/z.npz"
    local function try(bytes, ...)
      H.write(p, bytes)
      return refused(p, "npz", ...)
    end
    -- name in the local header differs from the central one
    try(patch(b, x.loc + 30, "y"), 'member "x.npy"', "local header names \"y.npy\"")
    -- method differs
    try(patch(b, x.loc + 8, "\8\0"), 'member "x.npy"', "compression method")
    -- local signature broken
    try(patch(b, x.loc, "PK\9\9"), 'member "x.npy"', "signature")
    -- local header offset past the data
    try(patch(b, x.central + 42, "\0\0\1\0"), 'member "x.npy"', "outside")
    -- compressed size running into the central directory
    try(patch(b, x.central + 20, "\0\0\1\0"), 'member "x.npy"')
    -- local extra length pushing the data past the end
    try(patch(b, x.loc + 28, "\255\255"), 'member "x.npy"')
    -- the npy header inside the member is broken
    local data = x.loc + 30 + string.unpack("<I2", b, x.loc + 26) + string.unpack("<I2", b, x.loc + 28)
    try(patch(b, data + 1, "X"), 'member "x.npy"', "bad magic")
    -- encrypted flag
    try(patch(b, x.central + 8, "\1\0"), 'member "x.npy"', "encrypted")
  end)

  it("duplicate members and unsupported compression methods", function()
    local dir = H.tmpdir()
    local p = dir .. "/d.npz"
    H.py([[
import sys, io, zipfile, warnings, numpy as np
warnings.simplefilter('ignore')
buf = io.BytesIO(); np.save(buf, np.arange(3))
with zipfile.ZipFile(sys.argv[1], 'w') as z:
    z.writestr('a.npy', buf.getvalue())
    z.writestr('a.npy', buf.getvalue())
with zipfile.ZipFile(sys.argv[2], 'w', compression=zipfile.ZIP_BZIP2) as z:
    z.writestr('b.npy', buf.getvalue())
]], p, dir .. "/bz.npz")
    refused(p, "npz", 'member "a.npy" appears twice')
    refused(dir .. "/bz.npz", "npz", 'member "b.npy"', "compression method 12")
  end)

  it("a corrupt CRC is found when the data is first used, not at open", function()
    local dir = H.tmpdir()
    for _, rel in ipairs({ SAVEZ, SAVEZ_C }) do
      local base = H.real(rel)
      if not base then return end
      local b = H.read(base)
      for _, mm in ipairs(zip_members(b)) do
        b = patch(b, mm.central + 16, "\1\2\3\4")
        b = patch(b, mm.loc + 14, "\1\2\3\4")
      end
      local p = dir .. "/crc.npz"
      H.write(p, b)
      local m = open_as(p, "npz")
      for _, name in ipairs({ "x", "foo" }) do
        local err = H.raises(function() m[name]:totable() end)
        assert.truthy(err:find(p, 1, true), err)
        assert.truthy(err:find('member "' .. name .. '.npy"', 1, true), err)
        assert.truthy(err:find("CRC-32 mismatch", 1, true), err)
      end
    end
    -- a flipped data byte in a stored member
    local base = H.real(SAVEZ)
    local b = H.read(base)
    local x = zip_members(b)[1]
    local data = x.loc + 30 + string.unpack("<I2", b, x.loc + 26) + string.unpack("<I2", b, x.loc + 28)
    local p = dir .. "/flip.npz"
    H.write(p, patch(b, data + 128 + 8, "\99"))
    local m = open_as(p, "npz")
    assert.same({ 4, 3 }, m.x.shape)
    local err = H.raises(function() m.x:bytes() end)
    assert.truthy(err:find("CRC-32 mismatch", 1, true), err)
    assert.same({ 0, 1, 2 }, open_as(base, "npz").x:totable()[1])
  end)

  it("a corrupt deflate stream fails at open or on first use, naming the member", function()
    local base = H.real(SAVEZ_C)
    if not base then return end
    local dir = H.tmpdir()
    local b = H.read(base)
    local x = zip_members(b)[1]
    local data = x.loc + 30 + string.unpack("<I2", b, x.loc + 26) + string.unpack("<I2", b, x.loc + 28)
    local csize = string.unpack("<I4", b, x.central + 20)
    for off = 0, csize - 1, 3 do
      local p = dir .. "/fl.npz"
      H.write(p, patch(b, data + off, string.char(b:byte(data + off) ~ 0x5a)))
      local ok, err = pcall(function()
        local m = open_as(p, "npz")
        return m.x:bytes()
      end)
      if not ok then
        err = tostring(err)
        assert.truthy(err:find(p, 1, true), err)
        assert.truthy(err:find('member "x.npy"', 1, true), err)
      end
    end
  end)

  it("random byte mutations of the real files never crash", function()
    if not H.have_real() then return H.real("npy") end
    local dir = H.tmpdir()
    local seed = 12345
    local function rnd(n)
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n + 1
    end
    local sets = { { REAL_NPY, "npy" }, { REAL_NPZ, "npz" } }
    for _, set in ipairs(sets) do
      for _, rel in ipairs(set[1]) do
        local whole = H.read(H.real(rel))
        for _ = 1, 150 do
          local b = whole
          for _ = 1, rnd(4) do
            local at = rnd(#b)
            b = patch(b, at, string.char(rnd(256) - 1))
          end
          local p = dir .. "/mut." .. set[2]
          H.write(p, b)
          local ok, err = pcall(function()
            local m = open_as(p, set[2])
            for _, n in ipairs(graft.names(m)) do m[n]:totable() end
          end)
          if not ok then
            assert.truthy(tostring(err):find(p, 1, true), tostring(err))
          end
        end
      end
    end
  end)

  it("paths that are not regular files", function()
    local dir = H.tmpdir()
    refused(dir, "npy", "not a regular file")
    refused(dir, "npz", "not a regular file")
    refused(dir .. "/missing.npy", "npy", "cannot open")
    local err = H.raises(function() graft.open(dir) end)
    assert.truthy(err:find(dir, 1, true), err)
  end)

  it("a .npz that is not a zip, and an .npy that is empty", function()
    local dir = H.tmpdir()
    local p = dir .. "/n.npz"
    H.write(p, "PK\3\4 this is not really a zip archive")
    refused(p, "npz", "not a zip archive")
    H.write(dir .. "/e.npy", "")
    refused(dir .. "/e.npy", "npy", "truncated")
  end)
end)
