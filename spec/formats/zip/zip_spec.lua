-- Zip members (src/io/zipmember.c), shared by .npz, torch and .keras: a
-- deflated member's declared uncompressed size is never trusted. It is
-- checked against deflate's 1032:1 maximum before anything is allocated,
-- and the stream must inflate to exactly that size. The archives are made
-- here by Python's zipfile (numpy, torch from /usr/bin/python3) and their
-- size fields patched.
local graft = require "graft"
local H = require "helper"

local KERAS = "keras3/keras-pre_pr22362_nested_container/pre_pr22362_nested_container.keras"

-- Rewrites argv[1] into argv[2] with every member deflated; argv[3], when
-- given, names the member whose declared uncompressed size (central and
-- local header) becomes argv[4], an integer, or "+N" / "-N" relative.
local REZIP = [[
import sys, struct, zipfile
src, dst = sys.argv[1:3]
with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as o:
    for i in z.infolist():
        o.writestr(i.filename, z.read(i.filename))
if len(sys.argv) > 3:
    name, how = sys.argv[3].encode(), sys.argv[4]
    b = bytearray(open(dst, "rb").read())
    c = b.find(b"PK\x01\x02")
    while True:
        n = struct.unpack_from("<H", b, c + 28)[0]
        if b[c + 46:c + 46 + n] == name: break
        c = b.find(b"PK\x01\x02", c + 1)
    old = struct.unpack_from("<I", b, c + 24)[0]
    new = old + int(how) if how[0] in "+-" else int(how)
    loc = struct.unpack_from("<I", b, c + 42)[0]
    struct.pack_into("<I", b, c + 24, new)
    struct.pack_into("<I", b, loc + 22, new)
    open(dst, "wb").write(b)
]]

-- An .npz with x (float32 3x4) and y (int64, 10); x.npy carries 16 bytes
-- after its data, which np.load ignores.
local function npz(dir)
  local p = dir .. "/plain.npz"
  H.py([[
import sys, io, zipfile, numpy as np
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    b = io.BytesIO(); np.save(b, np.arange(12, dtype=np.float32).reshape(3, 4))
    z.writestr("x.npy", b.getvalue() + b"\x07" * 16)
    b = io.BytesIO(); np.save(b, np.arange(10, dtype=np.int64))
    z.writestr("y.npy", b.getvalue())
]], p)
  return p
end

local function rezip(src, dst, ...)
  H.py(REZIP, src, dst, ...)
  return dst
end

local function says(err, ...)
  for _, s in ipairs({ ... }) do
    assert.truthy(err:find(s, 1, true), "error " .. err .. " does not say " .. s)
  end
end

describe("zip members", function()
  it("reads deflated .npz members whose sizes are right", function()
    local m = graft.open(npz(H.tmpdir()))
    assert.same({ 0, 1, 2, 3 }, m.x:totable()[1])
    assert.equal(9, m.y:totable()[10])
  end)

  it("refuses at open a member declaring more than deflate can expand to", function()
    local dir = H.tmpdir()
    local p = rezip(npz(dir), dir .. "/huge.npz", "y.npy", "4000000000")
    local err = H.raises(function() graft.open(p) end)
    says(err, p, 'member "y.npy"', "declares 4000000000 bytes uncompressed",
         "1032:1", "corrupt")
  end)

  it("a member inflating past its declared size fails on first use", function()
    local dir = H.tmpdir()
    local p = rezip(npz(dir), dir .. "/long.npz", "x.npy", "-8")
    local m = graft.open(p)
    assert.same({ 3, 4 }, m.x.shape)
    says(H.raises(function() m.x:totable() end), p, 'member "x.npy"',
         "inflates past the")
    assert.equal(9, m.y:totable()[10])
  end)

  it("a member inflating to less than its declared size fails", function()
    -- y.npy is small enough that reading its header inflates all of it,
    -- so this is found at open
    local dir = H.tmpdir()
    local p = rezip(npz(dir), dir .. "/short.npz", "y.npy", "+8")
    says(H.raises(function() graft.open(p).y:totable() end), p, 'member "y.npy"',
         "the deflate stream ends after 208 of the 216 bytes")
  end)

  it("reads a torch archive whose records are deflated like the stored one", function()
    local dir = H.tmpdir()
    local pt = dir .. "/m.pt"
    H.py([[
import sys, torch
torch.manual_seed(0)
torch.save({"w": torch.randn(5, 7), "b": torch.arange(6, dtype=torch.int16)}, sys.argv[1])
]], pt)
    local a, b = graft.open(pt), graft.open(rezip(pt, dir .. "/d.pt"))
    assert.is_true(a.w:equal(b.w))
    assert.is_true(a.b:equal(b.b))
    assert.same({ 5, 7 }, b.w.shape)
  end)

  it("a .keras whose deflated weights member declares too much fails naming it", function()
    local dir = H.tmpdir()
    local src = H.real(KERAS)
    local ok = graft.open(rezip(src, dir .. "/ok.keras"))
    assert.truthy(next(graft.names(ok)))
    local p = rezip(src, dir .. "/huge.keras", "model.weights.h5", "4000000000")
    local err = H.raises(function() graft.open(p) end)
    says(err, p, 'member "model.weights.h5"', "1032:1")
  end)
end)
